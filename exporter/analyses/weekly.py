"""Weekly performance summary: the last 7 days against the 7 before, from the hourly
rollups (per-node trends), with the worst nodes, the workload patterns and the capacity
forecasts that need attention."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypedDict

import numpy as np

from ..render import Text, when
from ..rollups import RollupView, rollups_of
from .capacity import Forecast, capacity_planning_analysis, capacity_warnings, forecast_lines
from .common import DAY, Context, round_float
from .daily import PEAK_LABEL, grade_table
from .patterns import NodePattern, pattern_table, workload_pattern_analysis
from .sli import NodeSli, system_availability_check
from .unit import Analysis

WORST_NODES = 5
TREND_METRICS = ("cpu_total_pct", "cpu_iowait_pct", "load_1m", "mem_used_pct", "temperature_c")


class WeeklyReport(TypedDict):
    report: str
    window: dict[str, Any]
    previous_window: dict[str, Any]
    nodes: list[dict[str, Any]]  # node_name, metrics: {metric: this_week, last_week, change}
    worst_nodes: list[NodeSli]
    patterns: list[NodePattern]
    capacity_warnings: list[Forecast]
    grades: dict[str, int]


def weekly_performance_summary(ctx: Context, *, now: int) -> WeeklyReport:
    """The last 7 days against the 7 before: per-node trends, worst nodes, patterns."""
    week = 7 * DAY
    rollups_of(ctx)  # made here, before the thread shares it
    with ThreadPoolExecutor(1, thread_name_prefix="weekly") as pool:
        # The month of node rollups (capacity's, which patterns and the trends then read) on
        # one connection while this thread reads the week's raw rows for the SLIs.
        capacity_run = pool.submit(
            capacity_planning_analysis, ctx, days=ctx.config.capacity.days, now=now
        )
        slis = system_availability_check(ctx, hours=24 * 7, now=now)
        capacity = capacity_run.result()
    patterns = workload_pattern_analysis(ctx, days=7, now=now)
    trends = week_over_week(ctx, now)
    worst = sorted(
        slis["nodes"],
        key=lambda n: (_worst_ratio(n), n["node_name"]),
    )[:WORST_NODES]
    return {
        "report": "weekly",
        "window": {"start": now - week, "end": now, "days": 7},
        "previous_window": {"start": now - 2 * week, "end": now - week, "days": 7},
        "nodes": trends,
        "worst_nodes": worst,
        "patterns": patterns["nodes"],
        "capacity_warnings": capacity_warnings(capacity["forecasts"]),
        "grades": dict(Counter(n["grade"] for n in slis["nodes"])),
    }


def _worst_ratio(n: NodeSli) -> float:
    ratios = [r for r in (n["availability"], n["performance"], n["capacity"]) if r is not None]
    return min(ratios, default=1.0)


def week_over_week(ctx: Context, now: int) -> list[dict[str, Any]]:
    """Per node: mean and peak-hour mean of each trend metric this week and last week."""
    week = 7 * DAY
    view = rollups_of(ctx).view("node", now - 2 * week, now)
    out = []
    for (node, _), rows in view.series():
        this = view.hours[rows] > now - week - 3600
        metrics = {}
        for metric in TREND_METRICS:
            values = _hourly(view, rows, metric)
            counts = view.stat("count", "cpu_total_pct" if metric == "mem_used_pct" else metric)[
                rows
            ]
            starts = view.hours[rows]
            current = _summary(values[this], counts[this], starts[this])
            previous = _summary(values[~this], counts[~this], starts[~this])
            change = (
                None
                if current["mean"] is None or previous["mean"] is None
                else round_float(current["mean"] - previous["mean"], 3)
            )
            metrics[metric] = {"this_week": current, "last_week": previous, "change": change}
        out.append({"node_name": node, "metrics": metrics})
    return out


def _hourly(view: RollupView, rows: np.ndarray, metric: str) -> np.ndarray:
    if metric == "mem_used_pct":
        total = view.stat("mean", "mem_total_mb")[rows].astype(float)
        avail = view.stat("mean", "mem_available_mb")[rows].astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            return 100.0 * (total - avail) / total
    return view.stat("mean", metric)[rows].astype(float)


def _summary(values: np.ndarray, counts: np.ndarray, hours: np.ndarray) -> dict[str, Any]:
    ok = np.isfinite(values) & (counts > 0)
    if not ok.any():
        return {"mean": None, "peak_hour_mean": None, "peak_hour": None, "hours": 0}
    peak = int(np.flatnonzero(ok)[np.argmax(values[ok])])
    return {
        "mean": round_float(np.average(values[ok], weights=counts[ok]), 3),
        "peak_hour_mean": round_float(values[peak], 3),
        "peak_hour": int(hours[peak]),  # start of the busiest hour (epoch seconds)
        "hours": int(ok.sum()),
    }


def weekly_text(r: WeeklyReport, t: Text) -> None:
    t.title(f"🗓️  WEEKLY PERFORMANCE SUMMARY - week to {when(r['window']['end'])}")
    t.line("Week over week (CPU %; change in points; the busiest hour of this week):")
    t.table(
        ("node", "cpu this week", "last week", "change", "peak hour", "peak hour cpu"),
        (
            (
                n["node_name"],
                cpu["this_week"]["mean"],
                cpu["last_week"]["mean"],
                cpu["change"],
                _hour(cpu["this_week"]["peak_hour"]),
                cpu["this_week"]["peak_hour_mean"],
            )
            for n in r["nodes"]
            for cpu in [n["metrics"]["cpu_total_pct"]]
        ),
    )
    t.line()
    t.line("Worst nodes:")
    grade_table(r["worst_nodes"], t)
    t.line()
    pattern_table(r["patterns"], t)
    t.line()
    forecast_lines(r["capacity_warnings"], t, peak_label=PEAK_LABEL)


def _hour(start: int | None) -> str | None:
    """The busiest hour as a person reads it: `Tue 14:00 UTC`."""
    if start is None:
        return None
    return datetime.fromtimestamp(start, UTC).strftime("%a %H:00 UTC")


ANALYSIS = Analysis[WeeklyReport](
    name="weekly",
    title="the last 7 days against the 7 before: trends, worst nodes, patterns",
    run=weekly_performance_summary,
    render_text=weekly_text,
)
