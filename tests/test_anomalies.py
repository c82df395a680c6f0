"""Anomaly detection against injected truth: the shared fleet's findings, a healthy month
replayed without false alarms, `now=` replays, level shifts and hostile data."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import psycopg
import pytest
from psycopg import sql

from exporter import PerformanceAnalyzer
from exporter.schema import COLUMN_NAMES, init_table
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store
from exporter.vocabulary import Priority

HOUR, DAY = 3600, 86400
END = 1_790_000_040


@pytest.fixture(scope="module")
def fleet_result(analyzer, fleet_db):
    result = analyzer.detect_anomalies(hours=24, now=fleet_db.fleet.end)
    json.dumps(result, allow_nan=False)
    return result


def found(result, node, metric=None):
    return [
        a
        for a in result["anomalies"]
        if a["node_name"] == node and (metric is None or a["metric"] == metric)
    ]


def overlaps(anomaly, window):
    return (
        anomaly["window"]["start"] <= window["end"] and anomaly["window"]["end"] >= window["start"]
    )


def test_disk_write_spike_found_with_its_size(fleet_result, fleet_db):
    truth = fleet_db.fleet.truth_for("anomaly_spike")
    hits = found(fleet_result, truth["node"], "disk_write_mb_s")
    assert len(hits) == 1, hits  # one episode, not one report per sample
    a = hits[0]
    assert a["score"] > 4 and a["priority"] == "P1-CRITICAL"
    assert overlaps(a, truth["window"]) and truth["start"] <= a["sample_time"] <= truth["end"]
    assert a["value"] == pytest.approx(truth["baseline"] + truth["size"], abs=6)
    assert a["baseline"] == pytest.approx(truth["baseline"], abs=2)
    assert a["samples"] >= truth["window"]["samples"] - 2
    assert a["baseline_kind"] == "hour_of_week" and a["scale"] > 0
    assert a["container_name"] is None


# the emergency findings as anomalies: (kind, metric, sign of the move)
EMERGENCY_ANOMALIES = [
    ("cpu_saturation", "cpu_total_pct", 1),
    ("overheating", "temperature_c", 1),
    ("iowait_high", "cpu_iowait_pct", 1),
    ("memory_exhausted", "mem_available_mb", -1),
    ("network_errors", "net_rx_errs_s", 1),
    ("network_errors", "net_rx_drops_s", 1),
]


@pytest.mark.parametrize(("kind", "metric", "sign"), EMERGENCY_ANOMALIES)
def test_emergency_findings_are_anomalies(fleet_result, fleet_db, kind, metric, sign):
    truth = fleet_db.fleet.truth_for(kind)
    hits = found(fleet_result, truth["node"], metric)
    assert len(hits) == 1, hits
    a = hits[0]
    assert a["score"] * sign > 4 and overlaps(a, truth["window"])
    assert a["window"]["end"] == fleet_db.fleet.end
    expected = truth.get("value", truth.get("metrics", {}).get(metric))
    assert a["value"] == pytest.approx(expected, abs=truth.get("tolerance", 0) + 1e-6)
    score = next(
        s["score"]
        for s in fleet_result["scores"]
        if s["node_name"] == truth["node"] and s["metric"] == metric and not s["container_name"]
    )
    assert score * sign > 4  # the gauge shows it while it lasts


def test_network_errors_use_the_frequency_test(fleet_result, fleet_db):
    node = fleet_db.fleet.truth_for("network_errors")["node"]
    a = found(fleet_result, node, "net_rx_errs_s")[0]
    assert a["baseline_kind"] == "zero_frequency" and a["baseline"] == 0


def test_healthy_nodes_have_no_anomaly(fleet_result):
    for node in ("node-01", "node-14"):
        assert found(fleet_result, node) == []
        scores = [s for s in fleet_result["scores"] if s["node_name"] == node]
        assert scores and all(s["score"] == 0 for s in scores)


def test_result_shape(fleet_result, fleet_db):
    assert fleet_result["window"] == {
        "start": fleet_db.fleet.end - DAY,
        "end": fleet_db.fleet.end,
        "hours": 24.0,
    }
    for a in fleet_result["anomalies"]:
        assert a["priority"] in (*Priority, "INFO")
        assert fleet_db.fleet.end - DAY < a["detected_at"] <= fleet_db.fleet.end
        assert {"value", "baseline", "score", "sample_time", "scale", "samples"} <= set(a)
    series = {(s["node_name"], s["container_name"], s["metric"]) for s in fleet_result["scores"]}
    assert len(series) == len(fleet_result["scores"])
    assert ("node-07", None, "disk_write_mb_s") in series
    assert ("node-01", "app-1", "c_rss_mb") in series
    assert fleet_result["data_quality"]["status"] == "ok"


# --------------------------------------------------------------------------- own data


def copy_rows(dsn: str, rows: list[dict], table: str = "monitor_samples_ring") -> None:
    """COPY node rows (dicts of column values) into the table, creating it if needed."""
    with Store(dsn, table) as store:
        init_table(store)
        with store.write() as cur:
            statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                store.table, sql.SQL(", ").join(map(sql.Identifier, COLUMN_NAMES))
            )
            with cur.copy(statement) as copy:
                for row in rows:
                    copy.write_row([row.get(c) for c in COLUMN_NAMES])


def node_rows(times, cpu, node="node-x", **extra):
    """Node rows with a CPU series and the other metrics constant (or given)."""
    base = {
        "cpu_iowait_pct": 2.0,
        "mem_available_mb": 8000.0,
        "mem_total_mb": 16000.0,
        "swap_used_mb": 0.0,
        "load_1m": 1.0,
        "temperature_c": 50.0,
        "disk_write_mb_s": 3.0,
        "net_rx_errs_s": 0.0,
    }
    base.update(extra)
    return [
        {
            "sample_time": int(t),
            "node_name": node,
            "node_flag": True,
            "cpu_total_pct": None if c is None else float(c),
            **base,
        }
        for t, c in zip(times, cpu, strict=True)
    ]


def daily_cpu(times, seed=1, level=30.0):
    rng = np.random.default_rng(seed)
    cycle = 10 * np.cos(2 * np.pi * (times % DAY) / DAY)
    return level + cycle + rng.normal(0, 2, times.size)


@pytest.fixture(scope="module")
def healthy_month(dsn):
    """One healthy node (daily cycle, weekend dip, Gaussian noise) and its containers."""
    with Store(dsn) as store:
        fleet = load_fleet(store, FleetSpec(nodes=1, containers=1, days=30, end=END))
    return fleet


@pytest.mark.slow
def test_no_false_alarm_over_a_healthy_month(dsn, healthy_month):
    """Replayed every 6 hours over the last 3 weeks (hour-of-day, then hour-of-week)."""
    with PerformanceAnalyzer(dsn) as analyzer:
        reports, kinds = [], set()
        for now in range(END - 21 * DAY, END + 1, 6 * HOUR):
            result = analyzer.detect_anomalies(hours=6, now=now)
            reports.extend(result["anomalies"])
            kinds |= set(result["data_quality"]["baseline_kinds"])
            assert all(s["score"] == 0 for s in result["scores"])
    assert reports == []
    assert {"hour_of_day", "hour_of_week", "zero_frequency"} <= kinds


def test_now_replay_ignores_later_rows(fresh_dsn):
    """At now=T the answer is the same before and after rows later than T arrive."""
    times = np.arange(END - 10 * DAY, END + 1, 60)
    cpu = daily_cpu(times)
    cut = END - 6 * HOUR
    cpu[(times > cut - 30 * 60) & (times <= cut)] += 40  # an anomaly visible at T
    copy_rows(fresh_dsn, [r for r in node_rows(times, cpu) if r["sample_time"] <= cut])
    with PerformanceAnalyzer(fresh_dsn) as analyzer:
        before = analyzer.detect_anomalies(hours=12, now=cut)
        assert [a["metric"] for a in before["anomalies"]] == ["cpu_total_pct"]
        later = [r for r in node_rows(times, cpu) if r["sample_time"] > cut]
        for r in later:  # the future holds chaos: it must not leak into the past
            r["cpu_total_pct"], r["temperature_c"] = 99.0, 120.0
        copy_rows(fresh_dsn, later)
        assert analyzer.detect_anomalies(hours=12, now=cut) == before  # cached rollups
        assert analyzer.detect_anomalies(hours=12, now=END)["anomalies"] != before["anomalies"]
    with PerformanceAnalyzer(fresh_dsn) as analyzer:
        assert analyzer.detect_anomalies(hours=12, now=cut) == before  # fresh rollups


def test_level_shift_reported_once_as_change_point(fresh_dsn):
    times = np.arange(END - 10 * DAY, END + 1, 60)
    cpu = daily_cpu(times, seed=2)
    shift_at = END - 20 * HOUR
    cpu[times >= shift_at] += 30
    copy_rows(fresh_dsn, node_rows(times, cpu))
    with PerformanceAnalyzer(fresh_dsn) as analyzer:
        result = analyzer.detect_anomalies(hours=24, now=END)
        assert len(result["anomalies"]) == 1, result["anomalies"]
        a = result["anomalies"][0]
        assert a["metric"] == "cpu_total_pct" and a["kind"] == "level_shift"
        assert abs(a["since"] - shift_at) <= 5 * 60
        assert a["value"] == pytest.approx(a["baseline"] + 30, abs=3)
        assert a["score"] > 4
        cpu_score = [s for s in result["scores"] if s["metric"] == "cpu_total_pct"]
        assert cpu_score[0]["score"] == 0  # the new normal is normal now
        # replayed every 2 h after it became known: never reported again
        again = []
        for now in range(END - 12 * HOUR, END + 1, 2 * HOUR):
            again += analyzer.detect_anomalies(hours=2, now=now)["anomalies"]
        assert again == []


def test_short_spike_is_not_a_level_shift(fresh_dsn):
    times = np.arange(END - 10 * DAY, END + 1, 60)
    cpu = daily_cpu(times, seed=3)
    spike = (times > END - 3 * HOUR) & (times <= END - 2 * HOUR)
    cpu[spike] += 35
    cpu[(times > END - 2 * HOUR - 30 * 60) & (times <= END - 2 * HOUR) & (times % 300 == 0)] -= 35
    copy_rows(fresh_dsn, node_rows(times, cpu))
    with PerformanceAnalyzer(fresh_dsn) as analyzer:
        result = analyzer.detect_anomalies(hours=24, now=END)
    (a,) = result["anomalies"]  # one episode despite a few normal samples inside it
    assert a["kind"] == "spike" and a["metric"] == "cpu_total_pct"
    assert a["baseline_kind"] == "hour_of_day"
    assert a["window"]["start"] > END - 3 * HOUR and a["window"]["end"] <= END - 2 * HOUR
    assert a["detected_at"] <= a["window"]["start"] + 2 * 60  # 3 of 5 samples: 3rd minute


def test_single_outliers_are_not_spikes(fresh_dsn):
    """Persistence: isolated wild samples (one in five) never make a spike; they are one
    advisory `outlier` report."""
    times = np.arange(END - 8 * DAY, END + 1, 60)
    cpu = daily_cpu(times, seed=4)
    wild = (times > END - 3 * HOUR) & (times <= END - HOUR) & (times % 300 == 0)
    cpu[wild] = 99.0  # shorter than a level shift
    copy_rows(fresh_dsn, node_rows(times, cpu))
    with PerformanceAnalyzer(fresh_dsn) as analyzer:
        result = analyzer.detect_anomalies(hours=24, now=END)
    (a,) = result["anomalies"]
    assert (a["kind"], a["priority"], a["value"]) == ("outlier", "P3-ADVISORY", 99.0)
    assert a["samples"] == wild.sum()


def test_one_wild_sample_is_an_outlier(fresh_dsn):
    """One sample 20 noise sd out, back to normal at once: an `outlier`, never above P3."""
    times = np.arange(END - 8 * DAY, END + 1, 60)
    cpu = daily_cpu(times, seed=5)  # noise sd 2 points
    at = int(np.flatnonzero(times == END - 2 * HOUR)[0])
    cpu[at] += 20 * 2.0
    copy_rows(fresh_dsn, node_rows(times, cpu))
    with PerformanceAnalyzer(fresh_dsn) as analyzer:
        result = analyzer.detect_anomalies(hours=24, now=END)
    (a,) = result["anomalies"]
    assert (a["kind"], a["priority"], a["samples"]) == ("outlier", "P3-ADVISORY", 1)
    assert a["sample_time"] == times[at] and a["value"] == pytest.approx(cpu[at], abs=1e-6)


def ar1(n, sd, rho=0.9, seed=0):
    """Autocorrelated noise of stationary sd `sd` (AR(1), as samplers see load drift)."""
    rng = np.random.default_rng(seed)
    e = rng.normal(0, sd * math.sqrt(1 - rho**2), n)
    x = np.empty(n)
    x[0] = rng.normal(0, sd)
    for i in range(1, n):
        x[i] = rho * x[i - 1] + e[i]
    return x


def test_swap_growth_with_free_memory_is_advisory(fresh_dsn):
    """+300 MiB of swap on a 32 GiB node with 20 GiB free: reported, but at most P3 however
    quiet swap was (its z is huge; what it means for the node is not)."""
    times = np.arange(END - 9 * DAY, END + 1, 60)
    swap = 120 + ar1(times.size, 2.0, seed=6)
    swap[times > END - 3 * HOUR] += 300
    rows = node_rows(times, daily_cpu(times, seed=6), mem_total_mb=32768.0)
    for r, v, m in zip(rows, swap, 20480 + ar1(times.size, 50.0, seed=7), strict=True):
        r["swap_used_mb"], r["mem_available_mb"] = float(v), float(m)
    copy_rows(fresh_dsn, rows)
    with PerformanceAnalyzer(fresh_dsn) as analyzer:
        result = analyzer.detect_anomalies(hours=24, now=END)
    swaps = [a for a in result["anomalies"] if a["metric"] == "swap_used_mb"]
    assert swaps, result["anomalies"]
    assert all(a["priority"] == "P3-ADVISORY" for a in swaps), swaps
    assert max(abs(a["score"]) for a in swaps) > 10  # priority is not the z


def test_temperature_rise_far_from_its_emergency_level_is_advisory(fresh_dsn):
    """+6 degrees C at 50 C (the emergency starts at 75 C): P3, not P2."""
    times = np.arange(END - 9 * DAY, END + 1, 60)
    temp = 50 + ar1(times.size, 0.3, seed=8)
    temp[times > END - 2 * HOUR] += 6
    rows = node_rows(times, daily_cpu(times, seed=8))
    for r, v in zip(rows, temp, strict=True):
        r["temperature_c"] = float(v)
    copy_rows(fresh_dsn, rows)
    with PerformanceAnalyzer(fresh_dsn) as analyzer:
        result = analyzer.detect_anomalies(hours=24, now=END)
    temps = [a for a in result["anomalies"] if a["metric"] == "temperature_c"]
    assert temps and all(a["priority"] == "P3-ADVISORY" for a in temps), temps


@pytest.mark.slow
def test_same_shift_scores_the_same_as_spike_or_level_shift(fresh_dsn):
    """+25 points for an hour (a spike) and for 20 hours (a level shift) on the same quiet
    series: one score scale, so the scores agree within the spike's noisier peak."""
    scores = {}
    for hours, kind in ((1, "spike"), (20, "level_shift")):
        dsn = fresh_dsn
        times = np.arange(END - 10 * DAY, END + 1, 60)
        cpu = 30 + ar1(times.size, 0.7, seed=9)  # one level: the same scale at every hour
        cpu[(times > END - (hours + 1) * HOUR) & (times <= END - HOUR)] += 25
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS monitor_samples_ring")
        copy_rows(dsn, node_rows(times, cpu))
        with PerformanceAnalyzer(dsn) as analyzer:
            result = analyzer.detect_anomalies(hours=24, now=END)
        (a,) = [a for a in result["anomalies"] if a["metric"] == "cpu_total_pct"]
        assert a["kind"] == kind, a
        scores[kind] = a["score"]
    assert scores["spike"] == pytest.approx(scores["level_shift"], rel=0.15), scores


# --------------------------------------------------------------------------- hostile data


def test_empty_table(fresh_dsn):
    with Store(fresh_dsn) as store:
        init_table(store)
    with PerformanceAnalyzer(fresh_dsn) as analyzer:
        result = analyzer.detect_anomalies(hours=24, now=END)
    assert result["anomalies"] == [] and result["scores"] == []
    assert result["data_quality"]["status"] == "insufficient_data"


def test_one_sample(fresh_dsn):
    copy_rows(fresh_dsn, node_rows([END - 60], [50.0]))
    with PerformanceAnalyzer(fresh_dsn) as analyzer:
        result = analyzer.detect_anomalies(hours=24, now=END)
    assert result["anomalies"] == [] and result["scores"] == []
    assert result["data_quality"]["without_baseline"] > 0


def test_constant_null_and_invalid_values(fresh_dsn):
    """Constant series, an all-NULL column and NaN/Infinity/negative/absurd values: no
    anomaly, no exception, JSON-safe output, the invalid values counted."""
    times = np.arange(END - 9 * DAY, END + 1, 60)
    rows = node_rows(times, np.full(times.size, 40.0), temperature_c=None)
    bad = [float("nan"), float("inf"), float("-inf"), -5.0, 1e12]
    for i, r in enumerate(rows[-600::7]):
        r["cpu_total_pct"] = bad[i % len(bad)]
        r["disk_write_mb_s"] = bad[(i + 1) % len(bad)]
    rows += node_rows(times[-300:], [float("nan")] * 300, node="node-nan")
    copy_rows(fresh_dsn, rows)
    with PerformanceAnalyzer(fresh_dsn) as analyzer:
        result = analyzer.detect_anomalies(hours=24, now=END)
    json.dumps(result, allow_nan=False)
    assert result["anomalies"] == []
    assert result["scores"] and all(s["score"] == 0 for s in result["scores"])
    assert not any(s["metric"] == "temperature_c" for s in result["scores"])
    invalid = result["data_quality"]["invalid_values"]
    assert invalid["cpu_total_pct"] >= 80 + 300 and invalid["disk_write_mb_s"] >= 80


def test_bad_window_is_refused(fresh_dsn):
    from exporter.analyses.common import AnalysisError

    with Store(fresh_dsn) as store:
        init_table(store)
    with PerformanceAnalyzer(fresh_dsn) as analyzer, pytest.raises(AnalysisError):
        analyzer.detect_anomalies(hours=-1, now=END)


def test_missing_table_is_a_store_error(fresh_dsn):
    from exporter.store import StoreError

    with PerformanceAnalyzer(fresh_dsn) as analyzer, pytest.raises(StoreError):
        analyzer.detect_anomalies(hours=24, now=END)


def test_score_is_finite_for_zero_baselines(fresh_dsn):
    """A series that was always 0 and jumps: scale floors keep the score finite."""
    times = np.arange(END - 3 * DAY, END + 1, 60)
    rows = node_rows(times, np.zeros(times.size))
    for r in rows[-10:]:
        r["cpu_total_pct"] = 60.0
    copy_rows(fresh_dsn, rows)
    with psycopg.connect(fresh_dsn):
        pass
    with PerformanceAnalyzer(fresh_dsn) as analyzer:
        result = analyzer.detect_anomalies(hours=24, now=END)
    (a,) = result["anomalies"]
    assert a["baseline_kind"] == "rolling_24h" and math.isfinite(a["score"]) and a["score"] > 4


def test_only_containers(fresh_dsn):
    """A table of container rows only: container series get baselines and anomalies."""
    times = np.arange(END - 8 * DAY, END + 1, 60)
    rss = 2000 + 50 * np.cos(2 * np.pi * (times % DAY) / DAY)
    rss[times > END - HOUR] += 3000
    rows = [
        {
            "sample_time": int(t),
            "node_name": "node-c",
            "container_name": "api-1",
            "node_flag": False,
            "cpu_total_pct": 10.0,
            "c_rss_mb": float(r),
        }
        for t, r in zip(times, rss, strict=True)
    ]
    copy_rows(fresh_dsn, rows)
    with PerformanceAnalyzer(fresh_dsn) as analyzer:
        result = analyzer.detect_anomalies(hours=24, now=END)
    (a,) = result["anomalies"]
    assert (a["node_name"], a["container_name"], a["metric"]) == ("node-c", "api-1", "c_rss_mb")
    assert a["value"] == pytest.approx(a["baseline"] + 3000, abs=60)
    assert {s["metric"] for s in result["scores"]} == {"cpu_total_pct", "c_rss_mb"}


def test_seasonal_test_without_past_hours_has_no_scale():
    """A window that starts at the history's first hour leaves no past residuals to scale
    by: the seasonal test then judges nothing (it used to index an empty axis)."""
    from exporter.analyses.anomalies import _hours_quantile, _seasonal
    from exporter.config import AnomalyConfig

    rng = np.random.default_rng(1)
    mean = rng.normal(size=(2, 200, 3))
    seasonal = _seasonal(mean, AnomalyConfig(), 0, 199)
    assert seasonal is not None and np.isnan(seasonal.scale).all()
    assert not any(seasonal.beyond(s, m, h) for s in range(2) for m in range(3) for h in (0, 199))
    mean[0, ::3, 1] = np.nan
    for q in (0.5, 0.99):  # the sort-based quantile is numpy's
        assert np.allclose(_hours_quantile(mean, q), np.nanquantile(mean, q, axis=1))


def test_merged_median_is_numpys():
    """The memo's medians over every hour (sample counts, total memory) add the hour in
    progress to the complete hours' sorted values: the same numbers np.nanmedian gives,
    in float32 as in float64, with missing values, empty rows and a missing new value."""
    from exporter.analyses.anomalies import _merged_median

    rng = np.random.default_rng(11)
    for dtype in (np.float32, np.float64):
        values = rng.normal(16000, 3, (300, 41)).astype(dtype)
        values[rng.random(values.shape) < 0.3] = np.nan
        values[:5] = np.nan  # rows without a complete hour
        values[7:12] = values[7:12, :1]  # ties
        x = rng.normal(16000, 3, 300).astype(dtype)
        x[::4] = np.nan
        x[7:12] = values[7:12, 0]
        got = _merged_median(np.sort(values, axis=1), x)
        both = np.concatenate([values, x[:, None]], axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: NaN
            want = np.array([np.nanmedian(row) for row in both], dtype)
        assert got.dtype == dtype
        assert np.array_equal(got, want, equal_nan=True)


def test_walk_of_the_complete_hours_then_the_hour_in_progress_is_the_walk_over_all_hours():
    """Level shifts found with the hour in progress hidden, then those it completes, are
    the shifts (and refitted baselines) of one walk over every hour: what lets the memo
    keep the complete hours' walk. Series 0 shifts in its last 6 hours, series 1 earlier
    and again at the end, series 2 not at all."""
    from exporter.analyses.anomalies import (
        _fit,
        _floors,
        _last_hour_shifts,
        _level_shifts,
        _Model,
        _round_fit,
        _sorted_shifts,
    )
    from exporter.config import AnomalyConfig

    cfg = AnomalyConfig()
    rng = np.random.default_rng(5)
    n_hours, metrics = 10 * 24 + 1, ("cpu_total_pct",)
    hours = np.arange(n_hours)
    mean = 40 + 10 * np.sin(2 * np.pi * hours / 24)[None, :] + rng.normal(0, 1, (3, n_hours))
    mean[0, -6:] += 30
    mean[1, 180:] += 25
    mean[1, -6:] += 40
    mean = mean[:, :, None]
    grids = {
        "mean": mean.astype(np.float32),
        "sd": np.full(mean.shape, 2, np.float32),
        "min": (mean - 5).astype(np.float32),
        "max": (mean + 5).astype(np.float32),
    }
    floors = _floors(cfg, metrics)
    first = 1_700_000_000 // HOUR * HOUR
    now = first + (n_hours - 1) * HOUR + 1800

    def model() -> _Model:
        fit = _fit({k: g.astype(np.float64) for k, g in grids.items()}, floors, cfg)
        _round_fit(fit)
        keys = [(f"n{i}", "") for i in range(3)]
        m = _Model("node", keys, metrics, first, fit, np.full(3, 60.0))
        m.grids = {k: g.copy() for k, g in grids.items()}
        return m

    whole = model()
    reference = _sorted_shifts(_level_shifts(whole, whole.grids, floors, cfg, now, {}))
    split, walked = model(), {}
    progress = split.grids["mean"][:, -1].copy()
    split.grids["mean"][:, -1] = np.nan
    settled = _level_shifts(split, split.grids, floors, cfg, now, walked)
    split.grids["mean"][:, -1] = progress
    shifts = _sorted_shifts(settled + _last_hour_shifts(split, walked, cfg, now))
    assert shifts == reference
    last = first + (n_hours - 6) * HOUR
    assert {x["series"] for x in reference if x["hour"] == last} == {0, 1}  # the hour in progress
    assert any(x["series"] == 1 and x["hour"] < last for x in reference)
    assert not any(x["series"] == 2 for x in reference)
    for name in ("base", "scale", "lo", "hi", "hour_lo", "hour_hi", "kind"):
        assert np.array_equal(getattr(split.fit, name), getattr(whole.fit, name), equal_nan=True)
