"""Each analysis cold (a new analyzer: empty rollups) and warm (the same analyzer again),
beside the floor of any 30-day analysis without rollups: one aggregate pass over the
window, and the naive approach of pulling the window's raw rows into Python.

    python bench/analyses.py --nodes 50 --days 30 [--dsn DSN] [--keep-dir DIR]
"""

from __future__ import annotations

import argparse
import time

import psycopg
from common import database, load, machine

from exporter import PerformanceAnalyzer
from exporter.simulate import FleetSpec
from exporter.store import Store

END = 1_790_000_040

METHODS = [
    ("emergency_health_check", {}),
    ("system_availability_check", {}),
    ("detect_anomalies", {}),
    ("resource_contention_analysis", {}),
    ("correlation_analysis", {}),
    ("capacity_planning_analysis", {"days": 30}),
    ("workload_pattern_analysis", {}),
    ("generate_alert_config", {}),
    ("export_metrics_summary", {}),
    ("daily_health_report", {}),
    ("weekly_performance_summary", {}),
]


def timed(func, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    func(*args, **kwargs)
    return time.perf_counter() - t0


def window_pass(dsn: str, days: float, end: int = END) -> float:
    with psycopg.connect(dsn) as conn:
        return timed(
            lambda: conn.execute(
                "SELECT node_name, count(*), avg(cpu_total_pct), max(cpu_total_pct),"
                " avg(mem_available_mb), max(temperature_c) FROM monitor_samples_ring"
                " WHERE sample_time > %s AND sample_time <= %s GROUP BY node_name",
                (end - days * 86400, end),
            ).fetchall()
        )


def naive_pull(dsn: str, days: float) -> float:
    with psycopg.connect(dsn) as conn:
        return timed(
            lambda: conn.execute(
                "SELECT * FROM monitor_samples_ring WHERE sample_time > %s",
                (END - days * 86400,),
            ).fetchall()
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--dsn", default=None, help="a database that already holds the fleet")
    args = parser.parse_args()
    print(f"machine: {machine()}; fleet {args.nodes} nodes x 2 containers x {args.days:g} days")
    with database(args.dsn) as dsn:
        if not args.dsn:
            with Store(dsn) as store:
                loaded = load(store, FleetSpec(nodes=args.nodes, days=args.days, end=END))
            print(f"loaded {loaded['rows']:,} rows in {loaded['total_s']:.1f} s")
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE monitor_samples_ring")
        window_pass(dsn, args.days)  # warm the cache the same way for every figure
        floor = min(window_pass(dsn, args.days) for _ in range(3))
        naive = naive_pull(dsn, args.days)
        print(
            f"one {args.days:g}-day aggregate pass: {floor * 1000:.0f} ms; "
            f"naive raw pull into Python: {naive * 1000:.0f} ms ({naive / floor:.1f}x)"
        )
        print("\n| analysis | cold ms | warm ms | cold / pass | warm / pass |")
        print("|---|---:|---:|---:|---:|")
        for method, kwargs in METHODS:
            with PerformanceAnalyzer(dsn) as analyzer:
                run = getattr(analyzer, method)
                cold = timed(run, now=END, **kwargs)
                warm = min(timed(run, now=END, **kwargs) for _ in range(2))
            print(
                f"| {method} | {cold * 1000:.0f} | {warm * 1000:.0f} | "
                f"{cold / floor:.2f} | {warm / floor:.2f} |"
            )


if __name__ == "__main__":
    main()
