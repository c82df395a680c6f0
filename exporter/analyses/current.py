"""Current values: the last few minutes' averages, every node's newest sample and the SLIs
over the same few minutes (the short-window signal burn-rate rules average over time).
Served by the exporter only; `report summary` prints the same averages for a person."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypedDict

from psycopg import sql

from ..metricdef import CONTAINER, NODE, gauge
from ..samples import CONTAINER_VALUE, Sample, sample
from .common import (
    CONTAINER_ROW,
    HOUR,
    NODE_ROW,
    Context,
    clean,
    metric_columns,
    round_float,
    window_rows,
    window_seconds,
)
from .emergency import node_facts
from .sli import SliResult, SliState, ratios, system_availability_check
from .summary import ContainerSummary, MetricStats, NodeSummary, SummaryResult
from .unit import Analysis, ResultView, Served

MIB = 2**20


class CurrentResult(TypedDict):
    summary: SummaryResult
    spans: dict[str, tuple[int, int]]  # node -> (first row, newest node row)
    sli: SliResult


@dataclass
class CurrentState:
    """The exporter's state between runs: the SLI's kept rows and the composed query."""

    sli: SliState = field(default_factory=SliState)
    query: tuple[Any, sql.Composed] = (None, sql.Composed([]))


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


# The served averages of every node and container over the window, in one statement: the
# node rows' and the container rows' (each deduplicated as `window_rows` does, by the
# valid values of its own columns, as the summary does).
def _averages_query(ctx: Context) -> sql.Composed:
    node = tuple(column for _, _, _, column, _ in NODE_VALUES)
    container = tuple(column for _, _, _, column, _ in CONTAINER_VALUES)
    every = (*node, *dict.fromkeys(c for c in container if c not in node))

    def part(columns: tuple[str, ...], is_node: bool) -> sql.Composed:
        return sql.SQL(
            "SELECT node_name, {container} AS container_name, count(*) AS samples, {avgs}"
            " FROM {rows} w WHERE {which} GROUP BY node_name{group}"
        ).format(
            container=sql.SQL("NULL::text" if is_node else "container_name"),
            avgs=sql.SQL(", ").join(
                sql.SQL("avg({}) AS {}").format(clean(c), sql.Identifier(c))
                if c in columns
                else sql.SQL("NULL::float8 AS {}").format(sql.Identifier(c))
                for c in every
            ),
            rows=window_rows(ctx.store, metric_columns(is_node)),
            which=NODE_ROW if is_node else CONTAINER_ROW,
            group=sql.SQL("" if is_node else ", container_name"),
        )

    return sql.SQL("{} UNION ALL {}").format(part(node, True), part(container, False))


def _averages_now(
    ctx: Context, hours: float, now: int, state: CurrentState | None
) -> SummaryResult:
    """The summary of the served averages only, none unknown: the result is held between
    runs for every node of the table, and a node's full statistics were most of the
    exporter's memory (and of a run's time) when a table holds many nodes."""
    start = now - window_seconds(hours, HOUR, "hours")
    key = (ctx.store, ctx.store.table)
    if state is not None and state.query[0] == key:
        query = state.query[1]
    else:
        query = _averages_query(ctx)  # composing it costs as much as running it
        if state is not None:
            state.query = (key, query)
    node_columns = tuple(column for _, _, _, column, _ in NODE_VALUES)
    container_columns = tuple(column for _, _, _, column, _ in CONTAINER_VALUES)
    with ctx.store.read() as cur:
        cur.execute(query, {"start": start, "now": now})
        rows = cur.fetchall()
    nodes: dict[str, NodeSummary] = {}
    for r in sorted(rows, key=lambda r: (r["node_name"], r["container_name"] or "")):
        if r["container_name"] is None:
            nodes[r["node_name"]] = {
                "node_name": r["node_name"],
                "samples": r["samples"],
                "metrics": _averages(r, node_columns),
                "containers": [],
            }
    for r in sorted(rows, key=lambda r: (r["node_name"], r["container_name"] or "")):
        if r["container_name"] is not None:
            entry = nodes.setdefault(
                r["node_name"],
                {"node_name": r["node_name"], "samples": 0, "metrics": {}, "containers": []},
            )
            container: ContainerSummary = {
                "container_name": r["container_name"],
                "samples": r["samples"],
                "metrics": _averages(r, container_columns),
            }
            entry["containers"].append(container)
    return {
        "generated_at": int(time.time()),
        "window": {"start": start, "end": now, "hours": hours},
        "nodes": [nodes[n] for n in sorted(nodes)],
    }


def _averages(row: dict[str, Any], columns: tuple[str, ...]) -> MetricStats:
    return {
        column: {"avg": avg}
        for column in columns
        if (avg := round_float(row[column], 4)) is not None
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
    incremental=CurrentState,
)


def newest_node_rows(result: CurrentResult) -> dict[str, int]:
    """node -> time of its newest node row: the order in which the series budget cuts
    whole nodes (the oldest first)."""
    return {node: last for node, (_, last) in result["spans"].items()}
