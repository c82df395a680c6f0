"""Metrics summary: per node (and container) average, maximum and 95th percentile of every
metric over the window, for export to other systems."""

from __future__ import annotations

import time
from typing import Any, TypedDict

from psycopg import sql

from ..render import Text
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
from .unit import Analysis, Window

STATS = ("avg", "max", "p95")

# column -> {avg, max, p95: float | None, samples: int}
MetricStats = dict[str, dict[str, Any]]


class ContainerSummary(TypedDict):
    container_name: str
    samples: int
    metrics: MetricStats


class NodeSummary(TypedDict):
    node_name: str
    samples: int
    metrics: MetricStats
    containers: list[ContainerSummary]


class SummaryWindow(TypedDict):
    start: int
    end: int
    hours: float


class SummaryResult(TypedDict):
    generated_at: int
    window: SummaryWindow
    nodes: list[NodeSummary]


def _query(ctx: Context, node: bool) -> sql.Composed:
    metrics = metric_columns(node)
    aggregates = sql.SQL(", ").join(
        sql.SQL(
            "avg({v}) AS {avg}, max({v}) AS {max},"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY {v}) AS {p95}, count({v}) AS {n}"
        ).format(
            v=clean(m),
            avg=sql.Identifier(f"{m}:avg"),
            max=sql.Identifier(f"{m}:max"),
            p95=sql.Identifier(f"{m}:p95"),
            n=sql.Identifier(f"{m}:samples"),
        )
        for m in metrics
    )
    return sql.SQL(
        "SELECT node_name, container_name, count(*) AS samples, {aggs}"
        " FROM {rows} w WHERE {which} GROUP BY node_name, container_name"
        " ORDER BY node_name, container_name"
    ).format(
        aggs=aggregates,
        rows=window_rows(ctx.store, metrics),
        which=NODE_ROW if node else CONTAINER_ROW,
    )


def export_metrics_summary(ctx: Context, *, hours: float, now: int) -> SummaryResult:
    """{nodes: [{node_name, samples, metrics: {column: {avg, max, p95, samples}},
    containers: [...]}], generated_at, window}."""
    start = now - window_seconds(hours, HOUR, "hours")
    params = {"start": start, "now": now}
    with ctx.store.read() as cur:
        cur.execute(_query(ctx, node=True), params)
        node_rows = cur.fetchall()
        cur.execute(_query(ctx, node=False), params)
        container_rows = cur.fetchall()
    nodes: dict[str, NodeSummary] = {
        r["node_name"]: {
            "node_name": r["node_name"],
            "samples": r["samples"],
            "metrics": _metrics(r, metric_columns(True)),
            "containers": [],
        }
        for r in node_rows
    }
    for r in container_rows:
        entry = nodes.setdefault(
            r["node_name"],
            {"node_name": r["node_name"], "samples": 0, "metrics": {}, "containers": []},
        )
        entry["containers"].append(
            {
                "container_name": r["container_name"],
                "samples": r["samples"],
                "metrics": _metrics(r, metric_columns(False)),
            }
        )
    return {
        "generated_at": int(time.time()),
        "window": {"start": start, "end": now, "hours": hours},
        "nodes": [nodes[n] for n in sorted(nodes)],
    }


def _metrics(row: dict[str, Any], metrics: tuple[str, ...]) -> MetricStats:
    return {
        m: {s: round_float(row[f"{m}:{s}"], 4) for s in STATS} | {"samples": row[f"{m}:samples"]}
        for m in metrics
    }


def render_text(r: SummaryResult, t: Text) -> None:
    t.title(f"📋 METRICS SUMMARY - last {r['window']['hours']:g} h")
    for n in r["nodes"]:
        t.line(f"{n['node_name']} ({n['samples']} samples)")
        t.table(
            ("metric", "avg", "max", "p95"),
            ((m, s["avg"], s["max"], s["p95"]) for m, s in n["metrics"].items()),
        )


ANALYSIS = Analysis[SummaryResult](
    name="summary",
    title="average, maximum and 95th percentile of every metric per node and container",
    run=export_metrics_summary,
    render_text=render_text,
    window=Window("hours", lambda c: 1),
)
