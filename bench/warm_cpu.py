"""Where the exporter's steady CPU goes, analysis by analysis: each served analysis run as
the exporter's worker runs it (one process, one context, its incremental state kept, at its
refresh interval) on a persistent fleet, with one row per node and container appended
every simulated minute; the CPU of this process (`time.process_time`) and of the
exporter's database backends (`/proc/<pid>/stat`) is added up around each run.

Time is simulated: `now` steps by 10 s from the fleet's newest minute, so the figures are
CPU seconds per simulated minute, what the exporter would spend per minute of wall time
(scrapes not included). Load from other processes does not move CPU seconds much, unlike
wall time.

    python bench/warm_cpu.py --nodes 200 [--minutes 10] [--only emergency,current]
        [--profile availability] [--slow]

`--slow` includes the analyses refreshed every 15 minutes (their first runs build the
rollups cold: minutes at 200 nodes). The fleet is `$PERF_ANALYZER_BENCH_DATA/fleet-N x 30`,
and rows are appended to it: use a copy (see bench/steady.py).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pickle
import pstats
import time
from pathlib import Path
from typing import Any

import psycopg
from common import machine
from steady import TABLE, cpu_seconds, fleet_database

from exporter import PerformanceAnalyzer, allocator, collector, registry
from exporter.schema import COLUMN_NAMES
from exporter.store import APPLICATION_NAME

RESULTS = Path(__file__).parent / "results"
# seconds of raw rows a run from scratch reads, for the pass it is compared with
READS = {
    "availability": lambda c: c.sli.window_hours * 3600,
    "contention": lambda c: (c.contention.window_hours + c.contention.baseline_hours) * 3600,
    "anomalies": lambda c: c.anomalies.history_days * 86400,
}
PASS = (
    "SELECT node_name, count(*), avg(cpu_total_pct), max(cpu_total_pct),"
    " avg(mem_available_mb), max(temperature_c) FROM monitor_samples_ring"
    " WHERE sample_time > %s AND sample_time <= %s GROUP BY node_name"
)
STEP = 10  # seconds of simulated time between scheduling ticks


class Minutes:
    """Appends one row per node and container per simulated minute (each series' newest
    row copied, stamped a few seconds into the minute)."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True, application_name="warm-cpu-bench")
        cols = ", ".join(COLUMN_NAMES)
        last = self.conn.execute(f"SELECT max(sample_time) FROM {TABLE}").fetchone()
        self.last = int(last[0]) // 60 * 60 if last and last[0] else int(time.time()) // 60 * 60
        self.template = self.conn.execute(
            f"SELECT DISTINCT ON (node_name, container_name) {cols} FROM {TABLE}"
            " WHERE sample_time > %s ORDER BY node_name, container_name, sample_time DESC",
            (self.last - 900,),
        ).fetchall()
        self.at = COLUMN_NAMES.index("sample_time")

    def append(self) -> int:
        """The next minute's rows; returns that minute."""
        self.last += 60
        with self.conn.cursor() as cur:
            with cur.copy(f"COPY {TABLE} ({', '.join(COLUMN_NAMES)}) FROM STDIN") as copy:
                for row in self.template:
                    copy.write_row((*row[: self.at], self.last + 7, *row[self.at + 1 :]))
        return self.last

    def pass_cpu(self, seconds: float, now: int) -> float:
        """Backend CPU seconds of one 5-aggregate pass over the raw rows of `seconds` (the
        mean of 5: /proc counts in ticks of 10 ms)."""
        pid = self.conn.execute("SELECT pg_backend_pid()").fetchone()
        assert pid is not None
        self.conn.execute(PASS, (now - seconds, now)).fetchall()  # warm the cache
        before = cpu_seconds(pid[0]) or 0.0
        for _ in range(5):
            self.conn.execute(PASS, (now - seconds, now)).fetchall()
        return ((cpu_seconds(pid[0]) or 0.0) - before) / 5

    def backend_cpu(self) -> float:
        pids = [
            r[0]
            for r in self.conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                (APPLICATION_NAME,),
            ).fetchall()
        ]
        return sum(cpu_seconds(p) or 0.0 for p in pids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--minutes", type=int, default=10, help="simulated, after warm-up")
    parser.add_argument("--only", default="", help="comma-separated analysis names")
    parser.add_argument("--slow", action="store_true", help="include the 15-minute ones")
    parser.add_argument("--profile", default="", help="cProfile the warm runs of this one")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    print(f"machine: {machine()}; fleet {args.nodes} nodes x 2 containers x {args.days:g} days")
    pg = fleet_database(args.nodes, args.days)
    try:
        result = measure(pg.dsn, args)
    finally:
        pg.stop()
    if args.label:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"warm-cpu-{args.nodes}-{args.label}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")


def measure(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    minutes = Minutes(dsn)
    only = {n for n in args.only.split(",") if n}
    with PerformanceAnalyzer(dsn) as analyzer:
        ctx = analyzer.ctx
        collector._worker = analyzer  # what the worker renders with
        jobs = []
        for a in registry.served():
            every = registry.refresh_seconds(a, ctx.config)
            if (only and a.name not in only) or (every > 300 and not args.slow and not only):
                continue
            state = a.incremental() if a.incremental else None
            jobs.append((a, every, registry.served_window(a, ctx.config), state))
        start = minutes.append()
        for a, _, window, state in jobs:  # warm-up: caches, rollups, the first state
            t0 = time.perf_counter()
            registry.run(a, ctx, window, start + 8, state)
            print(f"warm-up {a.name}: {time.perf_counter() - t0:.1f} s", flush=True)
        py = dict.fromkeys((a.name for a, *_ in jobs), 0.0)
        db = dict.fromkeys(py, 0.0)
        runs = dict.fromkeys(py, 0)
        rest = dict.fromkeys(py, 0.0)  # rendering, trim, the result's pickle both ways
        profiler = cProfile.Profile() if args.profile else None
        ticks = args.minutes * 60 // STEP
        for tick in range(1, ticks + 1):
            elapsed = tick * STEP
            if elapsed % 60 == 0:
                minutes.append()
            now = start + 8 + elapsed
            for a, every, window, state in jobs:
                if elapsed % every:
                    continue
                b0, p0 = minutes.backend_cpu(), time.process_time()
                if profiler and a.name == args.profile:
                    profiler.enable()
                result = registry.run(a, ctx, window, now, state)
                if profiler and a.name == args.profile:
                    profiler.disable()
                p1 = time.process_time()
                py[a.name] += p1 - p0
                db[a.name] += minutes.backend_cpu() - b0
                rendered = collector._worker_render(a, result)
                allocator.trim()
                pickle.loads(pickle.dumps((result, rendered)))
                rest[a.name] += time.process_time() - p1
                runs[a.name] += 1
        passes = {
            a.name: minutes.pass_cpu(READS[a.name](ctx.config), now)
            for a, *_ in jobs
            if a.name in READS
        }
    per_min = {
        n: {
            "runs": runs[n],
            "python_s_per_min": round(py[n] / args.minutes, 3),
            "backend_s_per_min": round(db[n] / args.minutes, 3),
            "render_ipc_s_per_min": round(rest[n] / args.minutes, 3),
            "ms_per_run": round(1000 * (py[n] + db[n]) / max(runs[n], 1), 1),
            "pass_cpu_ms": round(1000 * passes[n], 1) if n in passes else None,
        }
        for n in py
    }
    print(
        "\n| analysis | runs | Python CPU-s / min | backend CPU-s / min | render, trim, pickle"
        " CPU-s / min | run CPU ms / run |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for n, r in per_min.items():
        print(
            f"| {n} | {r['runs']} | {r['python_s_per_min']:.3f} | {r['backend_s_per_min']:.3f}"
            f" | {r['render_ipc_s_per_min']:.3f} | {r['ms_per_run']:.0f} |"
        )
    total = [sum(x.values()) / args.minutes for x in (py, db, rest)]
    print(f"| total | | {total[0]:.3f} | {total[1]:.3f} | {total[2]:.3f} | |")
    print("\n| analysis | warm run CPU ms | pass over what it reads, backend CPU ms | ratio |")
    print("|---|---:|---:|---:|")
    for n, r in per_min.items():
        if r["pass_cpu_ms"]:
            ratio = r["ms_per_run"] / r["pass_cpu_ms"]
            print(f"| {n} | {r['ms_per_run']:.0f} | {r['pass_cpu_ms']:.0f} | {ratio:.2f} |")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    return {"nodes": args.nodes, "minutes": args.minutes, "analyses": per_min}


if __name__ == "__main__":
    main()
