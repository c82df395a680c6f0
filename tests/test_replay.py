"""`now=`: an analysis at now=T answers the same whether or not rows after T exist."""

from __future__ import annotations

import json

import psycopg
import pytest

from exporter import PerformanceAnalyzer
from exporter.cli import load_fleet
from exporter.simulate import FleetSpec
from exporter.store import Store

METHODS = [
    ("emergency_health_check", {}),
    ("system_availability_check", {}),
    ("detect_anomalies", {}),
    ("resource_contention_analysis", {}),
    ("correlation_analysis", {}),
    ("capacity_planning_analysis", {"days": 10}),
    ("workload_pattern_analysis", {}),
    ("daily_health_report", {}),
    ("weekly_performance_summary", {}),
    ("generate_alert_config", {}),
    ("export_metrics_summary", {}),
]


@pytest.fixture(scope="module")
def two_databases(pg_server):
    """The same 10-day fleet twice; the second loses every row after T = end - 5 h."""
    spec = FleetSpec(nodes=13, containers=2, days=10, end=1_790_000_040)
    dsns = []
    for _ in range(2):
        dsn = pg_server.dsn_for(pg_server.create_database("replay"))
        with Store(dsn) as store:
            fleet = load_fleet(store, spec)
        dsns.append(dsn)
    cut = fleet.end - 5 * 3600
    with psycopg.connect(dsns[1], autocommit=True) as conn:
        deleted = conn.execute(
            "DELETE FROM monitor_samples_ring WHERE sample_time > %s", (cut,)
        ).rowcount
    assert deleted > 0
    return dsns, cut


def _comparable(result: dict) -> str:
    result = dict(result)
    result.pop("generated_at", None)
    return json.dumps(result, sort_keys=True, allow_nan=False)


@pytest.mark.parametrize(("method", "kwargs"), METHODS, ids=[m for m, _ in METHODS])
def test_rows_after_now_change_nothing(two_databases, method, kwargs):
    (full, cut_db), cut = two_databases
    answers = []
    for dsn in (full, cut_db):
        with PerformanceAnalyzer(dsn) as analyzer:
            answers.append(_comparable(getattr(analyzer, method)(now=cut, **kwargs)))
    assert answers[0] == answers[1]
