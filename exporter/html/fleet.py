"""The exporter's fleet page at `/`: grades, SLIs, threats, the soonest exhaustions and the
current anomalies, from the collector's latest results. It reads nothing but those results
(no database work per page view) and reloads itself; plain HTML, no charts, so it needs no
extra. Every value from the table (node, container and metric names) is escaped."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ..generate.alerts import DEFAULT_RUNBOOK_BASE
from ..render import when
from .page import GRADE_CLASS, PRIORITY_CLASS, STATUS_CLASS, Page, esc, pct

REFRESH_SECONDS = 30  # the page reloads itself this often
SOONEST = 10  # exhaustions shown, soonest first
PRIORITY_RANK = {"P1-CRITICAL": 0, "P2-WARNING": 1, "P3-ADVISORY": 2}


def fleet_page(
    results: Mapping[str, Any],
    *,
    version: str,
    table: str,
    telemetry_path: str,
    runbooks: str = DEFAULT_RUNBOOK_BASE,
    now: float | None = None,
) -> str:
    """The page, from the latest result of each analysis by name (None: not run yet)."""
    now = time.time() if now is None else now
    emergency = results.get("emergency") or {}
    status = emergency.get("status", "NO RESULT YET")
    page = Page(
        f"perf-analyzer {version}: fleet", f"Table {table} · {when(now)}", refresh=REFRESH_SECONDS
    )
    page.raw(f'<p class="badge {esc(STATUS_CLASS.get(status, "dim"))}">{esc(status)}</p>')
    path = esc(telemetry_path)
    page.raw(
        f'<p><a href="{path}">{path}</a> · <a href="/-/healthy">/-/healthy</a> · '
        f'<a href="/-/ready">/-/ready</a> · <a href="{esc(runbooks)}">runbooks</a> · '
        '<a href="#reports">reports</a></p>'
    )

    sli = results.get("availability") or {}
    nodes = sli.get("nodes") or []
    hours = (sli.get("window") or {}).get("hours")
    page.heading(f"Grades and SLIs — last {hours:g} h" if hours else "Grades and SLIs", "grades")
    page.table(
        ("node", "grade", "availability", "performance", "capacity"),
        (
            (
                n["node_name"],
                n["grade"],
                pct(n["availability"]),
                pct(n["performance"]),
                pct(n["capacity"]),
            )
            for n in nodes
        ),
        ([None, GRADE_CLASS.get(n["grade"]), None, None, None] for n in nodes),
        css="grades",
    )

    threats = sorted(
        emergency.get("threats") or [],
        key=lambda t: (PRIORITY_RANK.get(t["priority"], 9), t["node_name"], t["check"]),
    )
    page.heading("Active threats", "threats")
    page.table(
        ("node", "priority", "check", "what"),
        ((t["node_name"], t["priority"], t["check"], t["message"]) for t in threats),
        ([None, PRIORITY_CLASS.get(t["priority"]), None, None] for t in threats),
        css="threats",
    )

    forecasts = (results.get("capacity") or {}).get("forecasts") or []
    urgent = sorted(
        (f for f in forecasts if f["status"] in ("exhaustion", "already_exhausted")),
        key=lambda f: f["days_to_exhaustion"] or 0.0,
    )[:SOONEST]
    page.heading("Soonest exhaustions", "capacity")
    page.table(
        ("node", "resource", "peak / limit", "exhaustion"),
        (
            (
                f["node_name"],
                f["resource_type"],
                pct(f["current_peak_ratio"]),
                "already exhausted"
                if f["status"] == "already_exhausted"
                else when(f["exhaustion_time"]),
            )
            for f in urgent
        ),
        css="exhaustions",
    )

    anomalies = sorted(
        (results.get("anomalies") or {}).get("anomalies") or [],
        key=lambda a: (PRIORITY_RANK.get(a["priority"], 9), -a["sample_time"]),
    )
    page.heading("Current anomalies", "anomalies")
    page.table(
        ("node", "container", "metric", "priority", "kind", "at", "score"),
        (
            (
                a["node_name"],
                a["container_name"] or "",
                a["metric"],
                a["priority"],
                a["kind"],
                when(a["sample_time"]),
                a["score"],
            )
            for a in anomalies
        ),
        (
            [None, None, None, PRIORITY_CLASS.get(a["priority"]), None, None, None]
            for a in anomalies
        ),
        css="anomalies",
    )

    page.heading("Reports", "reports")
    page.para(
        "The daily and weekly reports, as pages with charts: "
        "perf-analyzer report daily|weekly|capacity|anomalies|availability --format html "
        "--out FILE"
    )
    return str(page)
