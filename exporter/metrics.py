"""Every metric the exporter serves: name, help, labels, type, unit and the analysis that
feeds it. The single source for the collector, the alert rules and the dashboards, so a
rule or a panel can never name a metric that does not exist."""

from __future__ import annotations

from dataclasses import dataclass

from .analyses.emergency import CHECKS

PREFIX = "perf_analyzer_"


@dataclass(frozen=True)
class Metric:
    name: str  # as exposed (counters end in _total)
    help: str
    labels: tuple[str, ...] = ()
    kind: str = "gauge"  # "gauge" or "counter"
    unit: str = "none"  # Grafana unit of the panels that show it
    analysis: str = "self"  # the refresh job that produces it

    @property
    def family(self) -> str:
        """The name prometheus_client wants: counters without their _total suffix."""
        return self.name.removesuffix("_total") if self.kind == "counter" else self.name


def _m(name: str, help: str, labels: tuple[str, ...] = (), **kw: str) -> Metric:
    return Metric(PREFIX + name, help, labels, **kw)


NODE = ("node",)
CONTAINER = ("node", "container")

METRICS: tuple[Metric, ...] = (
    # -- the exporter itself
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
        "series_dropped",
        "Series cut by the series budget (--max-series) in this scrape.",
        ("kind",),
    ),
    _m(
        "node_last_sample_timestamp_seconds",
        "Unix time of the newest sample of each node.",
        NODE,
        unit="dateTimeAsIso",
        analysis="current",
    ),
    # -- current values: the last 5 minutes' average
    _m(
        "cpu_usage_ratio",
        "CPU busy, 0..1 of the whole node; last 5 minutes' average.",
        NODE,
        unit="percentunit",
        analysis="current",
    ),
    _m(
        "cpu_iowait_ratio",
        "CPU time waiting for I/O, 0..1; last 5 minutes' average.",
        NODE,
        unit="percentunit",
        analysis="current",
    ),
    _m(
        "memory_available_bytes",
        "Memory available; last 5 minutes' average.",
        NODE,
        unit="bytes",
        analysis="current",
    ),
    _m(
        "memory_total_bytes",
        "Memory installed; last 5 minutes' average.",
        NODE,
        unit="bytes",
        analysis="current",
    ),
    _m(
        "swap_used_bytes",
        "Swap in use; last 5 minutes' average.",
        NODE,
        unit="bytes",
        analysis="current",
    ),
    _m("load1", "1-minute load average; last 5 minutes' average.", NODE, analysis="current"),
    _m(
        "temperature_celsius",
        "Hottest sensor; last 5 minutes' average.",
        NODE,
        unit="celsius",
        analysis="current",
    ),
    _m(
        "container_cpu_usage_ratio",
        "Container CPU, 0..1 of the node's whole CPU; last 5 minutes' average.",
        CONTAINER,
        unit="percentunit",
        analysis="current",
    ),
    _m(
        "container_memory_rss_bytes",
        "Container resident memory; last 5 minutes' average.",
        CONTAINER,
        unit="bytes",
        analysis="current",
    ),
    # -- findings
    _m(
        "emergency_threat",
        "Emergency check level per node and check: 0 none, 1 P3-ADVISORY, 2 P2-WARNING, "
        "3 P1-CRITICAL.",
        ("node", "check"),
        analysis="emergency",
    ),
    _m(
        "sli_compliance_ratio",
        "Share of the SLI window (default 24 h) in compliance, 0..1, per node and SLI.",
        ("node", "sli"),
        unit="percentunit",
        analysis="sli",
    ),
    _m(
        "sli_current_ratio",
        "Share of the last 5 minutes in compliance, 0..1, per node and SLI: the short-window "
        "signal that burn-rate rules average over time.",
        ("node", "sli"),
        unit="percentunit",
        analysis="current",
    ),
    _m(
        "health_grade",
        "1 for the node's current health grade, 0 for the others.",
        ("node", "grade"),
        analysis="sli",
    ),
    _m(
        "health_score",
        "Health grade as a number: 4 excellent, 3 good, 2 acceptable, 1 poor, 0 critical.",
        NODE,
        analysis="sli",
    ),
    _m(
        "anomaly_score",
        "Signed robust score of the recent samples against the series' own seasonal baseline "
        "(0 when normal).",
        ("node", "container", "metric"),
        analysis="anomalies",
    ),
    _m(
        "time_to_exhaustion_seconds",
        "Forecast time until the resource's daily peak reaches its limit; +Inf when not "
        "trending to exhaustion, 0 when already exhausted.",
        ("node", "resource"),
        unit="s",
        analysis="capacity",
    ),
    _m(
        "capacity_peak_ratio",
        "Current daily peak of the resource, 0..1 of its limit.",
        ("node", "resource"),
        unit="percentunit",
        analysis="capacity",
    ),
    _m(
        "capacity_trend_ratio_per_day",
        "Growth of the daily peak per day, as a ratio of the "
        "limit (0 without a significant trend).",
        ("node", "resource"),
        unit="percentunit",
        analysis="capacity",
    ),
    _m(
        "capacity_forecast_status",
        "1 for the forecast's current status, 0 for the others.",
        ("node", "resource", "status"),
        analysis="capacity",
    ),
    _m(
        "contention_score",
        "Resource contention between a node's containers, 0..1.",
        ("node", "resource"),
        unit="percentunit",
        analysis="contention",
    ),
    _m(
        "metric_correlation",
        "Pearson coefficient of strongly correlated metric pairs.",
        ("node", "metric_a", "metric_b"),
        analysis="correlation",
    ),
    _m(
        "workload_peak_hour",
        "Hour of day (UTC, 0..23) of the node's CPU peak.",
        NODE,
        analysis="patterns",
    ),
    _m(
        "workload_seasonality_ratio",
        "Strength of the daily or weekly CPU cycle, 0..1.",
        ("node", "period"),
        unit="percentunit",
        analysis="patterns",
    ),
    _m(
        "dynamic_threshold",
        "Alert threshold learned from the node's own history, in the metric's unit.",
        ("node", "metric", "priority"),
        analysis="thresholds",
    ),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
GRADES = ("critical", "poor", "acceptable", "good", "excellent")  # index = health_score
FORECAST_STATUSES = (
    "exhaustion",
    "already_exhausted",
    "no_significant_trend",
    "decreasing",
    "beyond_horizon",
    "insufficient_data",
)
EMERGENCY_CHECKS = CHECKS  # one series per node and check
