"""Learned alert thresholds against rows of known distribution."""

from __future__ import annotations

import json

import numpy as np
import psycopg
import pytest
from psycopg import sql

from exporter import PerformanceAnalyzer
from exporter.config import AlertConfig, Config
from exporter.schema import init_table
from exporter.store import Store

DAY = 86400
END = 1_700_006_400
STEP = 300  # 5-minute samples: 4032 per node over 14 days


@pytest.fixture(scope="module")
def history(dsn: str) -> str:
    with Store(dsn) as s:
        init_table(s)
    rng = np.random.default_rng(11)
    t = END - np.arange(15 * DAY // STEP)[::-1] * STEP
    nodes = {
        "normal": rng.normal(40, 5, t.size),
        "busy": np.clip(rng.normal(99, 0.5, t.size), 0, 100),
        "idle": np.clip(rng.normal(5, 0.5, t.size), 0, 100),
    }
    names = [
        "sample_time",
        "node_name",
        "node_flag",
        "cpu_total_pct",
        "mem_available_mb",
        "mem_total_mb",
        "cpu_iowait_pct",
    ]
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        stmt = sql.SQL("COPY monitor_samples_ring ({}) FROM STDIN").format(
            sql.SQL(", ").join(map(sql.Identifier, names))
        )
        with cur.copy(stmt) as copy:
            for node, cpu in nodes.items():
                mem = rng.normal(10000, 500, t.size)
                for i in range(t.size):
                    copy.write_row(
                        [int(t[i]), node, True, float(cpu[i]), float(mem[i]), 16000.0, 2.0]
                    )
            copy.write_row([END - 10, "normal", True, float("nan"), float("inf"), 16000.0, -3.0])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE monitor_samples_ring")  # the row estimate that picks sampling
    return dsn


@pytest.fixture(scope="module")
def config(history):
    with PerformanceAnalyzer(history) as a:
        result = a.generate_alert_config(now=END)
    json.dumps(result, allow_nan=False)
    return result


def _levels(result: dict, node: str, metric: str) -> dict[str, dict]:
    return {
        t["priority"]: t
        for t in result["thresholds"]
        if t["node_name"] == node and t["metric"] == metric
    }


def _sql_percentile(dsn: str, node: str, column: str, q: float) -> float:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            sql.SQL(
                "SELECT percentile_cont(%s) WITHIN GROUP (ORDER BY {c}) FROM monitor_samples_ring"
                " WHERE node_name = %s AND sample_time > %s AND sample_time <= %s"
                " AND {c} BETWEEN 0 AND 1e9"
            ).format(c=sql.Identifier(column)),
            (q, node, END - 14 * DAY, END),
        ).fetchone()[0]


def test_history_window(config):
    assert config["history"]["start"] == END - 14 * DAY
    assert config["history"]["end"] == END
    assert config["history"]["days"] == 14


def test_p3_is_the_p95_and_levels_are_ordered(history, config):
    cpu = _levels(config, "normal", "cpu_total_pct")
    p95 = _sql_percentile(history, "normal", "cpu_total_pct", 0.95)
    assert p95 == pytest.approx(40 + 1.645 * 5, abs=0.6)
    assert cpu["P3"]["threshold"] == pytest.approx(p95, abs=1e-3)
    assert cpu["P2"]["threshold"] == pytest.approx(
        _sql_percentile(history, "normal", "cpu_total_pct", 0.99), abs=1e-3
    )
    assert cpu["P1"]["threshold"] == pytest.approx(40 + 6 * 5, abs=1.5)  # median + 6 sd
    assert cpu["P3"]["threshold"] <= cpu["P2"]["threshold"] <= cpu["P1"]["threshold"]
    assert cpu["P3"]["basis"] == "p95 of 14 days"


def test_sampled_history_is_close_to_exact(history, config):
    sampled_cfg = Config(alerts=AlertConfig(max_exact_rows=3000))
    with PerformanceAnalyzer(history, config=sampled_cfg) as a:
        sampled = a.generate_alert_config(now=END)
    assert sampled["history"]["method"].startswith("tablesample")
    exact = _levels(config, "normal", "cpu_total_pct")["P3"]["threshold"]
    assert _levels(sampled, "normal", "cpu_total_pct")["P3"]["threshold"] == pytest.approx(
        exact, abs=1.5
    )


def test_thresholds_are_clamped_to_physical_limits(config):
    busy = _levels(config, "busy", "cpu_total_pct")
    assert all(t["threshold"] <= 100 for t in busy.values())
    assert busy["P1"]["threshold"] == 100  # median + 6 sd is above 100


def test_idle_node_gets_the_sanity_floor(config):
    idle = _levels(config, "idle", "cpu_total_pct")
    assert idle["P1"]["threshold"] == idle["P1"]["static_floor"] == pytest.approx(0.5 * 95)
    assert idle["P1"]["learned"] < 10


def test_lower_is_worse_memory_goes_below_the_median(config):
    mem = _levels(config, "normal", "mem_available_mb")
    assert all(t["direction"] == "below" for t in mem.values())
    assert mem["P1"]["threshold"] <= mem["P2"]["threshold"] <= mem["P3"]["threshold"] < 10000
    assert mem["P1"]["threshold"] >= 0


def test_empty_table_is_insufficient(fresh_dsn):
    with Store(fresh_dsn) as s:
        init_table(s)
    with PerformanceAnalyzer(fresh_dsn) as a:
        r = a.generate_alert_config(now=END)
    assert r["thresholds"] == [] and r["insufficient_data"] == []
