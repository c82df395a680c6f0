"""Memory of one refresh cycle over many junk node names (issue 19's cardinality bomb): each
served analysis run once, in the exporter's order, over `--nodes` junk names of 3 rows each;
prints the process's peak RSS after each analysis and, with `--trace`, the lines that
allocated most (tracemalloc; slower).

With `--serve`, the acceptance case instead: a real `perf-analyzer serve --max-series
BUDGET` (worker process on, the default) over the junk names, measured from outside: time
until every analysis has succeeded once, RSS (VmRSS) and peak RSS (VmHWM) of the serving
process and of its worker, then `--scrape-seconds` of scrapes every 0.3 s (the slowest, the
series in the body, `series_dropped{kind="node"}`, `nodes_ignored`). `--code DIR` runs the
exporter from another checkout (a "before" measurement); `--label` writes the figures to
bench/results/junk-serve-LABEL.json.

    python bench/junk_memory.py [--nodes 20000] [--trace] [--dsn DSN]
    python bench/junk_memory.py --serve [--nodes 20000] [--budget 10000] [--label after]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
import urllib.request
from pathlib import Path

from common import database
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from exporter import PerformanceAnalyzer, registry
from exporter.embedded import free_port
from exporter.schema import init_table
from exporter.store import Store
from tests.junk_fleet import load_junk

ROOT = Path(__file__).resolve().parents[1]


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_process(args: argparse.Namespace) -> int:
    now = 1_790_000_040
    with database(args.dsn) as dsn, Store(dsn) as store:
        init_table(store)
        load_junk(store, args.nodes, now)
        print(f"{args.nodes:,} junk nodes loaded; peak RSS {peak_mib():.0f} MiB", flush=True)
        if args.trace:
            tracemalloc.start(8)
        with PerformanceAnalyzer(store) as a:
            for unit in registry.ANALYSES:
                if unit.serve is None:
                    continue
                before = tracemalloc.take_snapshot() if args.trace else None
                t = time.perf_counter()
                a.run(unit.name, now=now)
                took = time.perf_counter() - t
                print(f"{unit.name:14} {took:6.1f} s  peak RSS {peak_mib():6.0f} MiB", flush=True)
                if before is not None:
                    top = tracemalloc.take_snapshot().compare_to(before, "lineno")[:3]
                    for stat in top:
                        print(f"    {stat}")
                    print(f"    traced peak {tracemalloc.get_traced_memory()[1] / 2**20:.0f} MiB")
                    tracemalloc.reset_peak()
    return 0


# --------------------------------------------------------------------------- --serve


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of `pid`, MiB (0 when it is gone)."""
    out = {"rss": 0.0, "hwm": 0.0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out["rss" if key == "VmRSS" else "hwm"] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return out


def descendants(pid: int) -> list[int]:
    """Child processes of `pid`, recursively (the worker process and its helpers)."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found += [int(child), *descendants(int(child))]
    except OSError:
        pass
    return found


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fetch(url: str) -> tuple[list[Sample], float]:
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=120) as response:
        text = response.read().decode()
    took = time.monotonic() - started
    return [s for f in text_string_to_metric_families(text) for s in f.samples], took


def served(args: argparse.Namespace) -> int:
    code = Path(args.code).resolve() if args.code else ROOT
    with database(args.dsn) as dsn:
        with Store(dsn) as store:
            init_table(store)
            load_junk(store, args.nodes)
        print(f"{args.nodes:,} junk nodes loaded; exporter from {code}", flush=True)
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(code)}
        command = [sys.executable, "-m", "exporter.cli", "serve", "--dsn", dsn, "--max-series",
                   str(args.budget), "--web.listen-address", f"127.0.0.1:{port}"]  # fmt: skip
        started = time.monotonic()
        process = subprocess.Popen(command, env=env, cwd=code, stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/metrics"
        figures: dict[str, object] = {"nodes": args.nodes, "max_series": args.budget}
        peak = {"serve": 0.0, "worker": 0.0, "sum": 0.0}

        def sample_memory() -> dict[str, float]:
            serve, workers = memory(process.pid), [memory(p) for p in descendants(process.pid)]
            now = {
                "serve": serve["rss"],
                "worker": sum(w["rss"] for w in workers),
                "serve_hwm": serve["hwm"],
                "worker_hwm": sum(w["hwm"] for w in workers),
            }
            peak["serve"] = max(peak["serve"], now["serve"])
            peak["worker"] = max(peak["worker"], now["worker"])
            peak["sum"] = max(peak["sum"], now["serve"] + now["worker"])
            return now

        try:
            samples: list[Sample] = []
            until = started + args.timeout
            while time.monotonic() < until:
                sample_memory()
                try:
                    samples, _ = fetch(url)
                except OSError:
                    time.sleep(0.5)
                    continue
                runs = [s for s in samples if s.name.endswith("last_run_success")]
                if runs and all(s.value == 1 for s in runs) and len(runs) == len(registry.served()):
                    break
                time.sleep(1)
            figures["first_runs_seconds"] = round(time.monotonic() - started, 1)
            figures["after_first_runs_mib"] = sample_memory()
            times: list[float] = []
            cpu_before = sum(cpu_seconds(p) for p in [process.pid, *descendants(process.pid)])
            until = time.monotonic() + args.scrape_seconds
            while time.monotonic() < until:
                samples, took = fetch(url)
                times.append(took)
                sample_memory()
                time.sleep(0.3)
            cpu_after = sum(cpu_seconds(p) for p in [process.pid, *descendants(process.pid)])
            figures["end_mib"] = sample_memory()
            figures["peak_rss_mib"] = {k: round(v, 1) for k, v in peak.items()}
            times.sort()
            figures["scrapes"], figures["slowest_scrape_seconds"] = len(times), round(times[-1], 3)
            figures["median_scrape_seconds"] = round(times[len(times) // 2], 3)
            figures["cpu_seconds_during_scrapes"] = round(cpu_after - cpu_before, 2)
            figures["series"] = len(samples)
            for s in samples:
                if s.name.endswith("series_dropped") and s.labels.get("kind") == "node":
                    figures["series_dropped_node"] = s.value
                if s.name.endswith("nodes_ignored"):
                    figures["nodes_ignored"] = s.value
            figures["nodes_served"] = len({s.labels["node"] for s in samples if "node" in s.labels})
            figures["load_average"] = os.getloadavg()
        finally:
            process.terminate()
            process.wait(60)
    print(json.dumps(figures, indent=1))
    if args.label:
        out = ROOT / "bench" / "results" / f"junk-serve-{args.nodes}-{args.label}.json"
        out.write_text(json.dumps(figures, indent=1) + "\n")
        print(f"written {out}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=20_000)
    p.add_argument("--trace", action="store_true")
    p.add_argument("--dsn")
    p.add_argument("--serve", action="store_true", help="measure a real `serve` (see above)")
    p.add_argument("--budget", type=int, default=10_000, help="--max-series of --serve")
    p.add_argument("--code", help="the checkout whose exporter --serve runs")
    p.add_argument("--scrape-seconds", type=float, default=40)
    p.add_argument("--timeout", type=float, default=900, help="for the first runs")
    p.add_argument("--label")
    args = p.parse_args()
    return served(args) if args.serve else in_process(args)


if __name__ == "__main__":
    sys.exit(main())
