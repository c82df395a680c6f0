"""Current values: the last few minutes' averages, every node's newest sample and the SLIs
over the same few minutes (the short-window signal burn-rate rules average over time).
Served by the exporter only; `report summary` prints the same averages for a person."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np

from ..metricdef import CONTAINER, NODE, gauge
from ..samples import CONTAINER_VALUE, Sample, sample
from .common import (
    HOUR,
    Context,
    round_float,
    window_seconds,
)
from .emergency import KeptRows, node_facts
from .sli import SliResult, SliState, ratios, system_availability_check
from .summary import MetricStats, NodeSummary, SummaryResult
from .unit import Analysis, ResultView, Served

MIB = 2**20


class CurrentResult(TypedDict):
    summary: SummaryResult
    spans: dict[str, tuple[int, int]]  # node -> (first row, newest node row)
    sli: SliResult


@dataclass
class CurrentState:
    """The exporter's state between runs: the window's rows, and the SLI's."""

    kept: KeptRows = field(default_factory=KeptRows)
    sli: SliState = field(default_factory=SliState)


def current_values(ctx: Context, *, now: int, state: CurrentState | None = None) -> CurrentResult:
    """The last `exporter.current_window_seconds` of every node, and its newest node row
    (container rows do not prove the node sampler alive)."""
    window = ctx.config.exporter.current_window_seconds / 3600
    facts = node_facts(ctx, now)  # once for both
    return {
        "summary": _averages_now(ctx, window, now, state),
        "spans": {n: (f.first, f.last_node) for n, f in facts.items() if f.last_node is not None},
        # a threat is not an outage: the short-window grades ignore the emergency check
        "sli": system_availability_check(
            ctx,
            hours=window,
            now=now,
            threats=[],
            facts=facts,
            state=None if state is None else state.sli,
        ),
    }


def _averages_now(
    ctx: Context, hours: float, now: int, state: CurrentState | None
) -> SummaryResult:
    """The summary of the served averages only, none unknown: the result is held between
    runs for every node of the table, and a node's full statistics were most of the
    exporter's memory (and of a run's time) when a table holds many nodes."""
    start = now - window_seconds(hours, HOUR, "hours")
    kept = KeptRows() if state is None else state.kept
    with ctx.store.read() as cur:
        kept.refresh(cur, ctx, COLUMNS, start, now)
    node_columns = tuple(column for _, _, _, column, _ in NODE_VALUES)
    container_columns = tuple(column for _, _, _, column, _ in CONTAINER_VALUES)
    nodes: dict[str, NodeSummary] = {}
    for (node, _), samples, metrics in _means(kept, kept.is_node, node_columns):
        nodes[node] = {"node_name": node, "samples": samples, "metrics": metrics, "containers": []}
    containers = kept.is_other & np.array([c is not None for c in kept.container], bool)
    for (node, container), samples, metrics in _means(kept, containers, container_columns):
        entry = nodes.setdefault(
            node, {"node_name": node, "samples": 0, "metrics": {}, "containers": []}
        )
        entry["containers"].append(
            {"container_name": container, "samples": samples, "metrics": metrics}
        )
    return {
        "generated_at": int(time.time()),
        "window": {"start": start, "end": now, "hours": hours},
        "nodes": [nodes[n] for n in sorted(nodes)],
    }


def _means(
    kept: KeptRows, mask: np.ndarray, columns: tuple[str, ...]
) -> Iterator[tuple[tuple[str, str], int, MetricStats]]:
    """((node, container), rows, {column: {"avg": mean}}) of the kept rows under `mask` per
    node and container, sorted; a column without a value is left out."""
    if not mask.any():
        return
    nodes, node_codes = np.unique(kept.node[mask].astype(str), return_inverse=True)
    containers = np.array([c or "" for c in kept.container[mask]], str)
    names, container_codes = np.unique(containers, return_inverse=True)
    pairs, codes = np.unique(node_codes * len(names) + container_codes, return_inverse=True)
    values = kept.values[mask][:, [COLUMNS.index(c) for c in columns]]
    known = ~np.isnan(values)
    groups = len(pairs)
    counts = np.stack([np.bincount(codes, known[:, j], groups) for j in range(len(columns))], 1)
    sums = np.stack(
        [
            np.bincount(codes, np.where(known[:, j], values[:, j], 0.0), groups)
            for j in range(len(columns))
        ],
        1,
    )
    rows = np.bincount(codes, minlength=groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    for i, pair in enumerate(pairs.tolist()):
        node, container = str(nodes[pair // len(names)]), str(names[pair % len(names)])
        metrics: MetricStats = {}
        for j, column in enumerate(columns):
            if counts[i, j] and (avg := round_float(means[i, j], 4)) is not None:
                metrics[column] = {"avg": avg}
        yield (node, container), int(rows[i]), metrics


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
# the columns the kept rows hold: those the averages serve
COLUMNS = tuple(dict.fromkeys(column for *_, column, _ in (*NODE_VALUES, *CONTAINER_VALUES)))
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
    incremental=CurrentState,
)


def newest_node_rows(result: CurrentResult) -> dict[str, int]:
    """node -> time of its newest node row: the order in which the series budget cuts
    whole nodes (the oldest first)."""
    return {node: last for node, (_, last) in result["spans"].items()}
