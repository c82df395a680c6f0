"""`now=`: an analysis at now=T answers the same whether or not rows after T exist."""

from __future__ import annotations

import json
import math

import psycopg
import pytest

from exporter import PerformanceAnalyzer
from exporter.simulate import FleetSpec, load_fleet
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


def _comparable(result: dict) -> dict:
    result = json.loads(json.dumps(result, allow_nan=False))
    result.pop("generated_at", None)
    return result


def assert_same(a, b, path="result"):
    """Equal, but for the last printed digit of floats: PostgreSQL may sum a parallel
    aggregate in another order, and a value rounded to 3 decimals can then differ by 0.001."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, int | float) and isinstance(b, int | float), path
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1.5e-3), f"{path}: {a} != {b}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.mark.slow
@pytest.mark.parametrize(("method", "kwargs"), METHODS, ids=[m for m, _ in METHODS])
def test_rows_after_now_change_nothing(two_databases, method, kwargs):
    (full, cut_db), cut = two_databases
    answers = []
    for dsn in (full, cut_db):
        with PerformanceAnalyzer(dsn) as analyzer:
            answers.append(_comparable(getattr(analyzer, method)(now=cut, **kwargs)))
    assert_same(answers[0], answers[1])
