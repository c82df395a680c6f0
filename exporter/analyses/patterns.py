"""Workload patterns: when is each node busy, and how regular is it?

From the hourly CPU means of the rollups (complete hours only, so the answer does not move
with the minutes of the current hour):

- `hourly_profile` (24 means, UTC hour of day) and `weekday_profile` (7 means, Monday
  first) over the `days` window; `peak_hour_utc` is the busiest hour of the profile.
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
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, TypedDict, cast

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
    peak_hour_utc: int | None
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
    nodes: list[NodePattern] = []
    insufficient: list[str] = []
    for (node, _), rows in view.series():
        ok = rows[np.isfinite(cpu[rows]) & (view.hours[rows] < end)]
        hours, values = view.hours[ok], cpu[ok]
        inside = hours >= start
        if int(inside.sum()) < cfg.min_hours:
            insufficient.append(node)
            continue
        row = node_pattern(hours[inside], values[inside], cfg)
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
    window = {"start": start, "end": end, "days": round_float(days), "weekly_start": history}
    return {"window": window, "nodes": nodes, "insufficient_data": insufficient}


def node_pattern(hours: np.ndarray, values: np.ndarray, cfg: PatternConfig) -> dict[str, Any]:
    """Profiles, peak hour, daily seasonality and variability of one node's hourly means."""
    hour_of_day = (hours % DAY) // HOUR
    weekday = (hours // DAY + 3) % 7  # Monday = 0 (1970-01-01 was a Thursday)
    hourly = _profile(values, hour_of_day, 24)
    weekly = _profile(values, weekday, 7)
    mean = float(values.mean())
    cv = float(values.std()) / max(mean, IDLE_CPU_PCT)
    return {
        "peak_hour_utc": int(np.nanargmax(hourly)),
        "daily_seasonality": round_float(lag_correlation(hours, values, DAILY_LAG)),
        "cv": round_float(cv),
        "mean_cpu_pct": round_float(mean, 3),
        "hourly_profile": [round_float(v, 3) for v in hourly],
        "weekday_profile": [round_float(v, 3) for v in weekly],
    }


def _profile(values: np.ndarray, bucket: np.ndarray, size: int) -> np.ndarray:
    """Mean per bucket (NaN for a bucket without data: None in the output)."""
    sums = np.bincount(bucket, weights=values, minlength=size)
    counts = np.bincount(bucket, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def lag_correlation(hours: np.ndarray, values: np.ndarray, lag: int) -> float | None:
    """Correlation of the linearly detrended values at t and t - lag, pairs joined by
    timestamp, clipped to 0..1; None with too few pairs, 0 for a constant series."""
    if hours.size < 3:
        return None
    order = np.argsort(hours)
    hours, values = hours[order], values[order]
    days = (hours - hours[0]) / DAY
    residual = values - np.polyval(np.polyfit(days, values, 1), days)
    pos = np.searchsorted(hours, hours - lag)
    pos = np.minimum(pos, hours.size - 1)
    paired = hours[pos] == hours - lag
    if paired.sum() < MIN_PAIR_FRACTION * lag / HOUR:
        return None
    a, b = residual[paired], residual[pos[paired]]
    sa, sb = float(a.std()), float(b.std())
    if sa < 1e-9 or sb < 1e-9:
        return 0.0
    r = float(np.mean((a - a.mean()) * (b - b.mean()))) / (sa * sb)
    return min(1.0, max(0.0, r)) if math.isfinite(r) else None


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

PEAK_HOUR = gauge("workload_peak_hour", "Hour of day (UTC, 0..23) of the node's CPU peak.", NODE)
SEASONALITY = gauge(
    "workload_seasonality_ratio",
    "Strength of the daily or weekly CPU cycle, 0..1.",
    ("node", "period"),
    unit="percentunit",
)


def to_samples(result: PatternResult, view: ResultView) -> Iterator[Sample]:
    for n in result["nodes"]:
        node = n["node_name"]
        if n.get("peak_hour_utc") is not None:
            yield sample("workload_peak_hour", n["peak_hour_utc"], node=node)
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
        ("node", "pattern", "peak hour (UTC)", "daily", "weekly"),
        (
            (
                n["node_name"],
                n["pattern"],
                n["peak_hour_utc"],
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
