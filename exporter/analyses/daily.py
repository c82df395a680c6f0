"""Daily health report: the last 24 h of the fleet in one document, composed of the other
analyses (each run once): status, grade and SLIs per node, threats, anomalies and the
capacity forecasts that need attention."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypedDict

from ..render import PRIORITY_COLOUR, STATUS_COLOUR, Text, when
from ..rollups import rollups_of
from .anomalies import Anomaly, anomaly_table, detect_anomalies
from .capacity import (
    CAPACITY_WARNING_DAYS,
    Forecast,
    capacity_planning_analysis,
    capacity_warnings,
    forecast_lines,
)
from .common import DAY, Context
from .emergency import Threat, emergency_health_check
from .sli import NodeSli, SliRow, sli_table, system_availability_check
from .unit import Analysis


class DailySummary(TypedDict):
    nodes: int
    grades: dict[str, int]
    threats: dict[str, int]
    anomalies: int
    capacity_warnings: int
    text: str


class DailyReport(TypedDict):
    report: str
    status: str
    window: dict[str, Any]
    nodes: list[NodeSli]
    threats: list[Threat]
    immediate_actions: list[str]
    anomalies: list[Anomaly]
    capacity_warnings: list[Forecast]
    summary: DailySummary


def daily_health_report(ctx: Context, *, now: int) -> DailyReport:
    """The last 24 h: status, grade and SLIs per node, anomalies, capacity warnings."""
    rollups = rollups_of(ctx)  # made here, before the threads share it
    history = now - int(max(1, ctx.config.anomalies.history_days) * DAY)
    with ThreadPoolExecutor(2, thread_name_prefix="daily") as pool:
        # The month's node and container rollups are most of a cold run; they are read by
        # separate connections at once, while this thread reads the day's raw rows.
        capacity_run = pool.submit(
            capacity_planning_analysis, ctx, days=ctx.config.capacity.days, now=now
        )
        containers = pool.submit(rollups.view, "container", history, now)
        emergency = emergency_health_check(ctx, now=now)
        slis = system_availability_check(ctx, hours=24, now=now, threats=emergency["threats"])
        containers.result()
        anomalies = detect_anomalies(ctx, hours=24, now=now)
        capacity = capacity_run.result()
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


def _daily_sentence(
    status: str,
    nodes: int,
    grades: Counter[str],
    priorities: Counter[str],
    warnings: list[Forecast],
) -> str:
    critical = priorities.get("P1-CRITICAL", 0)
    return (
        f"{status}: {nodes} nodes; {critical} critical threats; "
        f"{grades.get('POOR', 0) + grades.get('CRITICAL', 0)} nodes graded POOR or CRITICAL; "
        f"{len(warnings)} resources exhausting within {CAPACITY_WARNING_DAYS} days"
    )


def daily_text(r: DailyReport, t: Text) -> None:
    t.title(f"📅 DAILY HEALTH REPORT - {when(r['window']['end'])}")
    t.line(t.paint(r["summary"]["text"], STATUS_COLOUR.get(r["status"])))
    t.line()
    t.title(f"📊 SLI COMPLIANCE - last {r['window']['hours']:g} h ({when(r['window']['end'])})")
    grade_table(r["nodes"], t)
    t.line()
    if r["threats"]:
        t.line("Threats now:")
        for x in r["threats"]:
            t.line(
                t.paint(f"   • [{x['priority']}] {x['message']}", PRIORITY_COLOUR[x["priority"]])
            )
        t.line()
    t.title(f"🔍 ANOMALIES - {when(r['window']['start'])} to {when(r['window']['end'])}")
    anomaly_table(r["anomalies"], t)
    t.line()
    forecast_lines(r["capacity_warnings"], t, peak_label=PEAK_LABEL)


PEAK_LABEL = "yesterday's peak"  # capacity's current peak: the highest hour of the last 24 h
INSUFFICIENT = " (insufficient data)"


def grade_table(nodes: list[NodeSli], t: Text) -> None:
    """The SLI table, a grade from too few samples marked as such: a reader must not take
    an UNKNOWN (or a POOR from a handful of samples) for a measured verdict."""
    rows: list[SliRow] = [
        {
            "node_name": n["node_name"],
            "availability": n["availability"],
            "performance": n["performance"],
            "capacity": n["capacity"],
            "grade": n["grade"] + (INSUFFICIENT if n["data"] == "insufficient_data" else ""),
        }
        for n in nodes
    ]
    sli_table(rows, t)


ANALYSIS = Analysis[DailyReport](
    name="daily",
    title="the last 24 h: status, grades, threats, anomalies and capacity warnings",
    run=daily_health_report,
    render_text=daily_text,
)
