"""The exporter's steady cost: `perf-analyzer serve` on a 30-day fleet kept in a persistent
PostgreSQL data directory (generated once, reused), with a live appender writing one row
per node and container per minute, measured over `--minutes` of steady state:

- CPU seconds per minute of the exporter (its process and any child process) and of its
  database backends (the pids of `pg_stat_activity` rows with the exporter's
  application_name, read from /proc/<pid>/stat);
- scrape p50 / p99 with 4 scrapers, each scraping once a second, alternating plain and
  gzip, across the whole window (refreshes included), and p99 split by whether an
  analysis run was in progress (run spans from the exporter's own duration and
  last-success metrics);
- time until every analysis has a result; exporter RSS after warm-up and peak.

    python bench/steady.py --nodes 50 [--minutes 10] [--label before]

Figures go to bench/results/steady-<nodes>[-<label>].json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from common import BENCH_DATA, load, machine
from fleet import write_results

from exporter import registry
from exporter.embedded import EmbeddedPostgres
from exporter.schema import COLUMN_NAMES
from exporter.simulate import FleetSpec
from exporter.store import APPLICATION_NAME, Store
from tests import storm

HERE = Path(__file__).parent
RESULTS = HERE / "results"
DATA = BENCH_DATA
TABLE = "monitor_samples_ring"
TICK = os.sysconf("SC_CLK_TCK")
JOBS = [a.name for a in registry.served()]


def fleet_database(nodes: int, days: float) -> EmbeddedPostgres:
    """The fleet's PostgreSQL, started; loaded on first use only."""
    pg = EmbeddedPostgres(
        DATA / f"fleet-{nodes}x{days:g}" / "data",
        settings={"shared_buffers": "512MB", "max_wal_size": "4GB"},
    ).start()
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()
    if not (exists and exists[0]):
        print(f"loading {nodes} nodes x {days:g} days into {pg.data_dir}", flush=True)
        with Store(pg.dsn) as store:
            loaded = load(store, FleetSpec(nodes=nodes, days=days, end=int(time.time())))
        print(f"loaded {loaded['rows']:,} rows in {loaded['total_s']:.0f} s", flush=True)
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(f"VACUUM ANALYZE {TABLE}")
    return pg


@contextlib.contextmanager
def serve(dsn: str, config: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """`perf-analyzer serve` with the YAML `config`, listening: (process, metrics URL)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as fh:
        fh.write(config)
        fh.flush()
        with storm.serve(dsn, args=("--config", fh.name)) as served:
            yield served


class Appender:
    """One row per node and container per minute, copied from each series' newest row (the
    gap since the fleet was generated is filled first, so the fleet is current)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        cols = ", ".join(COLUMN_NAMES)
        with psycopg.connect(dsn) as conn:
            last = conn.execute(f"SELECT max(sample_time) FROM {TABLE}").fetchone()
            self.last = int(last[0]) // 60 * 60 if last and last[0] else int(time.time())
            self.template = conn.execute(
                f"SELECT DISTINCT ON (node_name, container_name) {cols} FROM {TABLE}"
                " WHERE sample_time > %s ORDER BY node_name, container_name, sample_time DESC",
                (self.last - 900,),
            ).fetchall()
        self.rows = 0

    def catch_up(self) -> None:
        now = int(time.time()) // 60 * 60
        minutes = list(range(self.last + 60, now + 1, 60))
        if not minutes:
            return
        at = COLUMN_NAMES.index("sample_time")
        with psycopg.connect(self.dsn) as conn, conn.cursor() as cur:
            with cur.copy(f"COPY {TABLE} ({', '.join(COLUMN_NAMES)}) FROM STDIN") as copy:
                for t in minutes:
                    for row in self.template:
                        copy.write_row((*row[:at], t + 7, *row[at + 1 :]))
                        self.rows += 1
        self.last = minutes[-1]

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(1.0):
            self.catch_up()


def cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def descendants(pid: int) -> list[int]:
    """pid and every process below it."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += parents.get(p, [])
    return out


def rss_mib(pids: list[int]) -> tuple[float, float]:
    """(sum of RSS, sum of peak RSS) of the processes, MiB."""
    rss = peak = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh)
        except OSError:
            continue
        rss += int(fields["VmRSS"].split()[0]) / 1024
        peak += int(fields["VmHWM"].split()[0]) / 1024
    return rss, peak


class CpuMeter:
    """CPU of the exporter's process tree and of its backends over a window, sampled."""

    def __init__(self, dsn: str, exporter: int) -> None:
        self.dsn, self.exporter = dsn, exporter
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.kind: dict[int, str] = {}
        self.peak_rss = 0.0

    def backends(self) -> list[int]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                (APPLICATION_NAME,),
            ).fetchall()
        return [r[0] for r in rows]

    def sample(self, start: bool = False) -> None:
        tree = descendants(self.exporter)
        self.peak_rss = max(self.peak_rss, rss_mib(tree)[1])
        for kind, pids in (("exporter", tree), ("backends", self.backends())):
            for pid in pids:
                cpu = cpu_seconds(pid)
                if cpu is None:
                    continue
                # a process first seen after the start began within the window
                self.first.setdefault(pid, cpu if start else 0.0)
                self.last[pid] = cpu
                self.kind[pid] = kind

    def per_minute(self, minutes: float) -> dict[str, float]:
        out = dict.fromkeys(("exporter", "backends"), 0.0)
        for pid, last in self.last.items():
            out[self.kind[pid]] += last - self.first[pid]
        return {k: v / minutes for k, v in out.items()}


OWN = re.compile(
    rb"perf_analyzer_analysis_(duration_seconds|last_success_timestamp_seconds)"
    rb'\{analysis="([^"]+)"\} ([0-9.e+-]+)'
)


def scrape(url: str, gzip: bool) -> tuple[float, float, bytes]:
    headers = {
        "Accept": "application/openmetrics-text;version=1.0.0",
        "X-Prometheus-Scrape-Timeout-Seconds": "10",
    }
    if gzip:
        headers["Accept-Encoding"] = "gzip"
    t0, start = time.perf_counter(), time.time()
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as r:
        body = r.read()
    return start, time.perf_counter() - t0, body


def runs_of(body: bytes) -> set[tuple[str, float, float]]:
    """(analysis, start, end) of each analysis's latest successful run, wall clock."""
    seen: dict[str, dict[str, float]] = {}
    for what, name, value in OWN.findall(body[:200_000]):
        seen.setdefault(name.decode(), {})[what.decode()] = float(value)
    return {
        (name, v["last_success_timestamp_seconds"] - v["duration_seconds"],
         v["last_success_timestamp_seconds"])
        for name, v in seen.items()
        if len(v) == 2
    }  # fmt: skip


def scrapers(
    url: str, n: int, seconds: float
) -> tuple[list[tuple[bool, float, float]], set, list[float]]:
    """n scrapers, each once a second, alternating plain and gzip: (gzip, start, seconds)
    of every scrape, and the analysis runs seen in the bodies (plain ones); and, as a
    control, the seconds of a `/-/healthy` request once a second (the same server, no
    metrics work: what the machine's load alone adds to a request)."""
    timings: list[tuple[bool, float, float]] = []
    control: list[float] = []
    runs: set[tuple[str, float, float]] = set()
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def loop(i: int) -> None:
        k = i
        while time.monotonic() < stop:
            tick = time.monotonic()
            gz = k % 2 == 1
            start, took, body = scrape(url, gz)
            with lock:
                timings.append((gz, start, took))
                if not gz:
                    runs.update(runs_of(body))
            k += 1
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))

    def probe() -> None:
        healthy = url.replace("/metrics", "/-/healthy")
        while time.monotonic() < stop:
            tick = time.monotonic()
            t0 = time.perf_counter()
            with urllib.request.urlopen(healthy, timeout=60) as r:
                r.read()
            control.append(time.perf_counter() - t0)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(n)]
    threads.append(threading.Thread(target=probe))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return timings, runs, control


def quantiles(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
        "max_ms": ms[-1],
    }


def measure(
    dsn: str, minutes: float, n_scrapers: int, config: str, settle: float = 0
) -> dict[str, Any]:
    appender = Appender(dsn)
    appender.catch_up()
    stop = threading.Event()
    threading.Thread(target=appender.run, args=(stop,), daemon=True).start()
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    try:
        with serve(dsn, config) as (process, url):
            out["healthy_s"] = time.perf_counter() - t0
            ready: dict[str, float] = {}
            while len(ready) < len(JOBS):
                body = scrape(url, False)[2]
                for name, _, _ in runs_of(body):
                    ready.setdefault(name, time.perf_counter() - t0)
                time.sleep(0.5)
            out["ready_s"] = ready
            out["warmup_s"] = max(ready.values())
            # let the first runs' listeners finish, and the reruns of results from part of
            # the history (exporter.cold_start_seconds) when asked to
            time.sleep(5 + settle)
            out["rss_warm_mib"] = rss_mib(descendants(process.pid))[0]
            out["rss_warm_by_process_mib"] = {
                str(pid): rss_mib([pid])[0] for pid in descendants(process.pid)
            }
            meter = CpuMeter(dsn, process.pid)
            meter.sample(start=True)
            sampling = threading.Event()

            def sample_cpu() -> None:
                while not sampling.wait(2.0):
                    meter.sample()

            sampler = threading.Thread(target=sample_cpu, daemon=True)
            sampler.start()
            t1 = time.perf_counter()
            timings, runs, control = scrapers(url, n_scrapers, minutes * 60)
            sampling.set()
            sampler.join()
            meter.sample()
            elapsed = (time.perf_counter() - t1) / 60
            out["cpu_s_per_min"] = meter.per_minute(elapsed)
            tree = descendants(process.pid)
            out["rss_end_mib"], peak = rss_mib(tree)
            out["rss_end_by_process_mib"] = {str(pid): rss_mib([pid]) for pid in tree}
            out["rss_peak_mib"] = max(peak, meter.peak_rss)
            out["processes"] = len(tree)
    finally:
        stop.set()
    out["appended_rows"] = appender.rows
    out["steady_minutes"] = elapsed
    out["plain"] = quantiles([s * 1000 for gz, _, s in timings if not gz])
    out["gzip"] = quantiles([s * 1000 for gz, _, s in timings if gz])
    out["healthy_control"] = quantiles([s * 1000 for s in control])

    def busy(start: float, took: float) -> bool:
        return any(a < start + took and start < b for _, a, b in runs)

    out["during_runs"] = quantiles([s * 1000 for _, a, s in timings if busy(a, s)])
    out["between_runs"] = quantiles([s * 1000 for _, a, s in timings if not busy(a, s)])
    out["runs_seen"] = len(runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--minutes", type=float, default=10, help="of steady state")
    parser.add_argument("--scrapers", type=int, default=4)
    parser.add_argument("--label", default="", help="suffix of the results file")
    parser.add_argument(
        "--settle", type=float, default=0, help="seconds after warm-up before the steady window"
    )
    parser.add_argument("--config", default="{}", help="the exporter's YAML configuration, inline")
    args = parser.parse_args()
    print(f"machine: {machine()}; fleet {args.nodes} nodes x 2 containers x {args.days:g} days")
    pg = fleet_database(args.nodes, args.days)
    try:
        result = {"nodes": args.nodes, "days": args.days, "machine": machine()}
        result |= measure(pg.dsn, args.minutes, args.scrapers, args.config, args.settle)
        result["settle_s"] = args.settle
        result["config"] = args.config
    finally:
        pg.stop()
    RESULTS.mkdir(exist_ok=True)
    suffix = f"-{args.label}" if args.label else ""
    path = RESULTS / f"steady-{args.nodes}{suffix}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    write_results()


if __name__ == "__main__":
    main()
