"""Learned alert thresholds against rows written the way samplers write them: 60 s intervals
with jitter, missing rows, autocorrelated noise, NULL columns and one incident."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest
from psycopg import sql

from exporter import PerformanceAnalyzer
from exporter.analyses.thresholds import bucket_of, seasonal_levels
from exporter.config import AlertConfig, Config
from exporter.schema import init_table
from exporter.store import Store

DAY = 86400
HOUR = 3600
END = 1_700_006_400  # 2023-11-15 00:00 UTC
STEP = 60
CPUS = 8  # the diurnal node's CPU count, visible only through load / CPU
INCIDENT = END - 3 * DAY + 4 * HOUR  # one hour of the diurnal node at 99 % CPU


def ar1(rng: np.random.Generator, size: int, sd: float, phi: float = 0.9) -> np.ndarray:
    """Autocorrelated noise with marginal sd `sd`."""
    e = rng.normal(0, sd * np.sqrt(1 - phi**2), size)
    e[0] = rng.normal(0, sd)
    for i in range(1, size):
        e[i] += phi * e[i - 1]
    return e


def diurnal_cpu(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """40 % +- 25 % peaking at 14:00 UTC, with autocorrelated noise of sd 3."""
    cycle = 40 + 25 * np.cos(2 * np.pi * ((t % DAY) / HOUR - 14) / 24)
    return np.clip(cycle + ar1(rng, t.size, 3.0), 0, 100)


def _times(rng: np.random.Generator, start: int, end: int) -> np.ndarray:
    t = np.arange(start, end, STEP)
    t = t + rng.integers(-5, 6, t.size)
    return np.sort(t[rng.random(t.size) > 0.03])  # 3 % of the rows never arrive


@pytest.fixture(scope="module")
def history(dsn: str) -> str:
    with Store(dsn) as s:
        init_table(s)
    rng = np.random.default_rng(11)
    rows = []
    for node in ("warm", "bimodal", "diurnal", "idle"):
        t = _times(rng, END - 15 * DAY, END + 1)
        n = t.size
        temp = 50 + ar1(rng, n, 1.0)
        if node == "bimodal":  # hours at 10 % or 90 % at random
            busy = rng.random(15 * 24 + 1) < 0.5
            cpu = np.where(busy[(t - t[0]) // HOUR], 90.0, 10.0) + ar1(rng, n, 2.0)
        elif node == "diurnal":
            cpu = diurnal_cpu(t, rng)
            cpu[(t >= INCIDENT) & (t < INCIDENT + HOUR)] = 99.0
        elif node == "idle":
            cpu = 5 + ar1(rng, n, 0.5)
        else:
            cpu = 30 + ar1(rng, n, 3.0)
        cpu = np.clip(cpu, 0, 100)
        load = CPUS * cpu / 100 + ar1(rng, n, 0.1, 0.5)
        mem = 10000 + ar1(rng, n, 300.0)
        temp[rng.random(n) < 0.02] = np.nan  # a flaky sensor: NULL
        for i in range(n):
            rows.append(
                [int(t[i]), node, True, float(cpu[i]), 2.0, max(0.0, float(load[i])),
                 None if np.isnan(temp[i]) else float(temp[i]), float(mem[i]), 16000.0]
            )  # fmt: skip
    rows.append([END - 10, "warm", True, float("nan"), -3.0, 1.0, 900.0, float("inf"), 16000.0])
    names = ["sample_time", "node_name", "node_flag", "cpu_total_pct", "cpu_iowait_pct",
             "load_1m", "temperature_c", "mem_available_mb", "mem_total_mb"]  # fmt: skip
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        stmt = sql.SQL("COPY monitor_samples_ring ({}) FROM STDIN").format(
            sql.SQL(", ").join(map(sql.Identifier, names))
        )
        with cur.copy(stmt) as copy:
            for row in rows:
                copy.write_row(row)
    return dsn


@pytest.fixture(scope="module")
def config(history):
    with PerformanceAnalyzer(history) as a:
        result = a.generate_alert_config(now=END)
    json.dumps(result, allow_nan=False)
    return result


def _levels(result: dict, node: str, metric: str) -> dict[str, dict]:
    return {
        t["level"]: t
        for t in result["thresholds"]
        if t["node_name"] == node and t["metric"] == metric
    }


@pytest.mark.slow  # the 15-day history takes about 7 s to build
def test_history_window(config):
    assert config["history"]["start"] == END - 14 * DAY
    assert config["history"]["end"] == END
    assert config["history"]["days"] == 14
    assert config["history"]["timezone"] == "UTC"


@pytest.mark.slow  # the 15-day history takes about 7 s to build
def test_steady_node_learns_no_p1_below_the_static_p1(config):
    """50 +- 1 degrees: median + 6 sd is 56; the static P1 (85) stays the P1."""
    temp = _levels(config, "warm", "temperature_c")
    assert temp["p1"]["learned"] == pytest.approx(56, abs=1.5)
    assert temp["p1"]["threshold"] == 85 and temp["p1"]["limited_by"] == "static"
    cpu = _levels(config, "warm", "cpu_total_pct")
    assert cpu["p1"]["threshold"] == 0.95  # never 47.5 %
    # P3 and P2 may tighten within [floor_ratio x static, static]: 30 % + 4 or 5 sd of 3
    assert 0.425 <= cpu["p3"]["threshold"] == pytest.approx(0.42, abs=0.03)
    assert 0.45 <= cpu["p2"]["threshold"] == pytest.approx(0.45, abs=0.03)
    assert 0.5 * 75 <= temp["p3"]["threshold"] < 75
    assert temp["p3"]["threshold"] == pytest.approx(54, abs=1.5)


@pytest.mark.slow  # the 15-day history takes about 7 s to build
def test_bimodal_node_gets_no_p1_that_cannot_fire(config):
    for t in config["thresholds"]:
        if t["metric"] == "cpu_total_pct" and t["threshold"] is not None:
            assert t["threshold"] < 1.0, t
    p1 = _levels(config, "bimodal", "cpu_total_pct")["p1"]
    assert p1["threshold"] is None or 0.95 <= p1["threshold"] < 1.0
    assert p1["learned"] > 1.0 and p1["limited_by"] == "limit"


@pytest.mark.slow  # the 15-day history takes about 7 s to build
def test_levels_are_ordered_and_in_base_units(config):
    for node in ("warm", "diurnal", "idle"):
        cpu = _levels(config, node, "cpu_total_pct")
        assert cpu["p3"]["threshold"] <= cpu["p2"]["threshold"] <= cpu["p1"]["threshold"] <= 1
        mem = _levels(config, node, "mem_available_mb")
        assert all(t["direction"] == "below" for t in mem.values())
        assert mem["p1"]["threshold"] <= mem["p2"]["threshold"] <= mem["p3"]["threshold"]
        # free memory in bytes; the static P3 is 15 % of 16000 MiB
        assert mem["p3"]["static"] == pytest.approx(0.15 * 16000 * 1048576)
        assert mem["p3"]["threshold"] < 10000 * 1048576


@pytest.mark.slow  # the 15-day history takes about 7 s to build
def test_load_levels_use_the_nodes_cpu_count(config):
    load = _levels(config, "diurnal", "load_1m")
    assert [load[p]["static"] for p in ("p3", "p2", "p1")] == [1.5 * CPUS, 2 * CPUS, 3 * CPUS]


@pytest.mark.slow  # the 15-day history takes about 7 s to build
def test_incident_hours_are_left_out(config):
    cpu = _levels(config, "diurnal", "cpu_total_pct")
    assert cpu["p3"]["incident_hours"] == 1
    assert cpu["p3"]["seasonality"] == "hour-of-day"


@pytest.mark.slow  # the 15-day history takes about 7 s to build
def test_diurnal_p3_is_not_crossed_on_an_ordinary_day(config):
    """Replay a new day of the same law against the served P3 of each hour; the old p95 of
    the whole history is crossed at every daily peak."""
    profile = _levels(config, "diurnal", "cpu_total_pct")["p3"]["profile"]
    assert profile is not None and len(profile) == 24
    rng = np.random.default_rng(2024)
    worst_run, old_runs = 0, 0
    hist = diurnal_cpu(np.arange(END - 14 * DAY, END, STEP), rng)
    old_p3 = np.percentile(hist, 95) / 100
    for day in range(20):
        t = np.arange(END + day * DAY, END + (day + 1) * DAY, STEP)
        live = np.convolve(diurnal_cpu(t, rng) / 100, np.ones(5) / 5, mode="same")  # 5-min mean
        hours = (t % DAY) // HOUR
        above = live > np.array(profile)[hours]
        worst_run = max(worst_run, _longest_run(above))
        old_runs += _longest_run(live > old_p3) >= 10
    assert worst_run == 0
    assert old_runs == 20  # before: a 10-minute crossing every day


def _longest_run(flags: np.ndarray) -> int:
    best = run = 0
    for f in flags:
        run = run + 1 if f else 0
        best = max(best, run)
    return best


@pytest.mark.slow  # the 15-day history takes about 7 s to build
def test_diurnal_p3_follows_the_cycle(config):
    profile = np.array(_levels(config, "diurnal", "cpu_total_pct")["p3"]["profile"])
    assert profile[14] == profile.max()  # the cycle peaks at 14:00
    assert profile.max() - profile.min() > 0.3  # night and peak differ by 50 points


def test_bucket_of_is_dst_correct():
    zone = ZoneInfo("America/New_York")
    summer = int(datetime(2024, 7, 1, 12, 30, tzinfo=zone).timestamp())
    winter = int(datetime(2024, 12, 2, 12, 30, tzinfo=zone).timestamp())
    assert bucket_of(summer, zone, False) == bucket_of(winter, zone, False) == 12
    assert bucket_of(winter, zone, True) == 12  # a Monday
    assert (summer // HOUR) % 24 == 16 and (winter // HOUR) % 24 == 17


@pytest.mark.slow  # the 15-day history takes about 7 s to build
def test_sampled_history_is_close_to_exact(history, config):
    sampled_cfg = Config(alerts=AlertConfig(max_exact_rows=30000))
    with PerformanceAnalyzer(history, config=sampled_cfg) as a:
        sampled = a.generate_alert_config(now=END)
    assert sampled["history"]["method"].startswith("tablesample")
    exact = _levels(config, "diurnal", "cpu_total_pct")["p3"]["threshold"]
    assert _levels(sampled, "diurnal", "cpu_total_pct")["p3"]["threshold"] == pytest.approx(
        exact, abs=0.03
    )


def test_empty_table_is_insufficient(fresh_dsn):
    with Store(fresh_dsn) as s:
        init_table(s)
    with PerformanceAnalyzer(fresh_dsn) as a:
        r = a.generate_alert_config(now=END)
    assert r["thresholds"] == [] and r["insufficient_data"] == []


@pytest.mark.parametrize("phi", [0.9, 0.98])
def test_monte_carlo_p3_false_alarm_days(phi: float) -> None:
    """The seasonal rule on diurnal nodes with minute-level AR(1) noise (sd 3) and day-level
    offsets (sd 3): medians and MAD by numpy, levels by `seasonal_levels`, then a fresh day
    replayed as the rule sees it (5-minute mean, `for: 15m`). Measured: no false-alarm day
    in 120 node-days; a 1-hour step of +40 points is caught every time."""
    rng = np.random.default_rng(int(phi * 1000))
    t = np.arange(0, 14 * DAY, STEP)
    replay = np.arange(14 * DAY, 15 * DAY, STEP)
    false, caught, runs = 0, 0, 120
    for _ in range(runs):
        peak = rng.uniform(0, 24)

        def law(x: np.ndarray, peak: float = peak) -> np.ndarray:
            return 40 + 25 * np.cos(2 * np.pi * ((x % DAY) / HOUR - peak) / 24)

        days = np.repeat(rng.normal(0, 3, 14), DAY // STEP)
        x = law(t) + ar1(rng, t.size, 3.0, phi) + days
        bucket = (t % DAY) // HOUR
        med = np.array([np.median(x[bucket == h]) for h in range(24)])
        sd = 1.4826 * np.median(np.abs(x - med[bucket]))
        p3, _ = seasonal_levels(med, np.full(24, 14), sd, (4.0, 5.0), True)
        level = p3[(replay % DAY) // HOUR]
        y = law(replay) + ar1(rng, replay.size, 3.0, phi) + rng.normal(0, 3)
        start = int(rng.integers(0, 23 * 60))
        step = y.copy()
        step[start : start + 60] += 40
        false += _longest_run(np.convolve(y, np.ones(5) / 5, "same") > level) >= 15
        caught += _longest_run(np.convolve(step, np.ones(5) / 5, "same") > level) >= 15
    assert false == 0 and caught == runs


def test_three_weeks_of_history_learn_by_hour_of_week(fresh_dsn):
    """A Saturday 14:00 batch (70 % instead of 30 %): with `history_days` 21 and a node
    that old, the Saturday 14:00 bucket learns its own level; a 10-day-old node falls back
    to hours of the day."""
    with Store(fresh_dsn) as s:
        init_table(s)
    rng = np.random.default_rng(4)
    rows = []
    for node, days in (("old", 22), ("young", 10)):
        t = _times(rng, END - days * DAY, END + 1)[::5]  # about 5-minute samples
        local = [datetime.fromtimestamp(int(x), ZoneInfo("UTC")) for x in t]
        batch = np.array([d.weekday() == 5 and d.hour == 14 for d in local])
        cpu = np.clip(np.where(batch, 70.0, 30.0) + ar1(rng, t.size, 2.0, 0.5), 0, 100)
        rows += [(int(x), node, True, float(c)) for x, c in zip(t, cpu, strict=True)]
    with psycopg.connect(fresh_dsn) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY monitor_samples_ring (sample_time, node_name, node_flag, cpu_total_pct)"
            " FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
    config = Config(alerts=AlertConfig(history_days=21, min_samples=500))
    with PerformanceAnalyzer(fresh_dsn, config=config) as a:
        result = a.generate_alert_config(now=END)
    old = _levels(result, "old", "cpu_total_pct")["p3"]
    assert old["seasonality"] == "hour-of-week" and len(old["profile"]) == 168
    saturday, tuesday = old["profile"][5 * 24 + 14], old["profile"][1 * 24 + 14]
    assert saturday > 0.7 > 0.45 > tuesday  # the batch's own level; an ordinary hour near 30 %
    young = _levels(result, "young", "cpu_total_pct")["p3"]
    assert young["seasonality"] == "hour-of-day" and len(young["profile"]) == 24
