"""Warm cost of the exporter's incremental runs beside runs from scratch and one aggregate
pass over the window: each analysis is run as the exporter runs it (its served window,
its state kept between runs), one minute later each time, and from scratch at the same
instants; the median of `--runs` of each.

    python bench/incremental.py --nodes 50 --days 7 [--dsn DSN] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import psycopg
from common import database, load, machine

from exporter import PerformanceAnalyzer, registry
from exporter.simulate import FleetSpec
from exporter.store import Store

END = 1_790_000_040
READS = {"anomalies": lambda c: c.anomalies.history_days}


def timed(func: Any, *args: Any) -> float:
    t0 = time.perf_counter()
    func(*args)
    return time.perf_counter() - t0


def window_pass(dsn: str, days: float) -> float:
    query = (
        "SELECT node_name, count(*), avg(cpu_total_pct), max(cpu_total_pct),"
        " avg(mem_available_mb), max(temperature_c) FROM monitor_samples_ring"
        " WHERE sample_time > %s AND sample_time <= %s GROUP BY node_name"
    )
    with psycopg.connect(dsn) as conn:
        return timed(lambda: conn.execute(query, (END - days * 86400, END)).fetchall())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--dsn", default=None, help="a database that already holds the fleet")
    args = parser.parse_args()
    print(f"machine: {machine()}; fleet {args.nodes} nodes x 2 containers x {args.days:g} days")
    with database(args.dsn) as dsn:
        if not args.dsn:
            with Store(dsn) as store:
                spec = FleetSpec(nodes=args.nodes, days=args.days, end=END, realistic=True)
                loaded = load(store, spec)
            print(f"loaded {loaded['rows']:,} rows in {loaded['total_s']:.1f} s")
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE monitor_samples_ring")
        window_pass(dsn, args.days)
        floor = statistics.median(window_pass(dsn, args.days) for _ in range(3))
        print(f"one {args.days:g}-day aggregate pass: {floor * 1000:.0f} ms")
        print(
            "\n| analysis | reads days | from scratch ms | incremental ms | pass over what it"
            " reads ms | scratch / pass | incr / pass |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        with PerformanceAnalyzer(dsn) as analyzer:
            ctx = analyzer.ctx
            for analysis in registry.served():
                if analysis.incremental is None:
                    continue
                window = registry.served_window(analysis, ctx.config)
                state = analysis.incremental()
                start = END - (args.runs + 1) * 60
                registry.run(analysis, ctx, window, start, state)  # warm-up: rollups, fit
                scratch, incremental = [], []
                for k in range(1, args.runs + 1):
                    now = start + 60 * k  # one new minute each time
                    # alternate which goes first: the first at a `now` fills the caches
                    # both share (node intervals of the newest rows)
                    if k % 2:
                        incremental.append(timed(registry.run, analysis, ctx, window, now, state))
                    scratch.append(timed(registry.run, analysis, ctx, window, now))
                    if not k % 2:
                        incremental.append(timed(registry.run, analysis, ctx, window, now, state))
                s, i = statistics.median(scratch), statistics.median(incremental)
                # the pass over the raw rows a run from scratch reads: anomalies their
                # history (rollups), SLIs their window
                reads = min(args.days, READS.get(analysis.name, lambda c: 0)(ctx.config))
                if analysis.window is not None and analysis.window.unit == "hours":
                    reads = max(reads, (window or 0) / 24)
                own = (
                    floor
                    if reads == args.days
                    else statistics.median(window_pass(dsn, reads) for _ in range(3))
                )
                print(
                    f"| {analysis.name} | {reads:g} | {s * 1000:.0f} | {i * 1000:.0f} | "
                    f"{own * 1000:.0f} | {s / own:.2f} | {i / own:.2f} |"
                )


if __name__ == "__main__":
    main()
