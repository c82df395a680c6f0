"""The emergency check's per-node newest-sample walk on a plain table and on one partitioned
by day: unbounded (every partition probed at each step of the walk) against bounded to
`emergency.forget_after_hours` (partitions before that pruned). Warm medians.

    python bench/newest_walk.py --nodes 20 --days 30 [--dsn DSN]
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import psycopg
from common import database, load, machine

from exporter import PerformanceAnalyzer
from exporter.analyses import emergency, hosts
from exporter.analyses.common import HOUR
from exporter.partitions import DAY, init_partitioned_table
from exporter.simulate import FleetSpec
from exporter.store import Store

END = 1_790_000_000  # 2026-09-21 14:13:20 UTC


def timed(fn, repeat: int = 15) -> float:
    """Median wall milliseconds of `fn()` over `repeat` runs, after one warm-up run."""
    fn()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(1000 * (time.perf_counter() - t0))
    return statistics.median(runs)


def unbounded(ctx, now, *, since=None):
    """node_spans as it was: no time bound on the walk."""
    return hosts.node_spans(ctx, now)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--containers", type=int, default=2)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--dsn", default=None)
    args = parser.parse_args()
    spec = FleetSpec(nodes=args.nodes, containers=args.containers, days=args.days, end=END)
    print(f"machine: {machine()}")
    print(f"fleet: {args.nodes} nodes x {args.containers} containers x {args.days:g} days")
    with database(args.dsn) as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        print(f"server: {conn.execute('SHOW server_version').fetchone()[0]}\n")
        with Store(dsn, "plain") as store:
            load(store, spec)
        with Store(dsn, "parted") as store:
            init_partitioned_table(store, premake_days=7, since=END - args.days * DAY, now=END)
            load(store, spec, indexes="none")
        conn.execute("VACUUM ANALYZE plain")
        conn.execute("VACUUM ANALYZE parted")
        print("| table | walk | node_spans ms | emergency check ms |")
        print("|---|---|---:|---:|")
        for table in ("plain", "parted"):
            with PerformanceAnalyzer(dsn, table_name=table) as analyzer:
                ctx = analyzer.ctx
                since = END - int(ctx.config.emergency.forget_after_hours * HOUR)
                for label, patch in (("unbounded (before)", unbounded), ("bounded", None)):
                    with mock.patch.object(emergency, "node_spans", patch or hosts.node_spans):
                        check = timed(lambda a=analyzer: a.emergency_health_check(now=END))
                    if patch:
                        spans = timed(lambda c=ctx: hosts.node_spans(c, END))
                    else:
                        spans = timed(lambda c=ctx, s=since: hosts.node_spans(c, END, since=s))
                    print(f"| {table} | {label} | {spans:.1f} | {check:.1f} |")


if __name__ == "__main__":
    main()
