"""Resource contention: which container dominates a node's CPU or memory while the node is
under pressure, which one grew into it, and which ones were squeezed.

Method (PostgreSQL aggregates over de-duplicated rows):

- Pressure, per node sample of the window: CPU pressure when node CPU > `cpu_pct` or I/O
  wait > `iowait_pct` (stalled CPU counts as contended CPU); memory pressure when free
  memory < `mem_available_pct` % of total. `pressure_fraction` is the share of the window's
  node samples under pressure: a node's own pressure, with or without containers.
- Matching: samplers do not stamp a container row and its node row with the same second.
  Each container row belongs to the nearest node row of its node, if that row is within
  half the node's interval (the median gap between its node rows); rows further away are
  not attributed. Several container rows matched to one node row are averaged.
- Share of a container = its use / the node's use, summed over the pressure samples: CPU
  share = container cpu_total_pct / node cpu_total_pct (both percent of the node's CPU),
  memory share = c_rss_mb / (mem_total_mb - mem_available_mb). `share_of_capacity` is the
  same use over the node's capacity (100 % CPU, mem_total_mb).
- "Before" = the calm (no pressure) samples of the window and of the `baseline_hours`
  before it. Shares move when a neighbour grows even if a container's own use did not, so
  growth and loss are judged on absolute use: `use_change` = mean use under pressure / mean
  use before - 1. A container grew when its use_change >= `victim_drop`; a victim is a
  container whose use fell by at least `victim_drop` (or stopped: no use left) while
  another container grew. The top grower is the container whose mean use grew the most.
- contention_score = pressure_fraction x concentration, where concentration is the
  largest share of the node's use held by one container. Host processes are not a
  container: a node without containers has pressure but scores 0 (no contention between
  containers), and its pressure is served as `perf_analyzer_node_pressure_ratio`.
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
    use: float | None  # mean use under pressure: CPU percent of the node, or RSS MiB
    use_before: float | None  # mean use in the calm samples
    use_change: float | None  # use / use_before - 1


class Contention(TypedDict):
    node_name: str
    resource: str  # cpu or memory
    contention_score: float  # between containers; 0 on a node without containers
    pressure_fraction: float | None  # the node's own pressure, containers or not
    concentration: float | None
    pressure_samples: int
    samples: int
    matched_rows: int  # container rows attributed to a node sample
    unmatched_rows: int  # container rows with no node row within half its interval
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

# Each container row goes to the nearest node row of its node (ties: the earlier), if that
# row lies within half the node's median interval. The previous and next node times come
# from running max/min over the node's rows and container rows in time order (a sort, not a
# join of every container row with every node row). Rows matched to one node row are
# averaged, so a container sampled more often than its node is not counted twice.
_MATCHED = sql.SQL(
    "half AS (SELECT node_name, percentile_cont(0.5) WITHIN GROUP (ORDER BY dt) / 2.0 AS half"
    " FROM (SELECT node_name, sample_time - lag(sample_time) OVER"
    " (PARTITION BY node_name ORDER BY sample_time) AS dt FROM f) d"
    " WHERE dt > 0 GROUP BY node_name),"
    " u AS (SELECT node_name, NULL::text AS container_name, sample_time, NULL::float8 AS cpu,"
    " NULL::float8 AS rss, false AS is_c, sample_time AS nt FROM f"
    " UNION ALL SELECT node_name, container_name, sample_time, {ccpu}, {rss}, true, NULL"
    " FROM {rows} r WHERE {container}),"
    " w AS (SELECT node_name, container_name, sample_time, cpu, rss, is_c,"
    " max(nt) OVER (PARTITION BY node_name ORDER BY sample_time, is_c"
    " ROWS UNBOUNDED PRECEDING) AS prev_t,"
    " min(nt) OVER (PARTITION BY node_name ORDER BY sample_time DESC, is_c"
    " ROWS UNBOUNDED PRECEDING) AS next_t"
    " FROM u),"
    " near AS (SELECT w.*, CASE WHEN next_t IS NULL"
    " OR (prev_t IS NOT NULL AND sample_time - prev_t <= next_t - sample_time)"
    " THEN prev_t ELSE next_t END AS nt FROM w WHERE is_c),"
    " m AS (SELECT near.node_name, container_name, near.nt,"
    " coalesce(abs(near.sample_time - near.nt) <= coalesce(half.half, 0), false) AS ok,"
    " avg(cpu) AS cpu, avg(rss) AS rss, count(*) AS n"
    " FROM near LEFT JOIN half ON half.node_name = near.node_name"
    " GROUP BY near.node_name, container_name, near.nt, ok)"
)

# Container use over the node samples it matched (parameters as _FLAGGED).
_CONTAINER_SQL = sql.SQL(
    "WITH f AS ({flagged}), {matched} SELECT m.node_name, m.container_name,"
    " sum(m.n) FILTER (WHERE m.ok) AS matched, sum(m.n) FILTER (WHERE NOT m.ok) AS unmatched,"
    " sum(m.cpu) FILTER (WHERE f.inw AND f.cpu_p AND f.cpu IS NOT NULL) AS cpu_use_p,"
    " sum(m.cpu) FILTER (WHERE NOT f.cpu_p AND f.cpu IS NOT NULL) AS cpu_use_b,"
    " avg(m.cpu) FILTER (WHERE f.inw AND f.cpu_p) AS cpu_mean_p,"
    " avg(m.cpu) FILTER (WHERE NOT f.cpu_p) AS cpu_mean_b,"
    " sum(m.rss) FILTER (WHERE f.inw AND f.mem_p AND f.used IS NOT NULL) AS mem_use_p,"
    " sum(m.rss) FILTER (WHERE NOT f.mem_p AND f.used IS NOT NULL) AS mem_use_b,"
    " avg(m.rss) FILTER (WHERE f.inw AND f.mem_p) AS mem_mean_p,"
    " avg(m.rss) FILTER (WHERE NOT f.mem_p) AS mem_mean_b"
    " FROM m LEFT JOIN f ON f.node_name = m.node_name AND f.sample_time = m.nt AND m.ok"
    " GROUP BY m.node_name, m.container_name"
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
    matched = _MATCHED.format(
        ccpu=clean("cpu_total_pct"),
        rss=clean("c_rss_mb"),
        rows=window_rows(ctx.store, ("cpu_total_pct", "c_rss_mb")),
        container=CONTAINER_ROW,
    )
    return template.format(flagged=flagged, matched=matched)


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
            "victim_drop": cfg.victim_drop,
        },
        "nodes": out,
    }


def _ratio(num: Any, den: Any) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return min(1.0, max(0.0, float(num) / float(den)))


def _change(after: Any, before: Any) -> float | None:
    """Relative change of a mean use; None without a positive use before."""
    if after is None or before is None or before <= 0:
        return None
    return float(after) / float(before) - 1.0


def victims_and_grower(
    changes: dict[str, float | None], grown: dict[str, float], drop: float
) -> tuple[list[str], str | None]:
    """Victims (use fell by `drop` or more while another container grew by `drop` or more)
    and the top grower (largest growth of mean use), from each container's relative
    `changes` and absolute growth `grown`. A container whose use did not move is neither."""
    growers = [n for n, c in changes.items() if c is not None and c >= drop and grown[n] > 0]
    top = max(growers, key=lambda n: (grown[n], n)) if growers else None
    victims = sorted(
        n
        for n, c in changes.items()
        if c is not None and c <= -drop and any(g != n for g in growers)
    )
    return victims, top


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
        if not c["matched"]:
            continue
        share = _ratio(c[f"{key}_use_p"], node[f"{key}_use_p"]) if pressure else None
        before = _ratio(c[f"{key}_use_b"], node[f"{key}_use_b"])
        change = share - before if share is not None and before is not None else None
        of_capacity = (
            _ratio(c[f"{key}_use_p"], capacity * n_p) if pressure and capacity and n_p else None
        )
        mean_p = c[f"{key}_mean_p"] if pressure else None
        if pressure and mean_p is None and c[f"{key}_mean_b"]:
            mean_p = 0.0  # present before, no use left under pressure: it stopped
        rows.append(
            {
                "container_name": c["container_name"],
                "share": round_float(share),
                "share_before": round_float(before),
                "share_change": round_float(change),
                "share_of_capacity": round_float(of_capacity),
                "use": round_float(mean_p),
                "use_before": round_float(c[f"{key}_mean_b"]),
                "use_change": round_float(_change(mean_p, c[f"{key}_mean_b"])),
            }
        )
    rows.sort(key=lambda r: (-(r["share"] or 0.0), r["container_name"]))
    attributed = sum(r["share"] or 0.0 for r in rows)
    unattributed = max(0.0, 1.0 - attributed) if pressure else None
    top = rows[0] if rows and rows[0]["share"] else None
    concentration = (top["share"] or 0.0) if top else 0.0
    fraction = pressure / samples if samples else 0.0
    victims, grower = victims_and_grower(
        {r["container_name"]: r["use_change"] for r in rows},
        {r["container_name"]: (r["use"] or 0.0) - (r["use_before"] or 0.0) for r in rows},
        victim_drop,
    )
    return {
        "node_name": node["node_name"],
        "resource": resource,
        "contention_score": round_float(fraction * concentration) or 0.0,
        "pressure_fraction": round_float(fraction),
        "concentration": round_float(concentration) if pressure else None,
        "pressure_samples": pressure,
        "samples": samples,
        "matched_rows": sum(int(c["matched"] or 0) for c in containers),
        "unmatched_rows": sum(int(c["unmatched"] or 0) for c in containers),
        "top_consumer": top["container_name"] if top else None,
        "top_grower": grower,
        "victims": victims,
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


PRESSURE = gauge(
    "node_pressure_ratio",
    "Share of the contention window a node spent under pressure on the resource, 0..1,"
    " with or without containers.",
    ("node", "resource"),
    unit="percentunit",
)


def to_samples(result: ContentionResult, view: ResultView) -> Iterator[Sample]:
    for n in result["nodes"]:
        labels = {"node": n["node_name"], "resource": n["resource"]}
        yield sample("contention_score", n["contention_score"], **labels)
        yield sample("node_pressure_ratio", n["pressure_fraction"] or 0.0, **labels)


def render_text(r: ContentionResult, t: Text) -> None:
    t.title("⚔️  RESOURCE CONTENTION")
    t.table(
        ("node", "resource", "pressure", "score", "top consumer", "share", "victims"),
        (
            (
                n["node_name"],
                n["resource"],
                pct(n["pressure_fraction"]),
                n["contention_score"],
                n["top_consumer"],
                pct(
                    max(
                        (c["share"] for c in n.get("containers", []) if c["share"] is not None),
                        default=None,
                    )
                ),
                ", ".join(n["victims"]) or None,
            )
            for n in r["nodes"]
            if n["contention_score"] or n["pressure_samples"]
        ),
        lambda row: "red" if row[3] != "-" and float(row[3]) >= 0.5 else None,
    )


ANALYSIS = Analysis[ContentionResult](
    name="contention",
    title="which container dominates a node's CPU or memory while the node is under pressure",
    run=resource_contention_analysis,
    render_text=render_text,
    window=Window("hours", lambda c: 1, served=lambda c: c.contention.window_hours),
    serve=Served(refresh_seconds=60, metrics=(SCORE, PRESSURE), to_samples=to_samples),
)
