"""Daily health report and weekly performance summary: the other analyses composed, each
run once per report, plus week-over-week trends from the hourly rollups."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from .common import DAY, round_float
from .sli import system_availability_check

if TYPE_CHECKING:
    from ..analyzer import PerformanceAnalyzer

CAPACITY_WARNING_DAYS = 30
WORST_NODES = 5


def daily_health_report(analyzer: PerformanceAnalyzer, *, now: int) -> dict[str, Any]:
    """The last 24 h: status, grade and SLIs per node, anomalies, capacity warnings."""
    emergency = analyzer.emergency_health_check(now=now)
    slis = system_availability_check(analyzer.ctx, hours=24, now=now, emergency=emergency)
    anomalies = analyzer.detect_anomalies(24, now=now)
    capacity = analyzer.capacity_planning_analysis(analyzer.config.capacity.days, now=now)
    warnings = capacity_warnings(capacity["forecasts"])
    grades = Counter(n["grade"] for n in slis["nodes"])
    status = emergency["status"]
    if status == "OK" and (grades["POOR"] or warnings):
        status = "WARNING"
    priorities = Counter(t["priority"] for t in emergency["threats"])
    return {
        "report": "daily",
        "status": status,
        "window": {"start": now - DAY, "end": now, "hours": 24},
        "nodes": slis["nodes"],
        "threats": emergency["threats"],
        "immediate_actions": emergency["immediate_actions"],
        "anomalies": anomalies["anomalies"],
        "capacity_warnings": warnings,
        "summary": {
            "nodes": len(slis["nodes"]),
            "grades": dict(grades),
            "threats": dict(priorities),
            "anomalies": len(anomalies["anomalies"]),
            "capacity_warnings": len(warnings),
            "text": _daily_sentence(status, len(slis["nodes"]), grades, priorities, warnings),
        },
    }


def capacity_warnings(forecasts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Forecasts already exhausted or exhausting within CAPACITY_WARNING_DAYS, soonest first."""
    urgent = [
        f
        for f in forecasts
        if f["status"] == "already_exhausted"
        or (f["status"] == "exhaustion" and f["days_to_exhaustion"] <= CAPACITY_WARNING_DAYS)
    ]
    return sorted(urgent, key=lambda f: f["days_to_exhaustion"] or 0.0)


def _daily_sentence(status, nodes, grades, priorities, warnings) -> str:
    critical = priorities.get("P1-CRITICAL", 0)
    return (
        f"{status}: {nodes} nodes; {critical} critical threats; "
        f"{grades.get('POOR', 0) + grades.get('CRITICAL', 0)} nodes graded POOR or CRITICAL; "
        f"{len(warnings)} resources exhausting within {CAPACITY_WARNING_DAYS} days"
    )


# --------------------------------------------------------------------------- weekly

TREND_METRICS = ("cpu_total_pct", "cpu_iowait_pct", "load_1m", "mem_used_pct", "temperature_c")


def weekly_performance_summary(analyzer: PerformanceAnalyzer, *, now: int) -> dict[str, Any]:
    """The last 7 days against the 7 before: per-node trends, worst nodes, patterns."""
    week = 7 * DAY
    slis = system_availability_check(analyzer.ctx, hours=24 * 7, now=now)
    patterns = analyzer.workload_pattern_analysis(7, now=now)
    capacity = analyzer.capacity_planning_analysis(analyzer.config.capacity.days, now=now)
    trends = week_over_week(analyzer, now)
    worst = sorted(
        slis["nodes"],
        key=lambda n: (min(n["availability"], n["performance"], n["capacity"]), n["node_name"]),
    )[:WORST_NODES]
    return {
        "report": "weekly",
        "window": {"start": now - week, "end": now, "days": 7},
        "previous_window": {"start": now - 2 * week, "end": now - week, "days": 7},
        "nodes": trends,
        "worst_nodes": [
            {k: n[k] for k in ("node_name", "availability", "performance", "capacity", "grade")}
            for n in worst
        ],
        "patterns": patterns["nodes"],
        "capacity_warnings": capacity_warnings(capacity["forecasts"]),
        "grades": dict(Counter(n["grade"] for n in slis["nodes"])),
    }


def week_over_week(analyzer: PerformanceAnalyzer, now: int) -> list[dict[str, Any]]:
    """Per node: mean and peak-hour mean of each trend metric this week and last week."""
    week = 7 * DAY
    view = analyzer.rollups.view("node", now - 2 * week, now)
    out = []
    for (node, _), rows in view.series():
        this = view.hours[rows] > now - week - 3600
        metrics = {}
        for metric in TREND_METRICS:
            values = _hourly(view, rows, metric)
            counts = view.stat("count", "cpu_total_pct" if metric == "mem_used_pct" else metric)[
                rows
            ]
            current = _summary(values[this], counts[this])
            previous = _summary(values[~this], counts[~this])
            change = (
                None
                if current["mean"] is None or previous["mean"] is None
                else round_float(current["mean"] - previous["mean"], 3)
            )
            metrics[metric] = {"this_week": current, "last_week": previous, "change": change}
        out.append({"node_name": node, "metrics": metrics})
    return out


def _hourly(view, rows, metric: str) -> np.ndarray:
    if metric == "mem_used_pct":
        total = view.stat("mean", "mem_total_mb")[rows].astype(float)
        avail = view.stat("mean", "mem_available_mb")[rows].astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            return 100.0 * (total - avail) / total
    return view.stat("mean", metric)[rows].astype(float)


def _summary(values: np.ndarray, counts: np.ndarray) -> dict[str, Any]:
    ok = np.isfinite(values) & (counts > 0)
    if not ok.any():
        return {"mean": None, "peak_hour_mean": None, "hours": 0}
    return {
        "mean": round_float(np.average(values[ok], weights=counts[ok]), 3),
        "peak_hour_mean": round_float(values[ok].max(), 3),
        "hours": int(ok.sum()),
    }
