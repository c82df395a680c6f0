"""Workload patterns against the simulated fleet's daily cycles and rows of known shape."""

from __future__ import annotations

import json

import numpy as np
import pytest
from psycopg import sql

from exporter import PerformanceAnalyzer
from exporter.schema import init_table
from exporter.store import Store

DAY, HOUR = 86400, 3600
END = 1_790_000_040  # a Monday, 14:14 UTC
PATTERNS = {"steady", "daily-cycle", "weekly-cycle", "bursty"}


def node(result: dict, name: str) -> dict:
    rows = [n for n in result["nodes"] if n["node_name"] == name]
    assert len(rows) == 1, (name, result)
    return rows[0]


# --------------------------------------------------------------------------- the fleet


@pytest.fixture(scope="module")
def fleet_result(analyzer, fleet_db) -> dict:
    return analyzer.workload_pattern_analysis(now=fleet_db.fleet.end)  # days=7


def test_fleet_nodes_peak_at_their_hour_with_a_daily_cycle(fleet_result, fleet_db) -> None:
    json.dumps(fleet_result, allow_nan=False)
    truth = fleet_db.fleet.truth["nodes"]
    assert {n["node_name"] for n in fleet_result["nodes"]} == set(truth)
    for n in fleet_result["nodes"]:
        expected = truth[n["node_name"]]["peak_hour_utc"]
        off = (n["peak_hour_utc"] - expected) % 24
        assert min(off, 24 - off) <= 1, n
        assert n["daily_seasonality"] >= 0.6, n
        assert n["pattern"] == "daily-cycle", n
        assert len(n["hourly_profile"]) == 24 and len(n["weekday_profile"]) == 7
        assert n["samples"] >= 7 * 1440 * 0.9
        # the weekly strength reads two weeks although days=7
        assert 0 <= n["weekly_seasonality"] <= 1
        assert n["evidence"]["weekly_window"]["start"] <= fleet_result["window"]["end"] - 14 * DAY


def test_weekday_profile_shows_the_quiet_weekend(fleet_result, fleet_db) -> None:
    """The simulator runs 30 % lower on Saturday and Sunday (indices 5 and 6); healthy
    nodes only (growth and random walks are not scaled down on weekends)."""
    for name in fleet_db.fleet.truth["healthy_nodes"]:
        n = node(fleet_result, name)
        weekday, weekend = np.mean(n["weekday_profile"][:5]), np.mean(n["weekday_profile"][5:])
        assert weekend == pytest.approx(0.7 * weekday, rel=0.05), name


# --------------------------------------------------------------------------- own rows


def _insert(dsn: str, table: str, series: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    with Store(dsn, table) as store:
        init_table(store)
        statement = sql.SQL(
            "COPY {} (sample_time, node_name, node_flag, cpu_total_pct) FROM STDIN"
        ).format(store.table)
        with store.write() as cur, cur.copy(statement) as copy:
            for name, (t, cpu) in series.items():
                for ti, ci in zip(t, cpu, strict=True):
                    copy.write_row((int(ti), name, True, float(ci)))


def _times(days: float, step: int = 300) -> np.ndarray:
    return np.arange(END - int(days * DAY) + step, END + 1, step, dtype=np.int64)


def _daily(t: np.ndarray, peak_hour: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cycle = np.cos(2 * np.pi * ((t % DAY) / HOUR - peak_hour) / 24)
    return 40 + 15 * cycle + 3 * rng.standard_normal(t.size)


GAP_START = END - 5 * DAY - 7 * HOUR  # inside the 7-day window, most pairs come after it
GAP_HOURS = 7


@pytest.fixture(scope="module")
def own(dsn: str) -> dict:
    t = _times(16)
    rng = np.random.default_rng(7)
    steady = 30 + 3 * rng.standard_normal(t.size)
    bursts = np.full(t.size, 8.0) + rng.standard_normal(t.size)
    hour_index = (t - t[0]) // HOUR
    burst_hours = np.random.default_rng(8).random(hour_index.max() + 1) < 0.08
    bursts[burst_hours[hour_index]] = 85.0
    daily = _daily(t, 9, seed=9)
    gap = (t >= GAP_START) & (t < GAP_START + GAP_HOURS * HOUR)
    weekday = (t // DAY + 3) % 7
    weekend_batch = np.where(weekday >= 5, 70.0, 10.0) + 2 * rng.standard_normal(t.size)
    short = _times(10)
    series = {
        "steady": (t, np.clip(steady, 0, 100)),
        "bursty": (t, np.clip(bursts, 0, 100)),
        "daily": (t, daily),
        "daily-gap": (t[~gap], daily[~gap]),
        "weekend-batch": (t, weekend_batch),
        "short-history": (short, _daily(short, 20, seed=10)),
        "newbie": (t[t > END - 20 * HOUR], steady[t > END - 20 * HOUR]),
    }
    _insert(dsn, "pat_own", series)
    with PerformanceAnalyzer(dsn, "pat_own") as a:
        result = a.workload_pattern_analysis(days=7, now=END)
    json.dumps(result, allow_nan=False)
    return result


def test_constant_with_noise_is_steady(own) -> None:
    n = node(own, "steady")
    assert n["pattern"] == "steady"
    assert n["daily_seasonality"] < 0.3


def test_random_bursts_are_bursty(own) -> None:
    n = node(own, "bursty")
    assert n["pattern"] == "bursty"
    assert n["cv"] > 0.5
    assert n["daily_seasonality"] < 0.3


def test_daily_cycle_and_peak_hour(own) -> None:
    n = node(own, "daily")
    assert n["pattern"] == "daily-cycle"
    assert n["peak_hour_utc"] in (8, 9)  # the cosine peaks at 09:00: hours 8 and 9 tie
    assert n["daily_seasonality"] > 0.9


def test_a_gap_does_not_shift_the_autocorrelation(own) -> None:
    """Pairs are joined by timestamp: 7 missing hours remove pairs, they do not shift the
    later hours against the earlier ones (which would pair 09:00 with 02:00)."""
    whole, gapped = node(own, "daily"), node(own, "daily-gap")
    assert gapped["samples"] < whole["samples"]
    assert gapped["daily_seasonality"] == pytest.approx(whole["daily_seasonality"], abs=0.02)
    assert gapped["weekly_seasonality"] == pytest.approx(whole["weekly_seasonality"], abs=0.02)
    assert gapped["pattern"] == "daily-cycle"


def test_weekend_batch_is_a_weekly_cycle(own) -> None:
    n = node(own, "weekend-batch")
    assert n["pattern"] == "weekly-cycle"
    assert n["weekly_seasonality"] > 0.9
    assert n["weekday_profile"][5] > n["weekday_profile"][0] + 40


def test_weekly_strength_needs_two_weeks(own) -> None:
    n = node(own, "short-history")
    assert n["weekly_seasonality"] is None
    assert n["pattern"] == "daily-cycle"
    assert n["peak_hour_utc"] in (19, 20)


def test_too_little_data_is_listed_apart(own) -> None:
    assert own["insufficient_data"] == ["newbie"]
    assert "newbie" not in {n["node_name"] for n in own["nodes"]}


def test_answer_ignores_rows_after_now(dsn: str, own) -> None:
    now = END - 2 * DAY - 1234
    t = _times(16)
    keep = t <= now
    _insert(dsn, "pat_cut", {"daily": (t[keep], _daily(t, 9, seed=9)[keep])})
    with PerformanceAnalyzer(dsn, "pat_own") as a, PerformanceAnalyzer(dsn, "pat_cut") as b:
        full = node(a.workload_pattern_analysis(days=7, now=now), "daily")
        cut = node(b.workload_pattern_analysis(days=7, now=now), "daily")
    assert full == cut


def test_empty_table(dsn: str) -> None:
    with Store(dsn, "pat_empty") as store:
        init_table(store)
    with PerformanceAnalyzer(dsn, "pat_empty") as a:
        result = a.workload_pattern_analysis(now=END)
    assert result["nodes"] == [] and result["insufficient_data"] == []
