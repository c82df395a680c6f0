"""Current values: the last few minutes' averages, every node's newest sample and the SLIs
over the same few minutes (the short-window signal burn-rate rules average over time).
Served by the exporter only; `report summary` prints the same averages for a person."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypedDict

from ..metricdef import CONTAINER, NODE, gauge
from ..samples import CONTAINER_VALUE, Sample, sample
from .common import Context
from .emergency import node_facts
from .sli import SliResult, ratios, system_availability_check
from .summary import MetricStats, SummaryResult, export_metrics_summary
from .unit import Analysis, ResultView, Served

MIB = 2**20


class CurrentResult(TypedDict):
    summary: SummaryResult
    spans: dict[str, tuple[int, int]]  # node -> (first row, newest node row)
    sli: SliResult


def current_values(ctx: Context, *, now: int) -> CurrentResult:
    """The last `exporter.current_window_seconds` of every node, and its newest node row
    (container rows do not prove the node sampler alive)."""
    window = ctx.config.exporter.current_window_seconds / 3600
    facts = node_facts(ctx, now)  # once for both: the newest-row walks are most of a run
    return {
        "summary": _served_only(export_metrics_summary(ctx, hours=window, now=now)),
        "spans": {n: (f.first, f.last_node) for n, f in facts.items() if f.last_node is not None},
        # a threat is not an outage: the short-window grades ignore the emergency check
        "sli": system_availability_check(ctx, hours=window, now=now, threats=[], facts=facts),
    }


def _served_only(summary: SummaryResult) -> SummaryResult:
    """The summary with only the averages `to_samples` serves, and none that is unknown:
    the result is held between runs for every node of the table, and a node's full
    statistics (every column, four figures each) were most of the exporter's memory when
    a table holds many nodes."""
    node_columns = tuple(column for _, _, _, column, _ in NODE_VALUES)
    container_columns = tuple(column for _, _, _, column, _ in CONTAINER_VALUES)
    for n in summary["nodes"]:
        n["metrics"] = _averages(n["metrics"], node_columns)
        for c in n["containers"]:
            c["metrics"] = _averages(c["metrics"], container_columns)
    return summary


def _averages(metrics: MetricStats, columns: tuple[str, ...]) -> MetricStats:
    return {
        column: {"avg": avg}
        for column in columns
        if (avg := metrics.get(column, {}).get("avg")) is not None
    }


LAST_SAMPLE = gauge(
    "node_last_sample_timestamp_seconds",
    "Unix time of the newest node row of each node (container rows do not count).",
    NODE,
    unit="dateTimeAsIso",
)
# metric, help, Grafana unit <- summary column, scale
NODE_VALUES = (
    ("cpu_usage_ratio", "CPU busy, 0..1 of the whole node", "percentunit", "cpu_total_pct", 0.01),
    ("cpu_iowait_ratio", "CPU time waiting for I/O, 0..1", "percentunit", "cpu_iowait_pct", 0.01),
    ("memory_available_bytes", "Memory available", "bytes", "mem_available_mb", MIB),
    ("memory_total_bytes", "Memory installed", "bytes", "mem_total_mb", MIB),
    ("swap_used_bytes", "Swap in use", "bytes", "swap_used_mb", MIB),
    ("load1", "1-minute load average", "none", "load_1m", 1.0),
    ("temperature_celsius", "Hottest sensor", "celsius", "temperature_c", 1.0),
)
CONTAINER_VALUES = (
    (
        "container_cpu_usage_ratio",
        "Container CPU, 0..1 of the node's whole CPU",
        "percentunit",
        "cpu_total_pct",
        0.01,
    ),
    ("container_memory_rss_bytes", "Container resident memory", "bytes", "c_rss_mb", MIB),
)
SLI_NOW = gauge(
    "sli_current_ratio",
    "Share of the last 5 minutes in compliance, 0..1, per node and SLI: the short-window "
    "signal that burn-rate rules average over time.",
    ("node", "sli"),
    unit="percentunit",
)
METRICS = (
    LAST_SAMPLE,
    *(
        gauge(name, f"{text}; last 5 minutes' average.", NODE, unit=unit)
        for name, text, unit, _, _ in NODE_VALUES
    ),
    *(
        gauge(name, f"{text}; last 5 minutes' average.", CONTAINER, unit=unit)
        for name, text, unit, _, _ in CONTAINER_VALUES
    ),
    SLI_NOW,
)


def to_samples(result: CurrentResult, view: ResultView) -> Iterator[Sample]:
    for node, (_, last) in result["spans"].items():
        yield sample("node_last_sample_timestamp_seconds", last, node=node)
    for s in result["sli"]["nodes"]:
        for name, ratio in ratios(s):
            yield sample("sli_current_ratio", ratio, node=s["node_name"], sli=name)
    for n in result["summary"]["nodes"]:
        for metric, _, _, column, scale in NODE_VALUES:
            avg = n["metrics"].get(column, {}).get("avg")
            if avg is not None:
                yield sample(metric, avg * scale, node=n["node_name"])
        for c in n["containers"]:
            for metric, _, _, column, scale in CONTAINER_VALUES:
                avg = c["metrics"].get(column, {}).get("avg")
                if avg is not None:
                    yield sample(
                        metric,
                        avg * scale,
                        CONTAINER_VALUE,
                        avg,
                        node=n["node_name"],
                        container=c["container_name"],
                    )


ANALYSIS = Analysis[CurrentResult](
    name="current",
    title="the last few minutes' averages and every node's newest sample",
    run=current_values,
    serve=Served(refresh_seconds=10, metrics=METRICS, to_samples=to_samples),
    report=False,
)


def newest_node_rows(result: CurrentResult) -> dict[str, int]:
    """node -> time of its newest node row: the order in which the series budget cuts
    whole nodes (the oldest first)."""
    return {node: last for node, (_, last) in result["spans"].items()}
