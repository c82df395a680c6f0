"""Correlation analysis against the simulator's truth and against rows of known shape."""

from __future__ import annotations

import json

import numpy as np
import psycopg
import pytest
from psycopg import sql

from exporter import PerformanceAnalyzer
from exporter.analyses.correlation import (
    Grid,
    _node_findings,
    benjamini_hochberg,
    spearman,
)
from exporter.config import CorrelationConfig
from exporter.schema import NODE_METRICS, init_table
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
    assert found["interpretation"] == "direct_coupling"
    assert found["exported"] is True


def test_healthy_node_has_no_cpu_network_coupling(fleet_db, analyzer):
    result = analyzer.correlation_analysis(24, now=FLEET_END)
    pair = _pair(result, "node-01", "cpu_total_pct", "net_rx_mb_s")
    assert pair is None or pair["interpretation"] == "shared_daily_cycle"
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
    assert found["interpretation"] == "lagged_coupling"
    assert found["lag_coefficient"] > found["coefficient"]  # levels at the lag, and at 0
    assert found["coupling_coefficient"] > abs(found["differenced_coefficient"]) + 0.5


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


# --------------------------------------------------------------------------- sampler-like rows


def _jittered(rng: np.random.Generator, days: float, end: int = END) -> np.ndarray:
    """Sample times 60 s +- 12 s apart, 2 % of rows lost."""
    t = end - int(days * DAY) + np.cumsum(60 + rng.integers(-12, 13, int(days * 1500)))
    t = t[t <= end]
    return t[rng.random(t.size) > 0.02]


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    e = np.empty(n)
    e[0] = rng.standard_normal()
    z = rng.standard_normal(n)
    for i in range(1, n):
        e[i] = phi * e[i - 1] + np.sqrt(1 - phi**2) * z[i]
    return e


@pytest.fixture(scope="module")
def walks(dsn: str) -> str:
    """30 nodes, each with two independent random walks over 3 days (the daily-cycle test
    has history to look at), and NULL network values now and then."""
    with Store(dsn, "corr_walks") as s:
        init_table(s)
    rng = np.random.default_rng(11)
    names = ["sample_time", "node_name", "node_flag", "cpu_total_pct", "net_rx_mb_s"]
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        stmt = sql.SQL("COPY corr_walks ({}) FROM STDIN").format(
            sql.SQL(", ").join(map(sql.Identifier, names))
        )
        with cur.copy(stmt) as copy:
            for k in range(30):
                t = _jittered(rng, 3)
                a = np.cumsum(rng.normal(0, 0.3, t.size))
                b = np.cumsum(rng.normal(0, 0.3, t.size))
                a = 50 + 40 * a / max(1.0, np.abs(a).max())
                b = 50 + 40 * b / max(1.0, np.abs(b).max())
                for i in range(t.size):
                    net = None if i % 97 == 0 else float(b[i])
                    copy.write_row([int(t[i]), f"walk-{k:02d}", True, float(a[i]), net])
    return dsn


@pytest.mark.slow
def test_independent_random_walks_are_never_reported(walks):
    with PerformanceAnalyzer(walks, "corr_walks") as a:
        result = a.correlation_analysis(24, now=END)
    assert result["nodes_analysed"] == 30
    with psycopg.connect(walks) as conn:  # the levels do look correlated, on some nodes
        (strong,) = conn.execute(
            "SELECT count(*) FROM (SELECT abs(corr(cpu_total_pct, net_rx_mb_s)) AS r"
            " FROM corr_walks WHERE sample_time > %s GROUP BY node_name) x WHERE r >= 0.7",
            (END - DAY,),
        ).fetchone()
    assert strong >= 1
    assert result["correlations"] == []


@pytest.fixture(scope="module")
def leads(dsn: str) -> str:
    """A pure 5-minute lead: cpu(t) is autocorrelated noise, net_rx(t) = cpu(t - 5 min)
    plus a little noise, so the lag-0 r is near 0. On a second node network leads CPU."""
    with Store(dsn, "corr_leads") as s:
        init_table(s)
    rng = np.random.default_rng(12)
    minutes = 1440 + 5
    x = 50 + 10 * _ar1(rng, minutes, 0.3)
    lead_t = END - np.arange(1440)[::-1] * 60 - rng.integers(0, 20, 1440)
    follower = x[:-5] + rng.normal(0, 1.5, 1440)  # value at minute i is x at minute i - 5
    leader = x[5:]
    rows = {"cpu_leads": (leader, follower), "net_leads": (follower, leader)}
    names = ["sample_time", "node_name", "node_flag", "cpu_total_pct", "net_rx_mb_s"]
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        stmt = sql.SQL("COPY corr_leads ({}) FROM STDIN").format(
            sql.SQL(", ").join(map(sql.Identifier, names))
        )
        with cur.copy(stmt) as copy:
            for node, (cpu, net) in rows.items():
                for i in range(1440):
                    copy.write_row([int(lead_t[i]), node, True, float(cpu[i]), float(net[i])])
    return dsn


def test_a_pure_lead_is_found_whatever_lag_zero_says(leads):
    with PerformanceAnalyzer(leads, "corr_leads") as a:
        result = a.correlation_analysis(24, now=END)
    with psycopg.connect(leads) as conn:
        (r0,) = conn.execute(
            "SELECT corr(cpu_total_pct, net_rx_mb_s) FROM corr_leads WHERE node_name = 'cpu_leads'"
        ).fetchone()
    assert abs(r0) < 0.15  # nothing to see at lag 0
    cpu = _pair(result, "cpu_leads", "cpu_total_pct", "net_rx_mb_s")
    net = _pair(result, "net_leads", "cpu_total_pct", "net_rx_mb_s")
    assert cpu is not None and net is not None
    assert (cpu["metric_a"], cpu["metric_b"]) == ("cpu_total_pct", "net_rx_mb_s")
    assert cpu["lag_minutes"] == 5  # metric_a (cpu) leads
    assert net["lag_minutes"] == -5  # metric_b (net) leads
    for found in (cpu, net):
        assert found["interpretation"] == "lagged_coupling"
        assert found["lag_coefficient"] > 0.8
        assert found["q_value"] < 1e-6
        assert found["exported"] is True


def test_the_export_budget_keeps_the_strongest(dsn: str) -> None:
    """Six metrics driven by one factor with rising noise: 15 coupled pairs, 3 exported."""
    from exporter.config import Config, CorrelationConfig

    with Store(dsn, "corr_budget") as s:
        init_table(s)
    rng = np.random.default_rng(13)
    t = _jittered(rng, 1)
    f = _ar1(rng, t.size, 0.5)
    cols = ("cpu_total_pct", "cpu_iowait_pct", "load_1m", "net_rx_mb_s", "net_tx_mb_s")
    cols += ("disk_read_mb_s",)
    noise = dict(zip(cols, (0.1, 0.2, 0.3, 0.5, 0.7, 0.9), strict=True))
    data = {c: 20 + 5 * (f + noise[c] * rng.standard_normal(t.size)) for c in cols}
    names = ["sample_time", "node_name", "node_flag", *cols]
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        stmt = sql.SQL("COPY corr_budget ({}) FROM STDIN").format(
            sql.SQL(", ").join(map(sql.Identifier, names))
        )
        with cur.copy(stmt) as copy:
            for i in range(t.size):
                copy.write_row([int(t[i]), "busy", True, *(float(data[c][i]) for c in cols)])
    config = Config(correlation=CorrelationConfig(max_per_node=3))
    with PerformanceAnalyzer(dsn, "corr_budget", config=config) as a:
        result = a.correlation_analysis(24, now=END)
    coupled = [c for c in result["correlations"] if c["interpretation"] == "direct_coupling"]
    assert len(coupled) == 15
    exported = [c for c in coupled if c["exported"]]
    strongest = sorted(coupled, key=lambda c: -abs(c["coupling_coefficient"]))[:3]
    assert exported == strongest
    pairs = {frozenset((c["metric_a"], c["metric_b"])) for c in exported}
    assert frozenset(("cpu_total_pct", "cpu_iowait_pct")) in pairs  # the two least noisy


# --------------------------------------------------------------------------- the statistics


def test_benjamini_hochberg_by_hand():
    # sorted p: 0.01, 0.02, 0.03, 0.5 -> p * 4 / rank = 0.04, 0.04, 0.04, 0.5
    assert benjamini_hochberg([0.5, 0.01, 0.03, 0.02]) == pytest.approx([0.5, 0.04, 0.04, 0.04])
    assert benjamini_hochberg([]) == []


def test_spearman_ranks_only_the_rows_both_metrics_have():
    """Ten huge values of x sit where y is missing: ranked over all of x's rows they would
    shift every rank of x; over the shared rows the answer is that of the shared rows."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=200), rng.normal(size=200)
    y = x + 0.5 * y
    x[:10], y[:10] = 1e6, np.nan
    shared_x, shared_y = x[10:], y[10:]
    expected = np.corrcoef(np.argsort(np.argsort(shared_x)), np.argsort(np.argsort(shared_y)))
    assert spearman(x, y) == pytest.approx(expected[0, 1], abs=1e-12)


def _grid(a: np.ndarray, b: np.ndarray) -> Grid:
    values = np.full((a.size, len(NODE_METRICS)), np.nan)
    values[:, NODE_METRICS.index("cpu_total_pct")] = a
    values[:, NODE_METRICS.index("net_rx_mb_s")] = b
    return {"step": 1, "times": END + 60 * np.arange(a.size), "values": values}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["walk", "ar1"])
def test_monte_carlo_false_couplings(kind):
    """400 pairs of independent series (random walks, or AR(1) phi 0.9 whose differences are
    negatively autocorrelated), with no magnitude floor: the lag scan's test alone calls at
    most 5 % of them coupled (measured: 4.5 % and 4.8 %)."""
    rng = np.random.default_rng(21)
    cfg = CorrelationConfig(min_coupling_abs=0.0)
    pair = ("cpu_total_pct", "net_rx_mb_s")
    false = 0
    for _ in range(400):
        if kind == "walk":
            a, b = np.cumsum(rng.normal(size=(2, 1440)), axis=1)
        else:
            a, b = _ar1(rng, 1440, 0.9), _ar1(rng, 1440, 0.9)
        a[rng.random(1440) < 0.03] = np.nan  # lost samples
        found = _node_findings("n", _grid(a, b), {pair: (0.0, 1440)}, {}, cfg)
        false += any(f["interpretation"] != "shared_daily_cycle" for f in found)
    print(f"{kind}: {false / 400:.1%} false couplings")
    assert false / 400 <= 0.07  # 5 % and two standard errors of 400 runs


def test_short_and_coarse_series_are_scanned_without_error():
    """Fewer bins than lags, and a node sampled every 5 minutes (lags in 5-minute steps)."""
    cfg = CorrelationConfig()
    pair = ("cpu_total_pct", "net_rx_mb_s")
    rng = np.random.default_rng(8)
    short = rng.normal(size=(2, 20))
    assert _node_findings("n", _grid(short[0], short[1]), {pair: (0.1, 20)}, {}, cfg) == []
    x = rng.normal(size=300)
    grid = _grid(x[2:], x[:-2] + 0.2 * rng.normal(size=298))  # b follows a by 2 bins
    grid["step"] = 5
    (found,) = _node_findings("n", grid, {pair: (0.0, 298)}, {}, cfg)
    assert found["lag_minutes"] == 10
