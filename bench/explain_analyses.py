"""EXPLAIN (ANALYZE, BUFFERS) of every query each analysis sends, on a fleet already
loaded (e.g. by bench/analyses.py --keep, or any database holding the samples table):
prints, per analysis and query, the execution time, the shared buffers read and hit, and
the plan's top nodes, so the plans can be reviewed and quoted in docs/performance.md.

    python bench/explain_analyses.py --dsn DSN [--now UNIX] [--plans]
"""

from __future__ import annotations

import argparse
import re
import time

import psycopg
from analyses import METHODS

from exporter import PerformanceAnalyzer


class Recorder:
    """Records the statements analyses send (a spy on psycopg's Cursor.execute)."""

    def __init__(self) -> None:
        self.queries: list[tuple[str, object]] = []
        self._real = psycopg.Cursor.execute

    def __enter__(self) -> Recorder:
        recorder = self

        def execute(cur, query, params=None, **kw):
            text = query if isinstance(query, str) else query.as_string(cur)
            if text.lstrip().upper().startswith(("SELECT", "WITH")) and "set_config" not in text:
                recorder.queries.append((text, params))
            return recorder._real(cur, query, params, **kw)

        psycopg.Cursor.execute = execute
        return self

    def __exit__(self, *exc) -> None:
        psycopg.Cursor.execute = self._real


def explain(conn: psycopg.Connection, query: str, params: object) -> dict:
    plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, params).fetchone()[0][0]
    return plan


def top_nodes(node: dict, depth: int = 0, limit: int = 4) -> list[str]:
    if depth >= limit:
        return []
    label = node["Node Type"]
    if node.get("Relation Name"):
        label += f" on {node['Relation Name']}"
    if node.get("Index Name"):
        label += f" using {node['Index Name']}"
    rows, ms = node.get("Actual Rows"), node.get("Actual Total Time", 0)
    out = [f"{'  ' * depth}{label} (rows {rows}, {ms:.1f} ms)"]
    for child in node.get("Plans", []):
        out += top_nodes(child, depth + 1, limit)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--now", type=int, default=None, help="default: the newest sample")
    parser.add_argument("--plans", action="store_true", help="print each plan's top nodes")
    args = parser.parse_args()
    with psycopg.connect(args.dsn) as conn:
        newest = "SELECT max(sample_time) FROM monitor_samples_ring"
        now = args.now or conn.execute(newest).fetchone()[0]
        conn.execute("SET work_mem = '64MB'")
        print("| analysis | query | ms | shared hit | shared read | top node |")
        print("|---|---|---:|---:|---:|---|")
        for method, kwargs in METHODS:
            with PerformanceAnalyzer(args.dsn) as analyzer, Recorder() as rec:
                t0 = time.perf_counter()
                getattr(analyzer, method)(now=now, **kwargs)
                wall = time.perf_counter() - t0
            for i, (query, params) in enumerate(rec.queries):
                plan = explain(conn, query, params)
                root = plan["Plan"]
                what = re.sub(r"\s+", " ", query)[:60].replace("|", "/")
                print(
                    f"| {method} ({wall * 1000:.0f} ms in all) | {i + 1}: `{what}` | "
                    f"{plan['Execution Time']:.1f} | {root.get('Shared Hit Blocks', 0)} | "
                    f"{root.get('Shared Read Blocks', 0)} | {root['Node Type']} |"
                )
                if args.plans:
                    print("\n".join("    " + line for line in top_nodes(root)))
            conn.rollback()


if __name__ == "__main__":
    main()
