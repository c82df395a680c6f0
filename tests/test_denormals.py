"""Subnormal values (5e-324) are invalid like NaN: one such row must not make PostgreSQL raise
"value out of range: underflow" in any fleet-wide analysis."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import sql

from exporter import PerformanceAnalyzer
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store
from tests.test_bad_rows import METHODS

END = 1_790_000_040
TINY = (5e-324, -5e-324, 1e-200, 2.2e-308)


@pytest.fixture(scope="module")
def base(dsn):
    with Store(dsn) as store:
        load_fleet(store, FleetSpec(nodes=3, containers=1, days=3, end=END))
    return dsn


@pytest.mark.parametrize("column", ["mem_available_mb", "load_1m", "cpu_total_pct", "c_rss_mb"])
def test_one_tiny_value_breaks_no_analysis(base, column):
    with psycopg.connect(base) as conn:
        nodes = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT node_name FROM monitor_samples_ring ORDER BY 1"
            ).fetchall()
        ]
    table = f"tiny_{column}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
        conn.execute(
            sql.SQL("CREATE TABLE {} AS TABLE monitor_samples_ring").format(sql.Identifier(table))
        )
        for i, value in enumerate(TINY):  # the newest rows of one node, and one in the past
            conn.execute(
                sql.SQL(
                    "UPDATE {t} SET {c} = %s WHERE ctid = (SELECT ctid FROM {t} WHERE node_name"
                    " = %s AND node_flag = %s AND sample_time <= %s ORDER BY sample_time DESC"
                    " LIMIT 1 OFFSET %s)"
                ).format(t=sql.Identifier(table), c=sql.Identifier(column)),
                (value, nodes[0], column != "c_rss_mb", END - 3600 * i, i),
            )
    try:
        with PerformanceAnalyzer(base, table) as analyzer:
            for method in METHODS:
                result = getattr(analyzer, method)(now=END)
                json.dumps(result, allow_nan=False)
            slis = analyzer.system_availability_check(now=END)
            assert sorted(n["node_name"] for n in slis["nodes"]) == nodes
            emergency = analyzer.emergency_health_check(now=END)
            assert emergency is not None
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
