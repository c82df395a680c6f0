"""Capacity planning against the simulated fleet's injected trends and rows of known values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from psycopg import sql

from exporter import PerformanceAnalyzer
from exporter.analyses.capacity import (
    crossing,
    fit_trend,
    limit_pcts,
    restart_index,
    t975,
    trend_counts,
    weekly_design,
)
from exporter.schema import init_table
from exporter.store import Store, StoreError
from exporter.vocabulary import ForecastStatus

DAY = 86400
END = 1_790_000_040  # a Monday, 14:14 UTC
TOTAL = 16384.0
STATUSES = set(ForecastStatus)


def forecast(result: dict, node: str, resource: str) -> dict:
    rows = [
        f for f in result["forecasts"] if f["node_name"] == node and f["resource_type"] == resource
    ]
    assert len(rows) == 1, (node, resource, result["forecasts"])
    return rows[0]


# --------------------------------------------------------------------------- the fleet


@pytest.fixture(scope="module")
def fleet_result(analyzer, fleet_db) -> dict:
    return analyzer.capacity_planning_analysis(days=30, now=fleet_db.fleet.end)


def test_memory_leak_days_to_exhaustion_matches_truth(fleet_result, fleet_db) -> None:
    truth = fleet_db.fleet.truth_for("memory_leak")
    f = forecast(fleet_result, truth["node"], "memory")
    assert f["status"] == "exhaustion"
    # exhaustion is the P1 level, 5 % of memory free, not zero
    p1_free = 0.05 * truth["mem_total_mb"]
    days_to_p1 = (truth["available_at_end_mb"] - p1_free) / truth["slope_mb_per_day"]
    assert f["limit"] == pytest.approx(0.95 * truth["mem_total_mb"])
    assert f["days_to_exhaustion"] == pytest.approx(days_to_p1, rel=0.10)
    assert f["trend_per_day"] == pytest.approx(truth["slope_mb_per_day"], rel=0.10)
    lo, hi = f["days_to_exhaustion_interval"]
    assert 0 <= lo <= f["days_to_exhaustion"] <= hi
    used_at_end = truth["mem_total_mb"] - truth["available_at_end_mb"]
    assert f["current_peak"] == pytest.approx(used_at_end, rel=0.02)  # MiB used
    assert f["min_free_mb"] == pytest.approx(truth["available_at_end_mb"], rel=0.05)
    assert f["evidence"]["r2"] > 0.9
    assert f["evidence"]["days_used"] >= 28


def test_cpu_growth_trend_and_days_match_truth(fleet_result, fleet_db) -> None:
    truth = fleet_db.fleet.truth_for("cpu_growth")
    f = forecast(fleet_result, truth["node"], "cpu")
    assert f["status"] == "exhaustion"
    assert f["trend_per_day"] == pytest.approx(truth["rate_pct_per_day"], rel=0.10)
    assert f["trend_ratio_per_day"] == pytest.approx(truth["rate_pct_per_day"] / 100, rel=0.10)
    # The truth projects the last 24 h's peak (Sunday evening's lower peak plus Monday
    # morning); the forecast follows the busiest weekday, a little earlier.
    days_to_p1 = (95.0 - truth["peak_at_end_pct"]) / truth["rate_pct_per_day"]
    assert f["limit"] == 95.0
    assert f["days_to_exhaustion"] == pytest.approx(days_to_p1, rel=0.10)
    assert f["evidence"]["weekly_adjusted"] is True
    assert f["current_peak"] == pytest.approx(truth["peak_at_end_pct"], abs=3)


def test_replay_moves_the_leak_forecast_back(analyzer, fleet_db) -> None:
    """Five days earlier the same leak was five days further from exhaustion."""
    truth = fleet_db.fleet.truth_for("memory_leak")
    earlier = analyzer.capacity_planning_analysis(days=20, now=fleet_db.fleet.end - 5 * DAY)
    f = forecast(earlier, truth["node"], "memory")
    p1_free = 0.05 * truth["mem_total_mb"]
    days_to_p1 = (truth["available_at_end_mb"] - p1_free) / truth["slope_mb_per_day"]
    assert f["days_to_exhaustion"] == pytest.approx(days_to_p1 + 5, rel=0.10)


@pytest.mark.parametrize("node", ["node-01", "node-14"])
def test_healthy_nodes_do_not_exhaust_within_a_year(fleet_result, node) -> None:
    for resource in ("cpu", "memory", "swap"):
        f = forecast(fleet_result, node, resource)
        assert f["status"] in {"no_significant_trend", "decreasing", "beyond_horizon"}, f
        assert f["days_to_exhaustion"] is None
        assert f["days_to_exhaustion_interval"] is None


def test_every_forecast_is_well_formed_and_json_safe(fleet_result, fleet_db) -> None:
    json.dumps(fleet_result, allow_nan=False)
    nodes = {f["node_name"] for f in fleet_result["forecasts"]}
    assert nodes == set(fleet_db.fleet.truth["nodes"])
    exhausting = set()
    for f in fleet_result["forecasts"]:
        assert f["status"] in STATUSES
        assert isinstance(f["recommendation"], str) and f["recommendation"]
        d = f["days_to_exhaustion"]
        assert (d is not None) == (f["status"] == "exhaustion")
        if d is not None:
            exhausting.add((f["node_name"], f["resource_type"]))
            assert 0 <= d <= 365
            assert all(v is None or 0 <= v < 1e6 for v in f["days_to_exhaustion_interval"])
        assert {"r2", "days_used", "fit_start", "limit", "value", "samples"} <= set(f["evidence"])
    assert exhausting == {("node-05", "memory"), ("node-05", "disk"), ("node-06", "cpu")}


def test_filling_disk_days_to_exhaustion_matches_truth(fleet_result, fleet_db) -> None:
    """The disk fills at a known rate: the forecast's slope and time to the 95 % limit
    (the default disk-full P1) within 2 %."""
    truth = fleet_db.fleet.truth_for("disk_filling")
    f = forecast(fleet_result, truth["node"], "disk")
    assert f["status"] == "exhaustion" and f["unit"] == "percent"
    assert f["trend_per_day"] == pytest.approx(100 * truth["rate_per_day"], rel=0.02)
    days_to_limit = (0.95 - truth["value"]) / truth["rate_per_day"]
    assert f["days_to_exhaustion"] == pytest.approx(days_to_limit, rel=0.02)


def test_recommendations_come_from_overridable_methods(analyzer, fleet_db) -> None:
    calls = []

    class Custom(PerformanceAnalyzer):
        def _get_cpu_recommendation(self, current_avg: float, trend: float) -> str:
            calls.append((current_avg, trend))
            return f"custom cpu {current_avg:.1f} {trend:+.2f}"

    with Custom(fleet_db.dsn) as custom:
        custom.ctx.caches["rollups"] = analyzer.rollups  # same table: reuse the hours read
        result = custom.capacity_planning_analysis(days=30, now=fleet_db.fleet.end)
    f = forecast(result, "node-06", "cpu")
    assert f["recommendation"] == f"custom cpu {f['current_peak']:.1f} {f['trend_per_day']:+.2f}"
    assert len(calls) == 14
    memory = forecast(result, "node-05", "memory")
    # the advice sees percent of the whole memory, not of the P1 limit
    total = memory["current_peak"] + memory["min_free_mb"]
    expected = analyzer._get_memory_recommendation(
        100 * memory["current_peak"] / total, 100 * memory["trend_per_day"] / total
    )
    assert memory["recommendation"] == expected
    assert 100 * memory["current_peak"] / total == pytest.approx(95 * memory["current_peak_ratio"])


# --------------------------------------------------------------------------- own rows


def _insert(dsn: str, table: str, nodes: dict[str, dict[str, np.ndarray]]) -> None:
    """Node rows of known values: per node, arrays t, cpu, avail, total, swap."""
    with Store(dsn, table) as store:
        init_table(store)
        cols = ("sample_time", "node_name", "node_flag", "cpu_total_pct", "mem_available_mb")
        cols += ("mem_total_mb", "swap_used_mb")
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            store.table, sql.SQL(", ").join(map(sql.Identifier, cols))
        )
        with store.write() as cur, cur.copy(statement) as copy:
            for name, s in nodes.items():
                for row in zip(s["t"], s["cpu"], s["avail"], s["total"], s["swap"], strict=True):
                    t, *values = row
                    copy.write_row((int(t), name, True, *(float(v) for v in values)))


def _series(days: float, used_frac, cpu, *, step: int = 600, seed: int = 1, end: int = END):
    """`days` of samples ending at `end`; used_frac and cpu are functions of days elapsed."""
    t = np.arange(end - int(days * DAY) + step, end + 1, step, dtype=np.int64)
    d = (t - t[0]) / DAY
    rng = np.random.default_rng(seed)
    used = used_frac(d) + 0.002 * rng.standard_normal(t.size)
    return {
        "t": t,
        "cpu": np.clip(cpu(d, t) + 1.0 * rng.standard_normal(t.size), 0, 100),
        "avail": TOTAL * (1 - used),
        "total": np.full(t.size, TOTAL),
        "swap": np.full(t.size, 64.0),
    }


DROP_AT_DAY = 14.25  # days after the start of the "restart" node's data


def _restart_used(d: np.ndarray) -> np.ndarray:
    """A leak (2 %/day), a restart, then a slower leak (1 %/day of total)."""
    return np.where(d < DROP_AT_DAY, 0.40 + 0.02 * d, 0.30 + 0.01 * (d - DROP_AT_DAY))


def _weekday(t: np.ndarray) -> np.ndarray:
    return (t // DAY + 3) % 7


@pytest.fixture(scope="module")
def own(dsn: str) -> dict:
    flat_cpu = lambda d, t: np.full(d.size, 20.0)  # noqa: E731
    restart = _series(26, _restart_used, flat_cpu)
    dips = _series(
        28,
        lambda d: np.full(d.size, 0.5),
        # growth of 0.5 %/day, 25 points lower every Saturday and Sunday
        lambda d, t: 30 + 0.5 * d - 25.0 * (_weekday(t) >= 5),
        seed=2,
    )
    full = _series(5, lambda d: np.full(d.size, 1.0), lambda d, t: np.full(d.size, 100.0))
    full["avail"] = np.zeros(full["t"].size)
    newbie = _series(1, lambda d: np.full(d.size, 0.5), flat_cpu, seed=3)
    dirty = {k: v.copy() for k, v in restart.items()}
    bad = np.array([math.nan, math.inf, -math.inf, -5.0, 1e12])
    junk_t = restart["t"][::97][: bad.size * 20] + 7  # extra rows of invalid values only
    junk = {
        "t": junk_t,
        "cpu": np.resize(bad, junk_t.size),
        "avail": np.resize(bad, junk_t.size),
        "total": np.resize(bad[::-1], junk_t.size),
        "swap": np.resize(bad, junk_t.size),
    }
    dirty = {k: np.concatenate([dirty[k], junk[k]]) for k in dirty}
    _insert(
        dsn,
        "cap_own",
        {"restart": restart, "dirty": dirty, "dips": dips, "full": full, "newbie": newbie},
    )
    start = int(restart["t"][0])
    with PerformanceAnalyzer(dsn, "cap_own") as a:
        result = a.capacity_planning_analysis(days=30, now=END)
    json.dumps(result, allow_nan=False)
    return {"result": result, "restart": restart, "drop_time": start + int(DROP_AT_DAY * DAY)}


def test_fit_restarts_after_a_drop(own) -> None:
    f = forecast(own["result"], "restart", "memory")
    drop_day = own["drop_time"] // DAY * DAY
    assert f["evidence"]["restarted"] is True
    assert f["evidence"]["fit_start"] == drop_day + DAY  # the first day wholly after it
    assert f["status"] == "exhaustion"
    assert f["trend_per_day"] == pytest.approx(0.01 * TOTAL, rel=0.05)  # the second leak
    used_now = 0.30 + 0.01 * ((END - own["drop_time"]) / DAY)
    assert f["days_to_exhaustion"] == pytest.approx((0.95 - used_now) / 0.01, rel=0.05)


def test_weekend_dips_do_not_restart_the_fit(own) -> None:
    f = forecast(own["result"], "dips", "cpu")
    assert f["evidence"]["restarted"] is False
    assert f["evidence"]["weekly_adjusted"] is True
    assert f["trend_per_day"] == pytest.approx(0.5, rel=0.10)
    assert f["status"] == "exhaustion"
    # from the busiest weekday's level, about 30 + 0.5 * 28 = 44 % now
    assert f["days_to_exhaustion"] == pytest.approx((95 - 44) / 0.5, rel=0.10)


def test_one_day_of_data_is_insufficient(own) -> None:
    for resource in ("cpu", "memory", "swap"):
        f = forecast(own["result"], "newbie", resource)
        assert f["status"] == "insufficient_data"
        assert f["days_to_exhaustion"] is None
        assert f["current_peak"] is not None  # the last 24 h are still reported


def test_already_exhausted(own) -> None:
    for resource in ("cpu", "memory"):
        f = forecast(own["result"], "full", resource)
        assert f["status"] == "already_exhausted"
        assert f["current_peak_ratio"] == pytest.approx(1 / 0.95, abs=0.01)  # past P1
        assert f["days_to_exhaustion"] is None


def test_invalid_values_are_ignored(own) -> None:
    for resource in ("cpu", "memory", "swap"):
        clean, dirty = (forecast(own["result"], n, resource) for n in ("restart", "dirty"))
        for key in ("status", "current_peak", "trend_per_day", "days_to_exhaustion"):
            assert dirty[key] == clean[key], (resource, key)


def test_answer_ignores_rows_after_now(dsn: str, own) -> None:
    """A replay at `now` equals the answer of a table that ends at `now`."""
    now = END - 3 * DAY - 1234
    s = own["restart"]
    cut = {k: v[s["t"] <= now] for k, v in s.items()}
    _insert(dsn, "cap_cut", {"restart": cut})
    with PerformanceAnalyzer(dsn, "cap_own") as a, PerformanceAnalyzer(dsn, "cap_cut") as b:
        full = a.capacity_planning_analysis(days=20, now=now)
        ended = b.capacity_planning_analysis(days=20, now=now)
    mine = [f for f in full["forecasts"] if f["node_name"] == "restart"]
    assert mine == ended["forecasts"]
    assert forecast(ended, "restart", "memory")["status"] == "exhaustion"


def test_empty_table_and_missing_table(dsn: str) -> None:
    with Store(dsn, "cap_empty") as store:
        init_table(store)
    with PerformanceAnalyzer(dsn, "cap_empty") as a:
        assert a.capacity_planning_analysis(now=END)["forecasts"] == []
    with PerformanceAnalyzer(dsn, "cap_missing") as a, pytest.raises(StoreError):
        a.capacity_planning_analysis(now=END)


# --------------------------------------------------------------------------- helpers


def test_restart_index_needs_a_held_drop() -> None:
    limits = np.full(8, 100.0)
    assert restart_index(np.array([50, 52, 54, 20, 22, 24, 26, 28.0]), limits, 20) == 3
    # a two-day dip that comes back, and a dip in the last two days: no restart
    assert restart_index(np.array([50, 52, 20, 22, 56, 58, 30, 31.0]), limits, 20) == 0
    # a resize restarts at once
    resized = np.array([100, 100, 100, 100, 100, 200, 200, 200.0])
    assert restart_index(np.full(8, 50.0), resized, 20) == 5


def test_t_quantile() -> None:
    assert t975(1) == pytest.approx(12.706)
    assert t975(30) == pytest.approx(2.042, abs=1e-3)
    assert t975(31) == pytest.approx(2.0395, abs=1e-3)
    assert t975(120) == pytest.approx(1.9799, abs=1e-3)
    assert t975(10**6) == pytest.approx(1.96, abs=1e-3)


def test_t_quantile_of_fractional_dof() -> None:
    """Effective samples give fractional degrees of freedom: between the neighbours, below 1
    no finite quantile."""
    assert 4.303 > t975(2.5) > 3.182
    assert t975(0.6) == math.inf


# --------------------------------------------------------------------------- statistics


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    e = np.empty(n)
    e[0] = rng.standard_normal()
    for i in range(1, n):
        e[i] = phi * e[i - 1] + math.sqrt(1 - phi**2) * rng.standard_normal()
    return sd * e


@pytest.mark.slow
@pytest.mark.parametrize("phi", [0.0, 0.5, 0.8])
def test_monte_carlo_false_trends_and_coverage(phi: float) -> None:
    """A small run of bench/capacity_mc.py's design, written out here: 300 flat and 300
    trending series of 30 daily peaks. Targets 7 % and 90 %, with room for the sampling
    error of 300 runs (about 1.5 points)."""
    rng = np.random.default_rng(17)
    runs, limit, slope = 300, 95.0, 0.5
    x = np.arange(30.0) - 29.5
    truth = (limit - 60.0) / slope
    false = covered = 0
    for _ in range(runs):
        dows = (np.arange(30) + int(rng.integers(7))) % 7
        flat = fit_trend(x, 60 + _ar1(rng, 30, phi, 3.0), dows, robust=True)
        assert flat is not None
        false += trend_counts(flat, limit, 0.3, 0.001)
        grow = fit_trend(x, 60 + slope * x + _ar1(rng, 30, phi, 3.0), dows, robust=True)
        assert grow is not None
        lo, hi = crossing(grow, limit, +1, 365), crossing(grow, limit, -1, 365)
        covered += lo is not None and lo <= truth and (hi is None or hi >= truth)
    assert false / runs <= 0.10
    assert covered / runs >= 0.87


def test_one_bad_day_does_not_tilt_the_robust_slope() -> None:
    x = np.arange(21.0) - 20.5
    dows = np.arange(21) % 7
    y = 50 + 0.4 * x + 0.3 * np.sin(np.arange(21.0))
    y[15] += 40  # one day of a runaway job
    robust = fit_trend(x, y, dows, robust=True)
    plain = fit_trend(x, y, dows, robust=False)
    assert robust is not None and plain is not None
    assert robust.slope == pytest.approx(0.4, abs=0.03)
    assert abs(plain.slope - 0.4) > 0.1  # least squares is pulled by the one day


def test_a_significant_but_negligible_slope_does_not_count() -> None:
    """Memory 'decreasing' by 0.06 MiB/day on 15.5 GiB is significance without magnitude."""
    x = np.arange(30.0) - 29.5
    dows = np.arange(30) % 7
    y = 8000 - 0.06 * x + 0.001 * np.cos(np.arange(30.0) * 2.1)
    fit = fit_trend(x, y, dows, robust=False)
    assert fit is not None and fit.slope == pytest.approx(-0.06, abs=1e-3)
    assert trend_counts(fit, 15564.8, 0.3, 0.0)  # significant
    assert not trend_counts(fit, 15564.8, 0.3, 0.001)  # but below 0.1 % of the limit a day


def test_weekday_terms_are_fixed_by_coverage_not_by_fit() -> None:
    x = np.arange(20.0)
    assert weekly_design(x, np.arange(20) % 7)
    assert not weekly_design(x[:10], np.arange(10) % 7)  # under two weeks
    assert not weekly_design(x, np.arange(20) % 5)  # weekdays missing
    rng = np.random.default_rng(3)
    fits = [fit_trend(x, rng.normal(size=20), np.arange(20) % 7) for _ in range(5)]
    assert all(f is not None and f.weekly for f in fits)


# --------------------------------------------------------------------------- sampler-like rows


def _sampled(days: int, cpu_at, *, seed: int, end: int = END) -> dict[str, np.ndarray]:
    """Rows as a sampler writes them: 60 s +- 10 s of jitter, 3 % of rows lost, one 3-hour
    outage, AR(1) noise (phi 0.9 per sample) on CPU, and a few NULL CPU values."""
    rng = np.random.default_rng(seed)
    steps = 60 + rng.integers(-10, 11, size=days * 1500)
    t = end - days * DAY + np.cumsum(steps)
    t = t[t <= end]
    keep = rng.random(t.size) > 0.03
    keep &= ~((t > end - 9 * DAY) & (t < end - 9 * DAY + 3 * 3600))
    t = t[keep]
    noise = np.empty(t.size)
    noise[0] = 0.0
    z = rng.standard_normal(t.size)
    for i in range(1, t.size):
        noise[i] = 0.9 * noise[i - 1] + math.sqrt(1 - 0.81) * z[i]
    cpu = np.clip(cpu_at(t) + 1.5 * noise, 0, 100)
    cpu[rng.random(t.size) < 0.01] = math.nan
    return {
        "t": t,
        "cpu": cpu,
        "avail": np.full(t.size, 0.6 * TOTAL),
        "total": np.full(t.size, TOTAL),
        "swap": np.full(t.size, 64.0),
    }


def _readme_cpu(t: np.ndarray) -> np.ndarray:
    """Busy from 12:00 to 13:00 UTC, quiet otherwise; the busy hour's level grows 0.82
    point a day and is 78.3 % on the line at END."""
    busy = (t % DAY >= 12 * 3600) & (t % DAY < 13 * 3600)
    return np.where(busy, 78.3 + 0.82 * (t - END) / DAY, 35.0)


def test_readme_example_days_to_the_p1_level(dsn: str) -> None:
    """Daily peak 78.3 %, +0.82 %/day: (95 - 78.3) / 0.82 = 20.4 days to CPU's P1 level
    (26.5 days to 100 % was the old answer)."""
    _insert(dsn, "cap_readme", {"readme": _sampled(30, _readme_cpu, seed=5)})
    with PerformanceAnalyzer(dsn, "cap_readme") as a:
        f = forecast(a.capacity_planning_analysis(days=30, now=END), "readme", "cpu")
    assert f["status"] == "exhaustion"
    assert f["limit"] == 95.0
    assert f["current_peak"] == pytest.approx(78.3, abs=0.5)
    assert f["trend_per_day"] == pytest.approx(0.82, abs=0.03)
    assert 20.0 <= f["days_to_exhaustion"] <= 21.0
    lo, hi = f["days_to_exhaustion_interval"]
    assert lo <= f["days_to_exhaustion"] <= hi


def test_a_lone_sample_at_100_percent_is_not_exhaustion(dsn: str) -> None:
    """An hour in which the sampler wrote one sample, at 100 %, is no sustained peak."""
    rows = _sampled(10, lambda t: np.full(t.size, 40.0), seed=6)
    hour = END // 3600 * 3600 - 5 * 3600
    inside = (rows["t"] >= hour) & (rows["t"] < hour + 3600)
    first = int(np.flatnonzero(inside)[0])
    drop = inside.copy()
    drop[first] = False
    rows = {k: v[~drop] for k, v in rows.items()}
    rows["cpu"][first] = 100.0
    _insert(dsn, "cap_lone", {"lone": rows})
    with PerformanceAnalyzer(dsn, "cap_lone") as a:
        f = forecast(a.capacity_planning_analysis(days=10, now=END), "lone", "cpu")
    assert f["status"] != "already_exhausted"
    assert f["current_peak"] == pytest.approx(40.0, abs=3.0)


def test_limits_default_to_the_p1_levels_and_follow_them() -> None:
    from exporter.config import ConfigError, from_dict

    assert limit_pcts(from_dict({})) == {"cpu": 95.0, "memory": 95.0, "disk": 95.0, "inodes": 95.0}
    moved = from_dict(
        {
            "emergency": {
                "cpu_pct": {"p1": 97},
                "mem_available_pct": {"p1": 8},
                "disk_used_ratio": {"p1": 0.98},
            }
        }
    )
    assert limit_pcts(moved) == {"cpu": 97.0, "memory": 92.0, "disk": 98.0, "inodes": 95.0}
    assert limit_pcts(from_dict({"capacity": {"disk_limit_ratio": 1.0}}))["disk"] == 100.0
    assert limit_pcts(from_dict({"capacity": {"cpu_limit_pct": 90}}))["cpu"] == 90.0
    with pytest.raises(ConfigError) as info:
        from_dict({"capacity": {"cpu_limit_pct": 150}})
    assert "capacity.cpu_limit_pct" in str(info.value) and "150" in str(info.value)


def test_a_quiet_weekend_at_the_start_of_a_short_history_is_not_a_trend():
    """Six daily CPU peaks of a healthy node, Saturday to Thursday (UTC), as a quiet
    realistic fleet gave them: the weekend's lower level must not read as growth, while the
    same days with steady growth still do."""
    x = np.arange(-6.0, 0.0)
    dows = np.array([5, 6, 0, 1, 2, 3])  # Saturday, Sunday, Monday .. Thursday
    weekend_dip = np.array([29.209, 29.869, 42.402, 40.977, 43.992, 42.87])
    fit = fit_trend(x, weekend_dip, dows, robust=True)
    assert fit is not None
    assert not trend_counts(fit, 95.0, 0.3, 0.001)
    growing = 40.0 + 1.5 * (x + 6) + np.array([0.3, -0.2, 0.1, -0.3, 0.2, -0.1])
    grown = fit_trend(x, growing, dows, robust=True)
    assert grown is not None and trend_counts(grown, 95.0, 0.3, 0.001)
    assert grown.slope == pytest.approx(1.5, abs=0.2)
