"""Resource contention: which container dominates a node's CPU or memory while the node is
under pressure, which one grew into it, and which ones were squeezed.

Method (PostgreSQL aggregates over de-duplicated rows, container rows joined to their
node's row on (node_name, sample_time)):

- Pressure, per node sample of the window: CPU pressure when node CPU > `cpu_pct` or I/O
  wait > `iowait_pct` (stalled CPU counts as contended CPU); memory pressure when free
  memory < `mem_available_pct` % of total.
- Share of a container = its use / the node's use, summed over the pressure samples: CPU
  share = container cpu_total_pct / node cpu_total_pct (both percent of the node's CPU),
  memory share = c_rss_mb / (mem_total_mb - mem_available_mb). `share_of_capacity` is the
  same use over the node's capacity (100 % CPU, mem_total_mb).
- "Before" = the calm (no pressure) samples of the window and of the `baseline_hours`
  before it; `share_change` = share during pressure - share before. The top grower has the
  largest positive change; victims are containers whose share fell by >= `victim_drop`.
- contention_score = pressure_fraction x concentration, where pressure_fraction is the
  share of the window's node samples under pressure and concentration is the largest share
  held by a single consumer, counting the part no container accounts for (host processes)
  as one consumer. Both are in 0..1, so the score is: 0 without pressure, 1 when one
  consumer holds the whole resource for the whole window; a node without container rows
  scores its pressure fraction (everything is one unattributed consumer).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypedDict

from psycopg import sql

from ..metricdef import gauge
from ..render import Text, pct
from ..samples import Sample, sample
from .common import (
    CONTAINER_ROW,
    HOUR,
    NODE_ROW,
    Context,
    clean,
    round_float,
    window_rows,
    window_seconds,
)
from .unit import Analysis, ResultView, Served, Window

RESOURCES = ("cpu", "memory")


class ContainerShare(TypedDict):
    container_name: str
    share: float | None  # of the node's use while under pressure
    share_before: float | None
    share_change: float | None
    share_of_capacity: float | None


class Contention(TypedDict):
    node_name: str
    resource: str  # cpu or memory
    contention_score: float
    pressure_fraction: float | None
    concentration: float | None
    pressure_samples: int
    samples: int
    top_consumer: str | None
    top_grower: str | None
    victims: list[str]
    unattributed_share: float | None
    containers: list[ContainerShare]
    window: dict[str, int]


class ContentionResult(TypedDict):
    window: dict[str, int]
    thresholds: dict[str, float]
    nodes: list[Contention]


_NODE_COLUMNS = ("cpu_total_pct", "cpu_iowait_pct", "mem_available_mb", "mem_total_mb")

# Node samples with their use and pressure flags (parameters: start, now, wstart, limits).
_FLAGGED = sql.SQL(
    "SELECT node_name, sample_time, sample_time > %(wstart)s AS inw, cpu,"
    " total, total - avail AS used,"
    " coalesce(cpu > %(cpu_pct)s, false) OR coalesce(iowait > %(iowait_pct)s, false) AS cpu_p,"
    " coalesce(avail < total * %(mem_pct)s / 100.0, false) AS mem_p"
    " FROM (SELECT node_name, sample_time, {cpu} AS cpu, {iowait} AS iowait,"
    " {avail} AS avail, {total} AS total FROM {rows} r WHERE {node}) n"
)

_NODE_SQL = sql.SQL(
    "WITH f AS ({flagged}) SELECT node_name,"
    " count(*) FILTER (WHERE inw) AS samples,"
    " count(*) FILTER (WHERE inw AND cpu_p) AS cpu_pressure,"
    " count(*) FILTER (WHERE inw AND mem_p) AS mem_pressure,"
    " sum(cpu) FILTER (WHERE inw AND cpu_p) AS cpu_use_p,"
    " sum(cpu) FILTER (WHERE NOT cpu_p) AS cpu_use_b,"
    " count(cpu) FILTER (WHERE inw AND cpu_p) AS cpu_n_p,"
    " sum(used) FILTER (WHERE inw AND mem_p) AS mem_use_p,"
    " sum(used) FILTER (WHERE NOT mem_p) AS mem_use_b,"
    " count(used) FILTER (WHERE inw AND mem_p) AS mem_n_p,"
    " avg(total) FILTER (WHERE inw) AS mem_total"
    " FROM f GROUP BY node_name"
)

# Container use summed over the same node samples (a sample without the node's row has no
# pressure flag and is skipped).
_CONTAINER_SQL = sql.SQL(
    "WITH f AS ({flagged}) SELECT c.node_name, c.container_name,"
    " sum(c.cpu) FILTER (WHERE f.inw AND f.cpu_p AND f.cpu IS NOT NULL) AS cpu_use_p,"
    " sum(c.cpu) FILTER (WHERE NOT f.cpu_p AND f.cpu IS NOT NULL) AS cpu_use_b,"
    " sum(c.rss) FILTER (WHERE f.inw AND f.mem_p AND f.used IS NOT NULL) AS mem_use_p,"
    " sum(c.rss) FILTER (WHERE NOT f.mem_p AND f.used IS NOT NULL) AS mem_use_b"
    " FROM (SELECT node_name, container_name, sample_time, {ccpu} AS cpu, {rss} AS rss"
    " FROM {rows} r WHERE {container}) c"
    " JOIN f ON f.node_name = c.node_name AND f.sample_time = c.sample_time"
    " GROUP BY c.node_name, c.container_name"
)


def _sql(ctx: Context, template: sql.SQL) -> sql.Composed:
    flagged = _FLAGGED.format(
        cpu=clean("cpu_total_pct"),
        iowait=clean("cpu_iowait_pct"),
        avail=clean("mem_available_mb"),
        total=clean("mem_total_mb"),
        rows=window_rows(ctx.store, _NODE_COLUMNS),
        node=NODE_ROW,
    )
    return template.format(
        flagged=flagged,
        ccpu=clean("cpu_total_pct"),
        rss=clean("c_rss_mb"),
        rows=window_rows(ctx.store, ("cpu_total_pct", "c_rss_mb")),
        container=CONTAINER_ROW,
    )


def resource_contention_analysis(ctx: Context, *, hours: float, now: int) -> ContentionResult:
    """Contention per node and resource over the last `hours` before `now`."""
    cfg = ctx.config.contention
    seconds = window_seconds(hours, HOUR, "hours")
    wstart = now - seconds
    params = {
        "start": wstart - int(cfg.baseline_hours * HOUR),
        "now": now,
        "wstart": wstart,
        "cpu_pct": cfg.cpu_pct,
        "iowait_pct": cfg.iowait_pct,
        "mem_pct": cfg.mem_available_pct,
    }
    with ctx.store.read() as cur:
        cur.execute(_sql(ctx, _NODE_SQL), params)
        nodes = cur.fetchall()
        cur.execute(_sql(ctx, _CONTAINER_SQL), params)
        containers = cur.fetchall()
    by_node: dict[str, list[dict[str, Any]]] = {}
    for c in containers:
        by_node.setdefault(c["node_name"], []).append(c)
    window = {"start": wstart, "end": now, "baseline_start": int(params["start"])}
    out = [
        _entry(n, by_node.get(n["node_name"], []), resource, cfg.victim_drop, window)
        for n in sorted(nodes, key=lambda r: r["node_name"])
        if n["samples"]
        for resource in RESOURCES
    ]
    return {
        "window": window,
        "thresholds": {
            "cpu_pct": cfg.cpu_pct,
            "iowait_pct": cfg.iowait_pct,
            "mem_available_pct": cfg.mem_available_pct,
        },
        "nodes": out,
    }


def _ratio(num: Any, den: Any) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return min(1.0, max(0.0, float(num) / float(den)))


def _entry(
    node: dict[str, Any],
    containers: list[dict[str, Any]],
    resource: str,
    victim_drop: float,
    window: dict[str, int],
) -> Contention:
    """One node and resource: shares, aggressor, victims and the score (module doc)."""
    key = "cpu" if resource == "cpu" else "mem"
    pressure = node[f"{key}_pressure"] or 0
    samples = node["samples"]
    capacity = 100.0 if resource == "cpu" else node["mem_total"]
    n_p = node[f"{key}_n_p"] or 0
    rows: list[ContainerShare] = []
    for c in containers:
        share = _ratio(c[f"{key}_use_p"], node[f"{key}_use_p"]) if pressure else None
        before = _ratio(c[f"{key}_use_b"], node[f"{key}_use_b"])
        change = share - before if share is not None and before is not None else None
        of_capacity = (
            _ratio(c[f"{key}_use_p"], capacity * n_p) if pressure and capacity and n_p else None
        )
        rows.append(
            {
                "container_name": c["container_name"],
                "share": round_float(share),
                "share_before": round_float(before),
                "share_change": round_float(change),
                "share_of_capacity": round_float(of_capacity),
            }
        )
    rows.sort(key=lambda r: (-(r["share"] or 0.0), r["container_name"]))
    attributed = sum(r["share"] or 0.0 for r in rows)
    unattributed = max(0.0, 1.0 - attributed) if pressure else None
    top = rows[0] if rows and rows[0]["share"] else None
    concentration = max((top["share"] or 0.0) if top else 0.0, unattributed or 0.0)
    fraction = pressure / samples if samples else 0.0
    growers = [r for r in rows if (r["share_change"] or 0.0) > 0]
    grower = max(growers, key=lambda r: r["share_change"] or 0.0) if growers else None
    return {
        "node_name": node["node_name"],
        "resource": resource,
        "contention_score": round_float(fraction * concentration) or 0.0,
        "pressure_fraction": round_float(fraction),
        "concentration": round_float(concentration) if pressure else None,
        "pressure_samples": pressure,
        "samples": samples,
        "top_consumer": top["container_name"] if top else None,
        "top_grower": grower["container_name"] if grower else None,
        "victims": [
            r["container_name"]
            for r in rows
            if r["share_change"] is not None and r["share_change"] <= -victim_drop
        ],
        "unattributed_share": round_float(unattributed),
        "containers": rows,
        "window": window,
    }


# --------------------------------------------------------------------------- served

SCORE = gauge(
    "contention_score",
    "Resource contention between a node's containers, 0..1.",
    ("node", "resource"),
    unit="percentunit",
)


def to_samples(result: ContentionResult, view: ResultView) -> Iterator[Sample]:
    for n in result["nodes"]:
        yield sample(
            "contention_score", n["contention_score"], node=n["node_name"], resource=n["resource"]
        )


def render_text(r: ContentionResult, t: Text) -> None:
    t.title("⚔️  RESOURCE CONTENTION")
    t.table(
        ("node", "resource", "score", "top consumer", "share"),
        (
            (
                n["node_name"],
                n["resource"],
                n["contention_score"],
                n["top_consumer"],
                pct(
                    max(
                        (c["share"] for c in n.get("containers", []) if c["share"] is not None),
                        default=None,
                    )
                ),
            )
            for n in r["nodes"]
            if n["contention_score"]
        ),
        lambda row: "red" if row[2] != "-" and float(row[2]) >= 0.5 else None,
    )


ANALYSIS = Analysis[ContentionResult](
    name="contention",
    title="which container dominates a node's CPU or memory while the node is under pressure",
    run=resource_contention_analysis,
    render_text=render_text,
    window=Window("hours", lambda c: 1, served=lambda c: c.contention.window_hours),
    serve=Served(refresh_seconds=60, metrics=(SCORE,), to_samples=to_samples),
)
