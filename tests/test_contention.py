"""Resource contention against the simulator's injected noisy neighbour and memory pressure."""

from __future__ import annotations

import json

import numpy as np
import psycopg
import pytest

from exporter import PerformanceAnalyzer
from exporter.analyses.contention import to_samples, victims_and_grower
from exporter.analyses.unit import ResultView
from exporter.config import Config
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
    # the simulator leaves the other containers' own use unchanged: their share fell only
    # because the neighbour grew, which does not make them victims
    assert cpu["victims"] == []


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
    # a node without containers is under pressure, not in contention
    assert cpu["contention_score"] == 0.0
    assert cpu["pressure_fraction"] == pytest.approx(1.0)
    assert _entry(r, "m", "memory")["pressure_samples"] == 60


# --------------------------------------------------------------------------- hand-built rows
# Rows the way a sampler writes them: node rows at a jittered interval, container rows a
# few seconds after their node row, autocorrelated noise, a few node rows lost, a few NULL
# container values. The expected answers are computed here with numpy from the same arrays.


def _ar1(rng: np.random.Generator, n: int, sd: float, phi: float = 0.8) -> np.ndarray:
    z = np.empty(n)
    z[0] = rng.normal(0, sd)
    for i in range(1, n):
        z[i] = phi * z[i - 1] + rng.normal(0, sd * np.sqrt(1 - phi**2))
    return z


def _build(interval: int, offset: int, *, small_after: float = 10.0, seed: int = 1) -> dict:
    """7 h of one node with containers `hog` and `small`: calm for 6 h (node 40 %, hog
    20 %, small 10 %), then 1 h under CPU pressure (node 92 %, hog 60 %, small
    `small_after`)."""
    rng = np.random.default_rng(seed)
    n = 7 * 3600 // interval - 1  # all inside (END - 7 h, END], container rows too
    t = END - 7 * 3600 + interval * np.arange(1, n + 1) + rng.integers(-2, 3, n)
    hot = t > END - 3600
    node = np.where(hot, 92.0, 40.0) + _ar1(rng, n, 1.5)
    hog = np.where(hot, 60.0, 20.0) + _ar1(rng, n, 1.0)
    small = np.where(hot, small_after, 10.0) + _ar1(rng, n, 0.5)
    lost = rng.random(n) < 0.03  # node rows that never arrived
    small_null = rng.random(n) < 0.05  # NULL container values
    rows = []
    for i in range(n):
        ti = int(t[i])
        if not lost[i]:
            rows.append((ti, "n1", None, True, float(node[i]), 2.0, None, 8000.0, 16000.0))
        rows.append((ti + offset, "n1", "hog", False, float(hog[i]), None, 500.0, None, None))
        s_cpu = None if small_null[i] else float(small[i])
        rows.append((ti + offset, "n1", "small", False, s_cpu, None, 200.0, None, None))
    return {
        "rows": rows,
        "t": t,
        "keep": ~lost,
        "pressure": hot & ~lost & (node > 80),
        "node": node,
        "hog": hog,
        "small": np.where(small_null, np.nan, small),
        "lost": int(lost.sum()),
    }


def _insert(dsn: str, rows: list[tuple]) -> None:
    with Store(dsn) as s:
        init_table(s)
    with psycopg.connect(dsn) as conn:
        conn.cursor().executemany(
            "INSERT INTO monitor_samples_ring (sample_time, node_name, container_name,"
            " node_flag, cpu_total_pct, cpu_iowait_pct, c_rss_mb, mem_available_mb,"
            " mem_total_mb) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


@pytest.mark.parametrize(("interval", "offset"), [(15, 1), (60, 3)])
def test_container_rows_a_few_seconds_late_are_attributed(fresh_dsn, interval, offset):
    d = _build(interval, offset)
    _insert(fresh_dsn, d["rows"])
    with PerformanceAnalyzer(fresh_dsn) as a:
        r = a.resource_contention_analysis(1, now=END)
    cpu = _entry(r, "n1", "cpu")
    p, in_window = d["pressure"], d["t"] > END - 3600
    samples = int((in_window & d["keep"]).sum())
    fraction = p.sum() / samples
    hog_share = d["hog"][p].sum() / d["node"][p].sum()
    small_share = np.nansum(d["small"][p]) / d["node"][p].sum()
    assert cpu["top_consumer"] == "hog"
    assert cpu["pressure_samples"] == int(p.sum())
    assert cpu["pressure_fraction"] == pytest.approx(fraction, abs=1e-6)
    shares = {c["container_name"]: c["share"] for c in cpu["containers"]}
    assert shares["hog"] == pytest.approx(hog_share, abs=1e-6)
    assert shares["small"] == pytest.approx(small_share, abs=1e-6)
    assert cpu["contention_score"] == pytest.approx(fraction * hog_share, abs=1e-5)
    # a container row whose node row was lost has no node row within half an interval
    assert cpu["unmatched_rows"] == 2 * d["lost"]
    assert cpu["top_grower"] == "hog"
    assert cpu["victims"] == []  # small's own use did not change


def test_a_container_whose_use_fell_beside_a_grower_is_a_victim(fresh_dsn):
    d = _build(15, 1, small_after=5.0)
    _insert(fresh_dsn, d["rows"])
    with PerformanceAnalyzer(fresh_dsn) as a:
        cpu = _entry(a.resource_contention_analysis(1, now=END), "n1", "cpu")
    assert cpu["victims"] == ["small"]
    small = next(c for c in cpu["containers"] if c["container_name"] == "small")
    calm = d["keep"] & ~(d["t"] > END - 3600)
    expected = np.nanmean(d["small"][d["pressure"]]) / np.nanmean(d["small"][calm]) - 1
    assert small["use_change"] == pytest.approx(expected, abs=1e-6)


def test_a_node_without_containers_has_pressure_and_no_contention(fresh_dsn):
    rng = np.random.default_rng(3)
    t = END - 3600 + 30 * np.arange(1, 121) + rng.integers(-3, 4, 120)
    cpu = 95.0 + _ar1(rng, 120, 1.0)
    _insert(
        fresh_dsn,
        [
            (int(ti), "bare", None, True, float(c), 1.0, None, 8000.0, 16000.0)
            for ti, c in zip(t, cpu, strict=True)
        ],
    )
    with PerformanceAnalyzer(fresh_dsn) as a:
        r = a.resource_contention_analysis(1, now=END)
    e = _entry(r, "bare", "cpu")
    assert e["contention_score"] == 0.0
    assert e["pressure_fraction"] == pytest.approx(float((cpu > 80).mean()))
    served = {
        (s.metric, dict(s.labels)["resource"]): s.value
        for s in to_samples(r, ResultView(Config(), {}))
        if dict(s.labels)["node"] == "bare"
    }
    assert served[("contention_score", "cpu")] == 0.0
    assert served[("node_pressure_ratio", "cpu")] == pytest.approx(float((cpu > 80).mean()))


def test_victim_rule_error_rates_under_autocorrelated_noise():
    """Monte Carlo of the victim rule over one hour of 60 s samples (60 under pressure,
    360 calm), per-sample noise 15 % of the use with AR(1) phi 0.9: an unchanged
    container is called a victim rarely, one that lost 40 % nearly always."""
    rng = np.random.default_rng(7)
    drop = Config().contention.victim_drop
    trials, phi, sd = 4000, 0.9, 0.15
    z = np.empty((trials, 420))
    z[:, 0] = rng.normal(0, sd, trials)
    for i in range(1, 420):
        z[:, i] = phi * z[:, i - 1] + rng.normal(0, sd * np.sqrt(1 - phi**2), trials)
    use = 10.0 * (1 + z)
    rates = {}
    for loss in (0.0, 0.4):
        change = use[:, 360:].mean(axis=1) * (1 - loss) / use[:, :360].mean(axis=1) - 1
        called = [
            "c" in victims_and_grower({"c": float(c), "g": 1.0}, {"c": 0.0, "g": 5.0}, drop)[0]
            for c in change
        ]
        rates[loss] = float(np.mean(called))
    assert rates[0.0] < 0.02  # false victims
    assert rates[0.4] > 0.95  # real victims found
