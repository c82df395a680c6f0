"""Workload patterns: when is each node busy, and how regular is it?

From the hourly CPU means of the rollups (complete hours only, so the answer does not move
with the minutes of the current hour):

- `hourly_profile` (24 means, local hour of day in `timezone`, DST-correct) and
  `weekday_profile` (7 means, local Monday first) over the `days` window. `peak_hour` is
  the busiest local hour of the profile and `peak_hour_utc` that of the UTC profile; both
  are None (and no gauge is served) unless the daily cycle is significant, below.
- Seasonality strength = the Pearson correlation of the detrended hourly means with
  themselves one period earlier, pairs joined by timestamp (hour t with hour t - 24 h),
  so a gap only removes pairs and never shifts the series; clipped to 0..1.
  Daily (lag 24 h) reads the `days` window. Weekly (lag 168 h) needs two weeks, so it reads
  max(days, `weekly_history_days`) days of history, and is None when the node has fewer
  than three quarters of a week of hour pairs a week apart.
- A daily cycle also repeats at 168 h, so weekly strength is always about as high as daily
  on a daily-cycle node; the pattern is "weekly-cycle" only when weekly beats daily by
  `weekly_margin` (the day-of-week differences dominate: a weekend-only step gives about
  0.7, a daily cycle with 30 % quieter weekends 0.1-0.35),
  else "daily-cycle" when daily >= `daily_seasonality_min`, else "bursty" when the
  coefficient of variation of the hourly means exceeds `bursty_cv` (an idle node's mean
  counts as 1 % so noise around 0 % is not a burst), else "steady".
- Nodes with fewer than `min_hours` hourly means in the window are listed under
  `insufficient_data` instead of `nodes`.

A peak hour of a flat node is the argmax of noise, so it is reported only when the daily
cycle is significant: the lag-24 h correlation must reach `daily_seasonality_min`, and a
random-phase permutation test must reject "no common daily shape" at `peak_alpha`. Each
local day (at least 18 of its 24 hours) is centred on its own mean, which removes weekend
steps and slow drifts; the statistic is the variance of the mean profile over the hours.
The null rotates every day's profile by its own random number of hours (`PEAK_PERMUTATIONS`
times, fixed seed so the answer does not jitter): that keeps each day's autocorrelation and
spread and destroys only a shared phase. Assumptions: days are exchangeable (independent
after centring); hours within a day may be autocorrelated. Error rates (Monte Carlo in
`tests/test_patterns.py`): docs/analyses.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any, TypedDict, cast
from zoneinfo import ZoneInfo

import numpy as np

from ..config import PatternConfig
from ..metricdef import NODE, gauge
from ..render import Text
from ..rollups import rollups_of
from ..samples import Sample, sample
from .common import DAY, HOUR, Context, round_float, window_seconds
from .unit import Analysis, ResultView, Served, Window


class NodePattern(TypedDict):
    node_name: str
    peak_hour: int | None  # local, in `timezone`; None without a significant daily cycle
    peak_hour_utc: int | None
    timezone: str
    peak_p_value: float | None  # of the daily shape's permutation test; None: too few days
    daily_seasonality: float | None
    weekly_seasonality: float | None
    pattern: str  # steady, daily-cycle, weekly-cycle or bursty
    cv: float | None
    mean_cpu_pct: float | None
    hourly_profile: list[float | None]
    weekday_profile: list[float | None]
    samples: int
    evidence: dict[str, Any]


class PatternResult(TypedDict):
    window: dict[str, Any]
    nodes: list[NodePattern]
    insufficient_data: list[str]


DAILY_LAG = 24 * HOUR
WEEKLY_LAG = 7 * DAY
MIN_PAIR_FRACTION = 0.75  # of one period's hours, for a seasonality to be measured
IDLE_CPU_PCT = 1.0  # the floor of the mean in the coefficient of variation


def workload_pattern_analysis(ctx: Context, *, days: float, now: int) -> PatternResult:
    """Profiles, seasonality and pattern per node; see the module docstring."""
    cfg = ctx.config.patterns
    span = window_seconds(days, DAY, "days")
    end = now // HOUR * HOUR  # hours before it are complete
    start = end - max(HOUR, span // HOUR * HOUR)
    history = end - max(span, int(cfg.weekly_history_days * DAY)) // HOUR * HOUR
    rollups = rollups_of(ctx)
    view = rollups.view("node", min(start, history), now)
    cpu = view.stat("mean", "cpu_total_pct").astype(float)
    local = LocalHours(ZoneInfo(cfg.timezone))
    nodes: list[NodePattern] = []
    insufficient: list[str] = []
    for (node, _), rows in view.series():
        ok = rows[np.isfinite(cpu[rows]) & (view.hours[rows] < end)]
        hours, values = view.hours[ok], cpu[ok]
        inside = hours >= start
        if int(inside.sum()) < cfg.min_hours:
            insufficient.append(node)
            continue
        row = node_pattern(hours[inside], values[inside], cfg, local)
        weekly = lag_correlation(hours[hours >= history], values[hours >= history], WEEKLY_LAG)
        row["weekly_seasonality"] = round_float(weekly)
        row["pattern"] = classify(row["daily_seasonality"], weekly, row["cv"], cfg)
        row["samples"] = int(view.samples[ok][inside].sum())
        row["evidence"] = {
            "window": {"start": start, "end": end},
            "weekly_window": {"start": history, "end": end},
            "hours": int(inside.sum()),
            "samples": row["samples"],
            "thresholds": {
                "daily_seasonality_min": cfg.daily_seasonality_min,
                "weekly_seasonality_min": cfg.weekly_seasonality_min,
                "weekly_margin": cfg.weekly_margin,
                "bursty_cv": cfg.bursty_cv,
            },
        }
        nodes.append(cast(NodePattern, {"node_name": node, **row}))
    window = {"start": start, "end": end, "days": round_float(days), "weekly_start": history,
              "timezone": cfg.timezone}  # fmt: skip
    return {"window": window, "nodes": nodes, "insufficient_data": insufficient}


class LocalHours:
    """Local hour of day and weekday (Monday = 0) of UTC hour starts, DST-correct."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._cache: dict[int, tuple[int, int]] = {}

    def __call__(self, hours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        unique, index = np.unique(hours, return_inverse=True)
        pairs = np.array([self._one(int(h)) for h in unique], dtype=np.int64).reshape(-1, 2)
        return pairs[index, 0], pairs[index, 1]

    def day_index(self, hours: np.ndarray) -> np.ndarray:
        """Local calendar day of each hour start, as days since 1970-01-01."""
        unique, index = np.unique(hours, return_inverse=True)
        days = np.array([self._day(int(h)) for h in unique], dtype=np.int64)
        return days[index]

    def _day(self, hour: int) -> int:
        return datetime.fromtimestamp(hour, self.zone).date().toordinal()

    def _one(self, hour: int) -> tuple[int, int]:
        if hour not in self._cache:
            local = datetime.fromtimestamp(hour, self.zone)
            self._cache[hour] = (local.hour, local.weekday())
        return self._cache[hour]


UTC_HOURS = LocalHours(ZoneInfo("UTC"))


def node_pattern(
    hours: np.ndarray, values: np.ndarray, cfg: PatternConfig, local: LocalHours = UTC_HOURS
) -> dict[str, Any]:
    """Profiles, peak hour, daily seasonality and variability of one node's hourly means."""
    hour_of_day, weekday = local(hours)
    hourly = _profile(values, hour_of_day, 24)
    weekly = _profile(values, weekday, 7)
    utc = _profile(values, (hours % DAY) // HOUR, 24)
    mean = float(values.mean())
    cv = float(values.std()) / max(mean, IDLE_CPU_PCT)
    daily = lag_correlation(hours, values, DAILY_LAG)
    p_value = daily_shape_p_value(values, hour_of_day, local.day_index(hours))
    peak = (
        daily is not None
        and daily >= cfg.daily_seasonality_min
        and p_value is not None
        and p_value <= cfg.peak_alpha
    )
    return {
        "peak_hour": int(np.nanargmax(hourly)) if peak else None,
        "peak_hour_utc": int(np.nanargmax(utc)) if peak else None,
        "timezone": cfg.timezone,
        "peak_p_value": round_float(p_value, 5),
        "daily_seasonality": round_float(daily),
        "cv": round_float(cv),
        "mean_cpu_pct": round_float(mean, 3),
        "hourly_profile": [round_float(v, 3) for v in hourly],
        "weekday_profile": [round_float(v, 3) for v in weekly],
    }


PEAK_PERMUTATIONS = 2000
MIN_DAY_HOURS = 18  # a local day with fewer hourly means is left out of the test
MIN_DAYS = 3


def daily_shape_p_value(
    values: np.ndarray, hour_of_day: np.ndarray, day: np.ndarray
) -> float | None:
    """Random-phase permutation p-value of a shared daily shape (module docstring)."""
    days, row = np.unique(day, return_inverse=True)
    sums = np.zeros((days.size, 24))
    counts = np.zeros((days.size, 24))
    np.add.at(sums, (row, hour_of_day), values)
    np.add.at(counts, (row, hour_of_day), 1)
    keep = (counts > 0).sum(axis=1) >= MIN_DAY_HOURS
    if int(keep.sum()) < MIN_DAYS:
        return None
    seen = counts[keep] > 0
    grid = np.where(seen, sums[keep] / np.maximum(counts[keep], 1), 0.0)
    grid = np.where(seen, grid - grid.sum(axis=1, keepdims=True) / seen.sum(axis=1)[:, None], 0)
    n = grid.shape[0]
    shifts = np.random.default_rng(0).integers(0, 24, (PEAK_PERMUTATIONS, n))
    index = (np.arange(24)[None, None, :] + shifts[:, :, None]) % 24
    rows = np.arange(n)[None, :, None]
    observed = _shape_variance(grid[None], seen[None])[0]
    null = _shape_variance(grid[rows, index], seen[rows, index])
    return float((1 + np.sum(null >= observed - 1e-12)) / (PEAK_PERMUTATIONS + 1))


def _shape_variance(grid: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Variance over the hours of the mean profile of (permutations, days, 24) centred days."""
    counts = seen.sum(axis=1)
    profile = grid.sum(axis=1) / np.maximum(counts, 1)
    known = counts > 0
    mean = (profile * known).sum(axis=1, keepdims=True) / np.maximum(known.sum(axis=1), 1)[:, None]
    return np.asarray(
        ((profile - mean) ** 2 * known).sum(axis=1) / np.maximum(known.sum(axis=1), 1)
    )


def _profile(values: np.ndarray, bucket: np.ndarray, size: int) -> np.ndarray:
    """Mean per bucket (NaN for a bucket without data: None in the output)."""
    sums = np.bincount(bucket, weights=values, minlength=size)
    counts = np.bincount(bucket, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def lag_correlation(hours: np.ndarray, values: np.ndarray, lag: int) -> float | None:
    """Correlation of the linearly detrended values at t and t - lag, pairs joined by
    timestamp, clipped to 0..1; None with too few pairs, 0 for a constant series."""
    r, n = _lag_stats(hours, values, lag)
    if n < MIN_PAIR_FRACTION * lag / HOUR:
        return None
    return min(1.0, max(0.0, r)) if r is not None else None


def _lag_stats(hours: np.ndarray, values: np.ndarray, lag: int) -> tuple[float | None, int]:
    """(unclipped correlation at `lag` of the detrended values, pairs); 0 when constant."""
    if hours.size < 3:
        return None, 0
    order = np.argsort(hours)
    hours, values = hours[order], values[order]
    days = (hours - hours[0]) / DAY
    residual = values - np.polyval(np.polyfit(days, values, 1), days)
    pos = np.searchsorted(hours, hours - lag)
    pos = np.minimum(pos, hours.size - 1)
    paired = hours[pos] == hours - lag
    n = int(paired.sum())
    if n < 3:
        return None, n
    a, b = residual[paired], residual[pos[paired]]
    sa, sb = float(a.std()), float(b.std())
    if sa < 1e-9 or sb < 1e-9:
        return 0.0, n
    r = float(np.mean((a - a.mean()) * (b - b.mean()))) / (sa * sb)
    return (r if math.isfinite(r) else None), n


def classify(
    daily: float | None, weekly: float | None, cv: float | None, cfg: PatternConfig
) -> str:
    """The pattern: a dominant weekly cycle first, then a daily one, then burstiness."""
    d = daily or 0.0
    if (
        weekly is not None
        and weekly >= cfg.weekly_seasonality_min
        and weekly - d >= cfg.weekly_margin
    ):
        return "weekly-cycle"
    if d >= cfg.daily_seasonality_min:
        return "daily-cycle"
    if cv is not None and cv > cfg.bursty_cv:
        return "bursty"
    return "steady"


# --------------------------------------------------------------------------- served

PEAK_HOUR = gauge(
    "workload_peak_hour",
    "Hour of day (0..23, in patterns.timezone) of the node's CPU peak; absent when the daily "
    "cycle is not significant.",
    NODE,
)
SEASONALITY = gauge(
    "workload_seasonality_ratio",
    "Strength of the daily or weekly CPU cycle, 0..1.",
    ("node", "period"),
    unit="percentunit",
)


def to_samples(result: PatternResult, view: ResultView) -> Iterator[Sample]:
    for n in result["nodes"]:
        node = n["node_name"]
        if n.get("peak_hour") is not None:
            yield sample("workload_peak_hour", n["peak_hour"], node=node)
        for period, value in (
            ("daily", n.get("daily_seasonality")),
            ("weekly", n.get("weekly_seasonality")),
        ):
            if value is not None:
                yield sample("workload_seasonality_ratio", value, node=node, period=period)


def render_text(r: PatternResult, t: Text) -> None:
    pattern_table(r["nodes"], t)


def pattern_table(nodes: list[NodePattern], t: Text) -> None:
    t.title("🕐 WORKLOAD PATTERNS")
    t.table(
        ("node", "pattern", "peak hour", "time zone", "daily", "weekly"),
        (
            (
                n["node_name"],
                n["pattern"],
                n.get("peak_hour"),
                n.get("timezone", "UTC"),
                n["daily_seasonality"],
                n["weekly_seasonality"],
            )
            for n in nodes
        ),
    )


ANALYSIS = Analysis[PatternResult](
    name="patterns",
    title="daily and weekly cycles, peak hour and burstiness of each node's CPU",
    run=workload_pattern_analysis,
    render_text=render_text,
    window=Window("days", lambda c: c.patterns.days),
    serve=Served(refresh_seconds=900, metrics=(PEAK_HOUR, SEASONALITY), to_samples=to_samples),
)
