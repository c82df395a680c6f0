"""Every metric the exporter serves: the exporter's own, then those each analysis declares
(in the registry's order). The single source for the collector, the alert rules and the
dashboards, so a rule or a panel can never name a metric that does not exist."""

from __future__ import annotations

import dataclasses

from . import registry
from .analyses.capacity import STATUSES
from .analyses.emergency import CHECKS
from .analyses.sli import GRADES
from .metricdef import PREFIX, Metric

__all__ = ["BY_NAME", "EMERGENCY_CHECKS", "FORECAST_STATUSES", "GRADES", "METRICS", "PREFIX"]


def _m(name: str, help: str, labels: tuple[str, ...] = (), **kw: str) -> Metric:
    return Metric(PREFIX + name, help, labels, **kw)


OWN: tuple[Metric, ...] = (
    _m("database_up", "1 if the latest database round trip succeeded, else 0."),
    _m("build_info", "Version of perf-analyzer; always 1.", ("version",)),
    _m(
        "analysis_duration_seconds",
        "Duration of the latest run of each analysis.",
        ("analysis",),
        unit="s",
    ),
    _m(
        "analysis_last_success_timestamp_seconds",
        "Unix time at which each analysis last succeeded.",
        ("analysis",),
        unit="dateTimeAsIso",
    ),
    _m(
        "analysis_errors_total",
        "Failed runs of each analysis since the exporter started.",
        ("analysis",),
        kind="counter",
    ),
    _m(
        "analysis_last_run_success",
        "1 if the latest run of each analysis succeeded, else 0.",
        ("analysis",),
    ),
    _m(
        "analysis_refresh_interval_seconds",
        "Configured refresh interval of each analysis (0 = every scrape).",
        ("analysis",),
        unit="s",
    ),
    _m(
        "rollup_history_seconds",
        "Seconds of hourly rollups read so far, per kind of series (node, container). A "
        "cold start reads the newest hours first; an analysis whose history reaches further "
        "back has no result until this covers it.",
        ("kind",),
        unit="s",
    ),
    _m(
        "analysis_history_seconds",
        "Seconds of history (hourly rollups) the served result of each rollup-based analysis "
        "was computed from: less than its window while a cold start is still reading older "
        "days.",
        ("analysis",),
        unit="s",
    ),
    _m(
        "exposition_errors_total",
        "Results of each analysis that could not be turned into metrics (a bug: the "
        "analysis's metric families are missing from the scrape).",
        ("analysis",),
        kind="counter",
    ),
    _m(
        "http_connections_accepted_total",
        "HTTP connections accepted since the exporter started.",
        kind="counter",
    ),
    _m(
        "http_connections_refused_total",
        "HTTP connections closed at once: the connection cap was reached and every live "
        "connection had sent its request.",
        kind="counter",
    ),
    _m(
        "http_connections_evicted_total",
        "HTTP connections dropped at the cap to make room: the oldest one still sending its "
        "request head.",
        kind="counter",
    ),
    _m(
        "http_connections_head_timeout_total",
        "HTTP connections dropped because their request head (TLS handshake included) did "
        "not arrive within the head deadline.",
        kind="counter",
    ),
    _m(
        "http_accept_errors_total",
        "Failed accept() calls of the listening socket (EMFILE and the like).",
        kind="counter",
    ),
    _m(
        "nodes_ignored",
        "Nodes the analyses do not read because the table names more than the exporter can "
        "serve (exporter.max_nodes, the node guard).",
    ),
    _m(
        "series_dropped",
        "Series cut by the series budget (--max-series) in this scrape.",
        ("kind",),
    ),
)


def catalogue() -> tuple[Metric, ...]:
    """The exporter's own metrics, then every served analysis's, marked with its name."""
    return OWN + tuple(
        dataclasses.replace(m, analysis=a.name)
        for a in registry.served()
        if a.serve is not None
        for m in a.serve.metrics
    )


METRICS: tuple[Metric, ...] = catalogue()
BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
FORECAST_STATUSES = STATUSES
EMERGENCY_CHECKS = CHECKS  # one series per node and check
