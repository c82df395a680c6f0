"""Correlation analysis against the simulator's truth and against rows of known shape."""

from __future__ import annotations

import json

import numpy as np
import psycopg
import pytest
from psycopg import sql

from exporter import PerformanceAnalyzer
from exporter.schema import init_table
from exporter.store import Store

from .conftest import FLEET_END

DAY = 86400
END = 1_700_006_400  # a UTC midnight


def _pair(result: dict, node: str, a: str, b: str) -> dict | None:
    return next(
        (
            c
            for c in result["correlations"]
            if c["node_name"] == node and {c["metric_a"], c["metric_b"]} == {a, b}
        ),
        None,
    )


def _insert(dsn: str, node: str, t: np.ndarray, cols: dict[str, np.ndarray]) -> None:
    names = ["sample_time", "node_name", "node_flag", *cols]
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        stmt = sql.SQL("COPY monitor_samples_ring ({}) FROM STDIN").format(
            sql.SQL(", ").join(map(sql.Identifier, names))
        )
        with cur.copy(stmt) as copy:
            for i in range(t.size):
                copy.write_row([int(t[i]), node, True, *(float(v[i]) for v in cols.values())])


@pytest.fixture(scope="module")
def shaped(dsn: str) -> str:
    """Nodes built to one shape each: shared daily cycle, a 5-minute lag, outliers, junk."""
    with Store(dsn) as s:
        init_table(s)
    rng = np.random.default_rng(7)
    t8 = END - np.arange(8 * 1440)[::-1] * 60
    cycle = 20 * np.cos(2 * np.pi * (t8 % DAY) / DAY)
    _insert(
        dsn,
        "cycle",
        t8,
        {
            "cpu_total_pct": 50 + cycle + rng.normal(0, 3, t8.size),
            "net_rx_mb_s": 30 + cycle + rng.normal(0, 3, t8.size),
        },
    )
    t1 = END - np.arange(1440)[::-1] * 60
    walk = np.cumsum(rng.normal(0, 1, t1.size + 5))
    walk = 50 + 30 * walk / np.abs(walk).max()
    _insert(
        dsn,
        "lagged",
        t1,
        {
            "cpu_total_pct": walk[5:],  # x(t)
            "net_rx_mb_s": walk[:-5] / 2 + rng.normal(0, 0.2, t1.size),  # y(t) = x(t - 5 min)
        },
    )
    x, y = rng.normal(20, 1, t1.size), rng.normal(20, 1, t1.size)
    x[::200] += 60  # 8 joint outliers carry the whole Pearson coefficient
    y[::200] += 60
    _insert(dsn, "outliers", t1, {"cpu_total_pct": np.clip(x, 0, 100), "net_rx_mb_s": y})
    a = rng.normal(50, 10, t1.size)
    b = 2 * a + rng.normal(0, 2, t1.size)
    a[::50], b[::70] = np.nan, np.inf  # junk rows must be skipped, not poison corr()
    b[::90] = -5
    _insert(dsn, "junk", t1, {"cpu_total_pct": a, "net_rx_mb_s": b})
    return dsn


def test_node11_correlated_pair_matches_truth(fleet_db, analyzer):
    truth = fleet_db.fleet.truth_for("correlated_metrics")
    node = truth["node"]
    result = analyzer.correlation_analysis(24, now=FLEET_END)
    json.dumps(result, allow_nan=False)
    found = _pair(result, node, truth["metric_a"], truth["metric_b"])
    assert found is not None
    with psycopg.connect(fleet_db.dsn) as conn:
        (r24,) = conn.execute(
            "SELECT corr(cpu_total_pct, net_rx_mb_s) FROM monitor_samples_ring"
            " WHERE node_name = %s AND node_flag AND sample_time > %s AND sample_time <= %s",
            (node, FLEET_END - DAY, FLEET_END),
        ).fetchone()
    assert r24 > 0.7
    assert found["coefficient"] == pytest.approx(r24, abs=0.01)
    assert found["samples"] == 1440
    assert found["window"] == {"start": FLEET_END - DAY, "end": FLEET_END}
    # direct coupling survives deseasonalising and ranking
    assert found["deseasonalised_coefficient"] > 0.6
    assert found["spearman"] > 0.7
    assert found["lag_minutes"] is None  # they move together


def test_healthy_node_has_no_cpu_network_coupling(fleet_db, analyzer):
    result = analyzer.correlation_analysis(24, now=FLEET_END)
    assert _pair(result, "node-01", "cpu_total_pct", "net_rx_mb_s") is None
    # constant columns (mem_total_mb, swap) never pair, even through float rounding
    assert not [
        c
        for c in result["correlations"]
        if {"mem_total_mb", "swap_used_mb"} & {c["metric_a"], c["metric_b"]}
    ]


def test_shared_daily_cycle_is_told_apart(shaped):
    with PerformanceAnalyzer(shaped) as a:
        found = _pair(a.correlation_analysis(24, now=END), "cycle", "cpu_total_pct", "net_rx_mb_s")
    assert found["coefficient"] > 0.8
    assert abs(found["deseasonalised_coefficient"]) < 0.2
    assert found["interpretation"] == "shared_daily_cycle"


def test_lagged_pair_reports_the_leader(shaped):
    with PerformanceAnalyzer(shaped) as a:
        found = _pair(a.correlation_analysis(24, now=END), "lagged", "cpu_total_pct", "net_rx_mb_s")
    # metric_a (cpu) leads metric_b (net_rx) by 5 minutes: positive lag
    assert (found["metric_a"], found["metric_b"]) == ("cpu_total_pct", "net_rx_mb_s")
    assert found["lag_minutes"] == 5
    assert found["lag_coefficient"] > found["coefficient"]


def test_outliers_split_spearman_from_pearson(shaped):
    with PerformanceAnalyzer(shaped) as a:
        found = _pair(
            a.correlation_analysis(24, now=END), "outliers", "cpu_total_pct", "net_rx_mb_s"
        )
    assert found["coefficient"] > 0.7
    assert abs(found["spearman"]) < 0.3
    assert found["interpretation"] == "outlier_driven"


def test_junk_values_are_ignored(shaped):
    with PerformanceAnalyzer(shaped) as a:
        found = _pair(a.correlation_analysis(24, now=END), "junk", "cpu_total_pct", "net_rx_mb_s")
    with psycopg.connect(shaped) as conn:
        (r, n) = conn.execute(
            "SELECT corr(cpu_total_pct, net_rx_mb_s), count(*) FROM monitor_samples_ring"
            " WHERE node_name = 'junk' AND cpu_total_pct <> 'NaN' AND net_rx_mb_s <> 'Infinity'"
            " AND net_rx_mb_s >= 0"
        ).fetchone()
    assert found["coefficient"] == pytest.approx(r, abs=1e-6)
    assert found["samples"] == n < 1440


def test_rows_after_now_change_nothing(shaped):
    now = END - 6 * 3600
    with PerformanceAnalyzer(shaped) as a:
        before = a.correlation_analysis(12, now=now)
    with psycopg.connect(shaped) as conn:  # anti-correlated rows after `now`
        for i in range(1, 300):
            conn.execute(
                "INSERT INTO monitor_samples_ring (sample_time, node_name, node_flag,"
                " cpu_total_pct, net_rx_mb_s) VALUES (%s, 'lagged', true, %s, %s)",
                (now + 60 * i - 30, 100 - i % 100, i % 100),
            )
    with PerformanceAnalyzer(shaped) as a:
        after = a.correlation_analysis(12, now=now)
    assert before == after
    assert _pair(before, "lagged", "cpu_total_pct", "net_rx_mb_s") is not None


def test_empty_table(fresh_dsn):
    with Store(fresh_dsn) as s:
        init_table(s)
    with PerformanceAnalyzer(fresh_dsn) as a:
        assert a.correlation_analysis(24, now=END)["correlations"] == []
