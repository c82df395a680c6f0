"""Hypothesis-generated hostile rows never make an analysis raise, and never change what
the analyses find on the good rows."""

from __future__ import annotations

import functools
import itertools
import json
import math

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from exporter import PerformanceAnalyzer
from exporter.schema import COLUMN_NAMES, METRIC_COLUMNS
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store

END = 1_790_000_040
GOOD_NODES = ("node-01", "node-02", "node-03", "node-04")
WEIRD_NAMES = ("", 'x"; DROP TABLE y; --', "a\nb", "{}", "ünï €", "n" * 1000, "node-01 ")
INVALID = (math.nan, math.inf, -math.inf, -100.0, -1e300, 1e300, 1e12)  # invalid everywhere
METHODS = (
    "emergency_health_check",
    "system_availability_check",
    "detect_anomalies",
    "resource_contention_analysis",
    "correlation_analysis",
    "capacity_planning_analysis",
    "workload_pattern_analysis",
    "daily_health_report",
    "weekly_performance_summary",
    "generate_alert_config",
    "export_metrics_summary",
)
_tables = itertools.count()


@pytest.fixture(scope="module")
def base(dsn):
    with Store(dsn) as store:
        load_fleet(store, FleetSpec(nodes=4, containers=1, days=3, end=END))
    return dsn


def findings(dsn: str, table: str) -> tuple:
    """What the analyses say about the good nodes: threats, grades and SLI ratios."""
    with PerformanceAnalyzer(dsn, table) as a:
        emergency = a.emergency_health_check(now=END)
        slis = a.system_availability_check(now=END)
    return (
        sorted(
            (t["node_name"], t["check"], t["priority"], t["value"])
            for t in emergency["threats"]
            if t["node_name"] in GOOD_NODES
        ),
        sorted(
            (n["node_name"], n["grade"], n["availability"], n["performance"], n["capacity"])
            for n in slis["nodes"]
            if n["node_name"] in GOOD_NODES
        ),
    )


@functools.cache
def base_findings(dsn: str) -> tuple:
    """`findings` of the clean table, which no example changes: computed once."""
    return findings(dsn, "monitor_samples_ring")


times = st.integers(END - 3 * 86400, END + 86400)
invalid_row = st.fixed_dictionaries(
    {
        "sample_time": times,
        "node_name": st.sampled_from(GOOD_NODES),
        "container_name": st.sampled_from([None, "app-1"]),
        "node_flag": st.sampled_from([True, False]),
    },
    optional={c.name: st.sampled_from(INVALID) for c in METRIC_COLUMNS},
)
any_value = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
stranger_row = st.fixed_dictionaries(
    {
        "sample_time": st.one_of(st.none(), times, st.integers(-(2**62), 2**62)),
        "node_name": st.one_of(st.none(), st.sampled_from(WEIRD_NAMES)),
        "container_name": st.one_of(st.none(), st.sampled_from(WEIRD_NAMES)),
        "node_flag": st.sampled_from([True, False, None]),
    },
    optional={c.name: any_value for c in METRIC_COLUMNS},
)


@pytest.mark.slow
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=st.lists(st.one_of(invalid_row, stranger_row), min_size=1, max_size=40))
def test_hostile_rows(base, rows):
    table = f"hostile_{next(_tables)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} AS TABLE monitor_samples_ring").format(sql.Identifier(table))
        )
    expected = base_findings(base)
    with psycopg.connect(base, autocommit=True) as conn, conn.cursor() as cur:
        for row in rows:
            cols = [c for c in COLUMN_NAMES if c in row]
            cur.execute(
                sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                    sql.Identifier(table),
                    sql.SQL(", ").join(map(sql.Identifier, cols)),
                    sql.SQL(", ").join(sql.Placeholder() * len(cols)),
                ),
                [row[c] for c in cols],
            )
    try:
        with PerformanceAnalyzer(base, table) as analyzer:
            for method in METHODS:
                json.dumps(getattr(analyzer, method)(now=END), allow_nan=False)
        assert findings(base, table) == expected
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
