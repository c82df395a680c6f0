"""A plain table against one partitioned by day (`db init --partitioned`): load rate, the
emergency check's 5-minute read (EXPLAIN ANALYZE: which partitions it touches), the
newest-sample-per-node read, one 30-day aggregate pass, and retention: `db prune` of the
oldest 7 days against DELETE of the same rows plus VACUUM.

    python bench/partitions.py --nodes 20 --days 30 [--dsn DSN]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time

import psycopg
from common import database, load, machine
from psycopg import sql

from exporter import PerformanceAnalyzer
from exporter.analyses.hosts import _SPAN_FLOOR, _SPAN_SQL, _WALK_FLOOR
from exporter.partitions import DAY, day_start, init_partitioned_table
from exporter.retention import prune
from exporter.simulate import FleetSpec
from exporter.store import Store

END = 1_790_000_000  # 2026-09-21 14:13:20 UTC
PRUNE_DAYS = 7

RECENT = """SELECT node_name, avg(cpu_total_pct), max(temperature_c), count(*)
  FROM {t} WHERE sample_time > %(now)s - 300 AND sample_time <= %(now)s AND node_flag
 GROUP BY node_name"""
SPANS = _SPAN_SQL.replace("{walk}", "").replace("{span}", "").replace("{shard}", "TRUE")


def bounded_spans(floor: int) -> str:
    """The walk as the emergency check runs it on a partitioned table: from `floor` on."""
    walk, span = (_WALK_FLOOR, _SPAN_FLOOR)
    text = _SPAN_SQL.replace("{walk}", walk).replace("{span}", span).replace("{shard}", "TRUE")
    return text.replace("%(floor)s", str(floor))


MONTH = """SELECT node_name, count(*), avg(cpu_total_pct), max(cpu_total_pct),
       avg(mem_available_mb), max(temperature_c)
  FROM {t} WHERE sample_time > %(now)s - 30 * 86400 AND sample_time <= %(now)s
 GROUP BY node_name"""


def explain(conn: psycopg.Connection, query: str, table: str, now: int) -> dict:
    """Warm EXPLAIN (ANALYZE, BUFFERS): times, buffers and the relations scanned."""
    text = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query).format(
        t=sql.Identifier(table)
    )
    conn.execute(text, {"now": now})  # warm the cache (and the relcache of every partition)
    plan = conn.execute(text, {"now": now}).fetchone()[0][0]
    scanned: set[str] = set()
    removed = 0

    def walk(node: dict) -> None:
        nonlocal removed
        if "Relation Name" in node and node.get("Actual Loops", 1):
            scanned.add(node["Relation Name"])
        removed += node.get("Subplans Removed", 0)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan["Plan"])
    top = plan["Plan"]
    scans = sorted(
        {n for n in re.findall(r'"Node Type": "([^"]+)"', json.dumps(plan)) if "Scan" in n}
    )
    return {
        "exec_ms": plan["Execution Time"],
        "plan_ms": plan["Planning Time"],
        "buffers": top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0),
        "relations": sorted(scanned),
        "removed": removed,
        "scans": ", ".join(scans),
    }


def timed(fn, repeat: int = 5) -> float:
    """Median wall milliseconds of `fn()` over `repeat` runs."""
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(1000 * (time.perf_counter() - t0))
    return statistics.median(runs)


def size(conn: psycopg.Connection, table: str) -> int:
    """Bytes of the table, indexes included (of all its partitions, if it has any)."""
    return conn.execute(
        "SELECT pg_total_relation_size(%(t)s::regclass) + coalesce((SELECT"
        " sum(pg_total_relation_size(relid)) FROM pg_partition_tree(%(t)s) WHERE isleaf), 0)",
        {"t": table},
    ).fetchone()[0]


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
        loads = {}
        with Store(dsn, "plain") as store:  # what `synth` does: COPY, then build the indexes
            loads["plain, COPY then index (synth into a new table)"] = load(store, spec)
        with Store(dsn, "plain_indexed") as store:  # steady ingestion into an indexed table
            loads["plain, indexes present"] = load(store, spec, indexes="before")
        conn.execute("DROP TABLE plain_indexed")
        with Store(dsn, "parted") as store:  # `db init --partitioned`, then `synth`
            init_partitioned_table(store, premake_days=7, since=END - args.days * DAY, now=END)
            loads["partitioned by day (indexes present)"] = load(store, spec, indexes="none")
        conn.execute("VACUUM ANALYZE plain")
        conn.execute("VACUUM ANALYZE parted")
        parts = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'parted'::regclass"
        ).fetchone()[0]
        print("## load\n\n| table | rows | seconds | rows/s |\n|---|---:|---:|---:|")
        for name, r in loads.items():
            print(f"| {name} | {r['rows']:,} | {r['total_s']:.1f} | {r['rows_s']:,.0f} |")

        floor = day_start(END - 7 * DAY)
        midnight = day_start(END) + 120  # a 5-minute window across midnight: two days
        print(f"\n## reads (warm; {parts} partitions)\n")
        print("| read | table | execution ms | planning ms | buffers | relations scanned |")
        print("|---|---|---:|---:|---:|---|")
        reads = [
            ("emergency 5-min window", RECENT, END),
            ("emergency 5-min window at 00:02", RECENT, midnight),
            ("newest sample per node (loose index scan)", SPANS, END),
            ("the same from the partition holding now - 7 days", bounded_spans(floor), END),
            ("30-day aggregate pass", MONTH, END),
        ]
        for label, query, now in reads:
            for table in ("plain", "parted"):
                e = explain(conn, query, table, now)
                relations = e["relations"]
                shown = ", ".join(relations) if len(relations) <= 2 else f"{len(relations)}"
                removed = f" ({e['removed']} removed at run time)" if e["removed"] else ""
                print(
                    f"| {label} | {table} | {e['exec_ms']:.2f} | {e['plan_ms']:.2f} | "
                    f"{e['buffers']:,} | {shown}{removed}; {e['scans']} |"
                )

        print("\nthe partitioned 5-minute read:\n")
        plan = conn.execute(
            sql.SQL("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) " + RECENT).format(
                t=sql.Identifier("parted")
            ),
            {"now": END},
        ).fetchall()
        print("\n".join("    " + line for (line,) in plan))

        print("\n## the whole emergency check (median of 5, warm)\n")
        for table in ("plain", "parted"):
            with PerformanceAnalyzer(dsn, table_name=table) as analyzer:
                analyzer.emergency_health_check(now=END)
                ms = timed(lambda a=analyzer: a.emergency_health_check(now=END))
            print(f"- {table}: {ms:.1f} ms")

        # retention: the oldest PRUNE_DAYS days (the first, partial day counts as one)
        first_day = day_start(END - args.days * DAY)
        cutoff = first_day + PRUNE_DAYS * DAY
        at = cutoff + 23 * DAY  # `--keep-days 23 --at <at>`: cutoff on a midnight
        keep = (at - cutoff) // DAY
        print(f"\n## retention: samples before {time.strftime('%F %R', time.gmtime(cutoff))}\n")
        before = {t: size(conn, t) for t in ("plain", "parted")}
        with Store(dsn, "parted") as store:
            t0 = time.perf_counter()
            pruned = prune(store, keep, now=at, premake_days=0)
            prune_s = time.perf_counter() - t0
        with Store(dsn, "plain") as store:
            t0 = time.perf_counter()
            deleted = prune(store, keep, now=at, allow_delete=True)
            delete_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        conn.execute("VACUUM plain")
        vacuum_s = time.perf_counter() - t0
        after = {t: size(conn, t) for t in ("plain", "parted")}
        assert pruned.rows == deleted.rows, (pruned.rows, deleted.rows)
        print("| table | rows removed | how | seconds | size before -> after (MiB) |")
        print("|---|---:|---|---:|---|")
        print(
            f"| parted | {pruned.rows:,} | db prune: {len(pruned.dropped)} partitions "
            f"({pruned.method}) | {prune_s:.2f} | "
            f"{before['parted'] / 2**20:.0f} -> {after['parted'] / 2**20:.0f} |"
        )
        print(
            f"| plain | {deleted.rows:,} | DELETE in {deleted.batches} batches | {delete_s:.2f} |"
            f" {before['plain'] / 2**20:.0f} -> (same until VACUUM) |"
        )
        print(
            f"| plain | | VACUUM | {vacuum_s:.2f} | "
            f"{before['plain'] / 2**20:.0f} -> {after['plain'] / 2**20:.0f} |"
        )
        e_plain = explain(conn, RECENT, "plain", END)
        print(
            f"\nafter the DELETE + VACUUM the plain table's 5-minute read: "
            f"{e_plain['exec_ms']:.2f} ms, {e_plain['buffers']:,} buffers"
        )


if __name__ == "__main__":
    main()
