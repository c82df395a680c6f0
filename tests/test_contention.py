"""Resource contention against the simulator's injected noisy neighbour and memory pressure."""

from __future__ import annotations

import json

import psycopg
import pytest

from exporter import PerformanceAnalyzer
from exporter.schema import init_table
from exporter.store import Store

from .conftest import FLEET_END

END = 1_700_006_400


def _entry(result: dict, node: str, resource: str) -> dict:
    return next(n for n in result["nodes"] if n["node_name"] == node and n["resource"] == resource)


@pytest.fixture(scope="module")
def result(analyzer):
    r = analyzer.resource_contention_analysis(1, now=FLEET_END)
    json.dumps(r, allow_nan=False)
    return r


def test_noisy_neighbour_is_the_top_cpu_consumer(fleet_db, result):
    truth = fleet_db.fleet.truth_for("noisy_neighbour")
    cpu = _entry(result, truth["node"], "cpu")
    assert cpu["top_consumer"] == truth["container"]
    share = next(c for c in cpu["containers"] if c["container_name"] == truth["container"])
    assert share["share"] == pytest.approx(truth["share_of_node_cpu"], abs=0.05)
    assert cpu["contention_score"] > 0.5
    assert cpu["top_grower"] == truth["container"]
    assert share["share_change"] > 0.2  # it grew into the pressure
    assert cpu["pressure_samples"] == truth["window"]["samples"]
    assert cpu["victims"] and truth["container"] not in cpu["victims"]


def test_healthy_node_has_no_contention(result):
    for resource in ("cpu", "memory"):
        e = _entry(result, "node-01", resource)
        assert e["contention_score"] == 0.0
        assert e["pressure_samples"] == 0
        assert e["top_consumer"] is None


def test_memory_pressure_scores(fleet_db, result):
    truth = fleet_db.fleet.truth_for("memory_exhausted")
    mem = _entry(result, truth["node"], "memory")
    assert mem["contention_score"] > 0
    assert mem["pressure_samples"] == truth["window"]["samples"]  # its last 20 minutes
    assert mem["top_consumer"] in fleet_db.fleet.truth["nodes"][truth["node"]]["containers"]
    assert _entry(result, truth["node"], "cpu")["contention_score"] == 0.0


def _rows(dsn: str, rows: list[tuple]) -> None:
    with psycopg.connect(dsn) as conn:
        conn.cursor().executemany(
            "INSERT INTO monitor_samples_ring (sample_time, node_name, container_name,"
            " node_flag, cpu_total_pct, c_rss_mb, mem_available_mb, mem_total_mb)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


def test_nan_rows_are_ignored(fresh_dsn):
    with Store(fresh_dsn) as s:
        init_table(s)
    rows = []
    for i in range(60):
        t = END - 60 * i
        rows.append((t, "n", None, True, 90.0, None, 8000.0, 16000.0))
        rows.append((t, "n", "hog", False, 60.0 if i % 2 else float("nan"), 100.0, None, None))
        rows.append((t + 1, "n", None, True, float("inf"), None, float("nan"), 16000.0))
    _rows(fresh_dsn, rows)
    with PerformanceAnalyzer(fresh_dsn) as a:
        r = a.resource_contention_analysis(1, now=END)
    json.dumps(r, allow_nan=False)
    cpu = _entry(r, "n", "cpu")
    assert cpu["top_consumer"] == "hog"
    # 30 valid container samples of 60 % over 60 pressure samples at 90 %
    assert cpu["containers"][0]["share"] == pytest.approx(30 * 60 / (60 * 90), abs=1e-6)
    assert cpu["pressure_samples"] == 60


def test_only_containers_and_no_containers(fresh_dsn):
    with Store(fresh_dsn) as s:
        init_table(s)
    _rows(fresh_dsn, [(END - 60 * i, "c", "x", False, 50.0, 10.0, None, None) for i in range(30)])
    with PerformanceAnalyzer(fresh_dsn) as a:
        assert a.resource_contention_analysis(1, now=END)["nodes"] == []
        _rows(
            fresh_dsn,
            [(END - 60 * i, "m", None, True, 95.0, None, 100.0, 1000.0) for i in range(60)],
        )
        r = a.resource_contention_analysis(1, now=END)
    cpu = _entry(r, "m", "cpu")
    assert cpu["top_consumer"] is None and cpu["containers"] == []
    assert cpu["contention_score"] == pytest.approx(1.0)  # whole window, one unattributed consumer
    assert _entry(r, "m", "memory")["pressure_samples"] == 60
