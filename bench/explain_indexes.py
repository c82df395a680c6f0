"""Which indexes the analyses need: EXPLAIN (ANALYZE, BUFFERS) of the representative reads
on a simulated month, with no index, a BRIN on sample_time, and the btrees `db init` makes.

    python bench/explain_indexes.py --nodes 50 --days 30 [--dsn DSN]
"""

from __future__ import annotations

import argparse
import json
import re

from common import database, load, machine

from exporter.simulate import FleetSpec
from exporter.store import Store

QUERIES = {
    "recent 5 min per node (emergency)": """
        SELECT node_name, avg(cpu_total_pct), max(temperature_c), count(*)
          FROM t WHERE sample_time > %(end)s - 300 AND node_flag GROUP BY node_name""",
    "newest sample per node (staleness)": """
        WITH RECURSIVE nodes AS (
            (SELECT node_name FROM t ORDER BY node_name LIMIT 1)
            UNION ALL
            SELECT (SELECT node_name FROM t WHERE node_name > nodes.node_name
                     ORDER BY node_name LIMIT 1) FROM nodes WHERE nodes.node_name IS NOT NULL)
        SELECT node_name, (SELECT max(sample_time) FROM t WHERE t.node_name = nodes.node_name)
          FROM nodes WHERE node_name IS NOT NULL""",
    "one node, last 24 h": """
        SELECT avg(cpu_total_pct), count(*) FROM t
         WHERE node_name = 'node-07' AND sample_time > %(end)s - 86400""",
    "all nodes, last 24 h (SLI)": """
        SELECT node_name, count(*) FILTER (WHERE cpu_total_pct < 80), count(*)
          FROM t WHERE sample_time > %(end)s - 86400 AND node_flag GROUP BY node_name""",
    "all nodes, 30 days (one window pass)": """
        SELECT node_name, count(*), avg(cpu_total_pct), max(cpu_total_pct),
               avg(mem_available_mb), max(temperature_c)
          FROM t WHERE sample_time > %(end)s - 30 * 86400 GROUP BY node_name""",
}

VARIANTS = {
    "no index": [],
    "brin(sample_time)": ["CREATE INDEX t_brin ON t USING brin (sample_time)"],
    "btree(sample_time) + btree(node_name, sample_time)": [
        "CREATE INDEX t_time ON t (sample_time)",
        "CREATE INDEX t_node_time ON t (node_name, sample_time)",
    ],
}


def explain(cur, query: str, end: int) -> tuple[float, int, str]:
    cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, {"end": end})
    plan = cur.fetchone()[0][0]
    top = plan["Plan"]
    buffers = top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
    nodes = sorted(set(re.findall(r'"Node Type": "([^"]+)"', json.dumps(plan))))
    scans = [n for n in nodes if "Scan" in n]
    return plan["Execution Time"], buffers, ", ".join(scans)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--dsn", default=None)
    args = parser.parse_args()
    spec = FleetSpec(nodes=args.nodes, containers=2, days=args.days, end=1_790_000_000)
    print(f"machine: {machine()}; fleet {args.nodes} nodes x {args.days:g} days")
    with database(args.dsn) as dsn, Store(dsn, "t") as store:
        r = load(store, spec, indexes="none")
        print(f"loaded {r['rows']:,} rows")
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE t")
            for variant, ddl in VARIANTS.items():
                conn.execute("DROP INDEX IF EXISTS t_brin, t_time, t_node_time")
                for statement in ddl:
                    conn.execute(statement)
                conn.execute("ANALYZE t")
                print(f"\n### {variant}")
                print("| query | ms | buffers | scans |\n|---|---:|---:|---|")
                with conn.cursor() as cur:
                    for name, query in QUERIES.items():
                        explain(cur, query, r["end"])  # warm the cache
                        ms, buffers, scans = explain(cur, query, r["end"])
                        print(f"| {name} | {ms:.1f} | {buffers:,} | {scans} |")


if __name__ == "__main__":
    main()
