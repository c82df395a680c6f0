"""Alert thresholds learned from each node's own history.

Per node and metric, over the last `history_days` (node rows, values through `clean`):
P3 = p95, P2 = p99, P1 = median + `p1_robust_scales` x 1.4826 x MAD (a robust sd). For
mem_available_mb lower is worse: P3 = p5, P2 = p1, P1 = median - k x robust sd.

Then, in this order:
1. Monotone: P3 <= P2 <= P1 (>= for lower-is-worse), each level at least as strict as the
   one below it.
2. Sanity floor: a learned threshold is never below `floor_ratio` (0.5) x the static
   emergency level of the same priority (for free memory: never above the static level /
   `floor_ratio`, in MiB of the node's total). A node idle at 5 % CPU gets a CPU P1 of at
   least 47.5 %, not 8 %: dynamic thresholds flag "unusual for this node" only where the
   value also matters. Load uses load_per_cpu x the node's CPU count (ctx.cpu_count, else
   1); swap, which has no static level, uses `floor_ratio` x the SLI swap limit.
3. Physical limits: CPU and I/O wait <= 100 %, free memory >= 0.
Learned thresholds complement the static emergency levels; they are not capped by them.

Scaling: exact percentile_cont() sorts every history value per node and metric (two passes:
the median, then the median of deviations). That is kept while the estimated history rows
(counted over the window, so rows after `now` never change the choice) stay below
`max_exact_rows`; a larger history is read through TABLESAMPLE SYSTEM (block sampling,
REPEATABLE so thresholds do not jitter between runs) sized to about `max_exact_rows` rows.
Rows are appended in time order, so a sampled block holds a minute of the whole fleet and
the sample is spread over the whole history. Duplicate rows are not removed (as in the
rollups: a copy barely moves a percentile). Measured on the 14-node, 30-day test fleet:
see docs/performance.md and the final report.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, TypedDict

from psycopg import sql

from ..metricdef import gauge
from ..render import Text, when
from ..samples import THRESHOLD, Sample, sample
from .common import DAY, NODE_ROW, Context, clean, round_float
from .unit import Analysis, ResultView, Served


class Threshold(TypedDict):
    node_name: str
    metric: str
    priority: str
    threshold: float | None
    direction: str  # above or below
    basis: str
    learned: float | None
    static_floor: float | None
    floored: bool
    median: float | None
    robust_sd: float | None
    samples: int


class Insufficient(TypedDict):
    node_name: str
    metric: str
    samples: int


class ThresholdResult(TypedDict):
    history: dict[str, Any]
    thresholds: list[Threshold]
    insufficient_data: list[Insufficient]


ROBUST = 1.4826  # MAD x this = sd for normal data
# metric -> higher is worse
METRICS: dict[str, bool] = {
    "cpu_total_pct": True,
    "cpu_iowait_pct": True,
    "load_1m": True,
    "temperature_c": True,
    "mem_available_mb": False,
    "swap_used_mb": True,
}
UPPER_LIMIT = {"cpu_total_pct": 100.0, "cpu_iowait_pct": 100.0}

# The history's size decides exact or sampled. It is counted over the window itself (an
# index range scan on sample_time), never estimated from table statistics: those include
# rows after `now`, and the answer at `now` must not depend on them.
_COUNT_SQL = sql.SQL(
    "SELECT count(*) AS rows FROM {t} WHERE sample_time > %(start)s AND sample_time <= %(now)s"
    " AND {shard}"
)

_QUANTILES_SQL = sql.SQL(
    "WITH h AS MATERIALIZED (SELECT node_name, v.metric, v.x FROM {t} {sample}"
    " CROSS JOIN LATERAL (VALUES {values}) v(metric, x)"
    " WHERE sample_time > %(start)s AND sample_time <= %(now)s AND node_name IS NOT NULL"
    " AND {node} AND {shard} AND v.x IS NOT NULL),"
    " q AS (SELECT node_name, metric, count(*) AS n, percentile_cont(ARRAY[0.01, 0.05, 0.5,"
    " 0.95, 0.99]) WITHIN GROUP (ORDER BY x) AS p FROM h GROUP BY node_name, metric)"
    " SELECT q.node_name, q.metric, q.n, q.p, m.mad FROM q JOIN (SELECT h.node_name, h.metric,"
    " percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(h.x - q.p[3])) AS mad"
    " FROM h JOIN q USING (node_name, metric) GROUP BY h.node_name, h.metric) m"
    " USING (node_name, metric)"
)
WORK_MEM = "64MB"  # the two sorts of the history stay in memory, not in disk merges


def generate_alert_config(ctx: Context, *, now: int) -> ThresholdResult:
    """Thresholds P1..P3 per node and metric learned from the last `history_days`."""
    cfg = ctx.config.alerts
    start = now - int(cfg.history_days * DAY)
    with ctx.store.read(timeout=max(ctx.store.statement_timeout, 120)) as cur:
        percent = _sample_percent(cur, ctx, start, now, cfg.max_exact_rows)
        cur.execute("SELECT set_config('work_mem', %s, true)", (WORK_MEM,))
        cur.execute(_quantiles_sql(ctx, percent), {"start": start, "now": now})
        rows = cur.fetchall()
    thresholds: list[Threshold] = []
    insufficient: list[Insufficient] = []
    days = round_float(cfg.history_days, 3)
    totals = {r["node_name"]: r["p"][2] for r in rows if r["metric"] == "mem_total_mb"}
    for row in sorted(rows, key=lambda r: (r["node_name"], r["metric"])):
        if row["metric"] not in METRICS:
            continue
        row["mem_total"] = totals.get(row["node_name"])
        if row["n"] < cfg.min_samples * (percent or 100) / 100:
            insufficient.append(
                {"node_name": row["node_name"], "metric": row["metric"], "samples": row["n"]}
            )
            continue
        thresholds.extend(_levels(ctx, row, days))
    return {
        "history": {
            "start": start,
            "end": now,
            "days": days,
            "method": "exact" if percent is None else f"tablesample system {percent:.3g}%",
        },
        "thresholds": thresholds,
        "insufficient_data": insufficient,
    }


def _sample_percent(cur: Any, ctx: Context, start: int, now: int, budget: int) -> float | None:
    """None (read every row) or the TABLESAMPLE percent that reads about `budget` rows."""
    query = _COUNT_SQL.format(t=ctx.store.table, shard=ctx.store.shard_filter)
    cur.execute(query, {"start": start, "now": now})
    rows = cur.fetchone()["rows"]
    if rows <= budget:
        return None
    return round(max(0.01, min(100.0, 100.0 * budget / rows)), 2)


def _quantiles_sql(ctx: Context, percent: float | None) -> sql.Composed:
    values = sql.SQL(", ").join(
        sql.SQL("({}, {})").format(sql.Literal(m), clean(m)) for m in (*METRICS, "mem_total_mb")
    )
    sample = (
        sql.SQL("TABLESAMPLE SYSTEM ({}) REPEATABLE (0)").format(sql.Literal(percent))
        if percent is not None
        else sql.SQL("")
    )
    return _QUANTILES_SQL.format(
        t=ctx.store.table,
        sample=sample,
        values=values,
        node=NODE_ROW,
        shard=ctx.store.shard_filter,
    )


def _floors(ctx: Context, metric: str, mem_total: float | None) -> tuple[float, ...] | None:
    """Sanity floors (P3, P2, P1); for free memory they are ceilings (module doc)."""
    em, ratio = ctx.config.emergency, ctx.config.alerts.floor_ratio
    levels = {
        "cpu_total_pct": em.cpu_pct,
        "cpu_iowait_pct": em.iowait_pct,
        "temperature_c": em.temperature_c,
    }
    if metric in levels:
        lv = levels[metric]
        return (ratio * lv.p3, ratio * lv.p2, ratio * lv.p1)
    if metric == "load_1m":
        cpus = ctx.cpu_count or 1
        lv = em.load_per_cpu
        return (ratio * lv.p3 * cpus, ratio * lv.p2 * cpus, ratio * lv.p1 * cpus)
    if metric == "swap_used_mb":
        return (ratio * ctx.config.sli.swap_used_mb,) * 3
    if metric == "mem_available_mb" and mem_total and ratio > 0:
        lv = em.mem_available_pct
        return tuple(min(100.0, p / ratio) * mem_total / 100.0 for p in (lv.p3, lv.p2, lv.p1))
    return None


def _levels(ctx: Context, row: dict[str, Any], days: float | None) -> list[Threshold]:
    """The three thresholds of one node and metric, ordered, floored and clamped."""
    metric, worse_up = row["metric"], METRICS[row["metric"]]
    p01, p05, med, p95, p99 = (float(v) for v in row["p"])
    scale = ROBUST * float(row["mad"] or 0.0)
    k = ctx.config.alerts.p1_robust_scales
    if worse_up:
        learned = [p95, max(p99, p95), max(med + k * scale, p99, p95)]
    else:
        learned = [p05, min(p01, p05), min(med - k * scale, p01, p05)]
    floors = _floors(ctx, metric, row["mem_total"])
    final = []
    for i, value in enumerate(learned):
        if floors is not None:
            value = max(value, floors[i]) if worse_up else min(value, floors[i])
        value = min(value, UPPER_LIMIT.get(metric, math.inf))
        if not worse_up:
            value = max(0.0, value)
        final.append(value)
    bases = (
        f"p95 of {days:g} days" if worse_up else f"p5 of {days:g} days",
        f"p99 of {days:g} days" if worse_up else f"p1 of {days:g} days",
        f"median {'+' if worse_up else '-'} {k:g} x 1.4826 x MAD of {days:g} days",
    )
    return [
        {
            "node_name": row["node_name"],
            "metric": metric,
            "priority": priority,
            "threshold": round_float(final[i], 4),
            "direction": "above" if worse_up else "below",
            "basis": bases[i],
            "learned": round_float(learned[i], 4),
            "static_floor": round_float(floors[i], 4) if floors is not None else None,
            "floored": floors is not None
            and (final[i] != learned[i] and abs(final[i] - floors[i]) < 1e-9),
            "median": round_float(med, 4),
            "robust_sd": round_float(scale, 4),
            "samples": int(row["n"]),
        }
        for i, priority in enumerate(("P3", "P2", "P1"))
    ]


# --------------------------------------------------------------------------- served

LEARNED = gauge(
    "dynamic_threshold",
    "Alert threshold learned from the node's own history, in the metric's unit.",
    ("node", "metric", "priority"),
)


def to_samples(result: ThresholdResult, view: ResultView) -> Iterator[Sample]:
    for t in result["thresholds"]:
        if t["threshold"] is not None:
            yield sample(
                "dynamic_threshold",
                t["threshold"],
                THRESHOLD,
                0.0,
                node=t["node_name"],
                metric=t["metric"],
                priority=t["priority"][:2],
            )


def render_text(r: ThresholdResult, t: Text) -> None:
    h = r["history"]
    t.title(f"🔔 LEARNED ALERT THRESHOLDS - history {when(h['start'])} to {when(h['end'])}")
    t.table(
        ("node", "metric", "priority", "threshold"),
        ((x["node_name"], x["metric"], x["priority"], x["threshold"]) for x in r["thresholds"]),
    )


ANALYSIS = Analysis[ThresholdResult](
    name="alert-config",
    title="alert thresholds P1..P3 per node and metric learned from its own history",
    run=generate_alert_config,
    render_text=render_text,
    serve=Served(refresh_seconds=900, metrics=(LEARNED,), to_samples=to_samples),
    aliases=("thresholds",),
)
