"""The emergency check (with its per-node newest-sample walk) on a plain table and on one
partitioned by day, warm. Run it on two commits against the same server (`--dsn`; the
tables are loaded once and reused) to compare code: the script needs only the public API
and the registry.

    python bench/newest_walk.py --nodes 20 --days 30 [--dsn DSN] [--rounds 5]

Two ways of running it warm:
- "library": `PerformanceAnalyzer.emergency_health_check(now=END)` again and again (the
  context's caches warm, no state kept between runs);
- "exporter": as the exporter runs it, every 10 s with its incremental state
  (`Analysis.incremental`, none before it had one), `now` stepping by 10 s through the
  fleet's last half hour, so each run has the rows of 10 more seconds to take in. Besides
  wall time, the CPU of this process and of the server's backends per run.

Each round is the median of 30 checks; the table shows the quietest round (the lowest
median), since on a shared machine the other rounds measure the neighbours.
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg
from common import database, load, machine
from steady import cpu_seconds

from exporter import PerformanceAnalyzer, registry
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


def backends(dsn: str) -> float:
    """CPU seconds so far of the server's backends serving the analyzers."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        ).fetchall()
    return sum(cpu_seconds(p) or 0.0 for (p,) in pids)


def exporter_runs(dsn: str, analyzer: PerformanceAnalyzer, repeat: int = 30) -> dict[str, float]:
    """Median wall ms, and mean Python and backend CPU ms, of `repeat` runs as the exporter
    makes them (after one run that fills the state)."""
    analysis = registry.get("emergency")
    state = analysis.incremental() if analysis.incremental else None
    start = END - 1800
    registry.run(analysis, analyzer.ctx, None, start, state)
    walls = []
    b0, p0 = backends(dsn), time.process_time()
    for i in range(1, repeat + 1):
        t0 = time.perf_counter()
        registry.run(analysis, analyzer.ctx, None, start + 10 * i, state)
        walls.append(1000 * (time.perf_counter() - t0))
    python = 1000 * (time.process_time() - p0) / repeat
    return {
        "wall": statistics.median(walls),
        "python": python,
        "backend": 1000 * (backends(dsn) - b0) / repeat,
    }


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
        runs: dict[str, list[dict[str, float]]] = {"plain": [], "parted": []}
        with (
            PerformanceAnalyzer(dsn, table_name="plain") as plain,
            PerformanceAnalyzer(dsn, table_name="parted") as parted,
        ):
            for _ in range(args.rounds):
                for name, a in (("plain", plain), ("parted", parted)):
                    rounds[name].append(median_ms(lambda a=a: a.emergency_health_check(now=END)))
                    runs[name].append(exporter_runs(dsn, a))
        print("\n| table | library: check ms, quietest round | all rounds |\n|---|---:|---|")
        for name, ms in rounds.items():
            print(f"| {name} | {min(ms):.1f} | {', '.join(f'{m:.1f}' for m in ms)} |")
        print(
            "\n| table | exporter: check ms, quietest round | its CPU ms, Python + backend |"
            " all rounds' wall ms |\n|---|---:|---:|---|"
        )
        for name, found in runs.items():
            best = min(found, key=lambda r: r["wall"])
            walls = ", ".join(f"{r['wall']:.1f}" for r in found)
            cpu = f"{best['python']:.1f} + {best['backend']:.1f}"
            print(f"| {name} | {best['wall']:.1f} | {cpu} | {walls} |")


if __name__ == "__main__":
    main()
