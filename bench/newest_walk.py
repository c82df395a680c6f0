"""The emergency check (with its per-node newest-sample walk) on a plain table and on one
partitioned by day, warm. Run it on two commits against the same server (`--dsn`; the
tables are loaded once and reused) to compare code: the script needs only the public API.

    python bench/newest_walk.py --nodes 20 --days 30 [--dsn DSN] [--rounds 5]

Each round is the median of 30 checks; the table shows the quietest round (the lowest
median), since on a shared machine the other rounds measure the neighbours.
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg
from common import database, load, machine

from exporter import PerformanceAnalyzer
from exporter.partitions import DAY, init_partitioned_table
from exporter.simulate import FleetSpec
from exporter.store import Store

END = 1_790_000_000  # 2026-09-21 14:13:20 UTC


def median_ms(fn, repeat: int = 30) -> float:
    """Median wall milliseconds of `fn()` over `repeat` runs, after one warm-up run."""
    fn()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(1000 * (time.perf_counter() - t0))
    return statistics.median(runs)


def ensure_tables(dsn: str, spec: FleetSpec) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        have = {r[0] for r in conn.execute("SELECT relname FROM pg_class")}
        if {"plain", "parted"} <= have:
            return
        with Store(dsn, "plain") as store:
            load(store, spec)
        with Store(dsn, "parted") as store:
            init_partitioned_table(store, premake_days=7, since=END - spec.days * DAY, now=END)
            load(store, spec, indexes="none")
        conn.execute("VACUUM ANALYZE plain")
        conn.execute("VACUUM ANALYZE parted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--containers", type=int, default=2)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dsn", default=None)
    args = parser.parse_args()
    spec = FleetSpec(nodes=args.nodes, containers=args.containers, days=args.days, end=END)
    print(f"machine: {machine()}")
    print(f"fleet: {args.nodes} nodes x {args.containers} containers x {args.days:g} days")
    with database(args.dsn) as dsn:
        ensure_tables(dsn, spec)
        rounds: dict[str, list[float]] = {"plain": [], "parted": []}
        with (
            PerformanceAnalyzer(dsn, table_name="plain") as plain,
            PerformanceAnalyzer(dsn, table_name="parted") as parted,
        ):
            for _ in range(args.rounds):
                for name, a in (("plain", plain), ("parted", parted)):
                    rounds[name].append(median_ms(lambda a=a: a.emergency_health_check(now=END)))
        print("\n| table | emergency check ms, quietest round | all rounds |\n|---|---:|---|")
        for name, ms in rounds.items():
            print(f"| {name} | {min(ms):.1f} | {', '.join(f'{m:.1f}' for m in ms)} |")


if __name__ == "__main__":
    main()
