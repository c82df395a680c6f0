"""Alert thresholds learned from each node's own seasonal history.

Per node and metric, over the last `history_days` (node rows, values through `clean`):

- Incident hours are left out: an hour in which any sample of the metric is beyond the
  static P1 level (an emergency the static rules page for) does not teach what is normal.
- Seasonal baseline: the median per hour of day in `timezone` (DST-correct), or per hour of
  week when `history_days` >= 21 and the node has three weeks of history. The baseline of a
  bucket is the worst of its own median and its two neighbours', which absorbs a peak that
  moves by an hour (DST, a late batch job) and the up-to-`refresh` lag of the served value.
- Scale: a robust sd (1.4826 x MAD) of the residuals from the bucket medians, pooled over
  every bucket, so a daily cycle is not mistaken for noise.
- P3 = baseline + `p3_robust_scales` sd + margin, P2 = baseline + `p2_robust_scales` sd +
  margin (minus for free memory). Margin = 2 standard errors of a bucket median,
  2 x 1.2533 x sd / sqrt(days in the bucket): samples of one hour are autocorrelated, so a
  bucket holds about one independent value per day, not one per sample.
- P1 = the highest baseline + `p1_robust_scales` sd, never below the static P1.

Safe ranges, in this order: P3 and P2 may tighten the static level of the same priority but
never loosen it, and never go below `floor_ratio` x the static level (free memory: never
below the static level, never above static / `floor_ratio`). P1 is never below the static P1
(free memory: never above it). A level that could never fire (CPU or I/O wait at 100 %, free
memory at 0) is not learned at all: the result keeps it with `threshold` None and the static
rules stay the only ones. Load levels are load_per_cpu x the node's CPU count (configured,
else estimated from the data); a node without a count has no learned load levels. Swap has
no static levels, so no learned ones.

Served in base units (CPU and I/O wait as ratios 0..1, free memory in bytes, load, degrees
Celsius) as `perf_analyzer_dynamic_threshold{node, metric, level}`: the level of the bucket
that holds `now`. The alert rules compare the live series with it, so they need no per-node
constants.

Scaling: exact percentile_cont() sorts every history value per node, metric and bucket (two
passes: the medians, then the median of residuals). That is kept while the history rows
(counted over the window, so rows after `now` never change the choice) stay below
`max_exact_rows`; a larger history is read through TABLESAMPLE SYSTEM (block sampling,
REPEATABLE so thresholds do not jitter between runs) sized to about `max_exact_rows` rows.
Rows are appended in time order, so a sampled block holds a minute of the whole fleet and
the sample is spread over the whole history.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any, TypedDict
from zoneinfo import ZoneInfo

import numpy as np
from psycopg import sql

from ..metricdef import gauge
from ..render import Text, when
from ..samples import THRESHOLD, Sample, sample
from .common import DAY, HOUR, NODE_ROW, Context, clean, round_float
from .hosts import cpu_count_of, node_spans
from .unit import Analysis, ResultView, Served


class Threshold(TypedDict):
    node_name: str
    metric: str
    level: str  # p1, p2, p3
    threshold: float | None  # at `now`, base units; None: not learned (static rules only)
    direction: str  # above or below
    basis: str
    seasonality: str  # hour-of-day or hour-of-week
    profile: list[float | None] | None  # per bucket (P3, P2); None for P1
    learned: float | None  # before the safe range, at `now`
    static: float  # the static level of the same priority, base units
    limited_by: str | None  # static, floor or limit when the safe range moved the value
    robust_sd: float | None
    samples: int
    incident_hours: int


class Insufficient(TypedDict):
    node_name: str
    metric: str
    samples: int


class ThresholdResult(TypedDict):
    history: dict[str, Any]
    thresholds: list[Threshold]
    insufficient_data: list[Insufficient]


ROBUST = 1.4826  # MAD x this = sd for normal data
MEDIAN_SE = 1.2533  # standard error of a median = this x sd / sqrt(n) for normal data
MARGIN_SE = 2.0  # standard errors of the bucket median added to P3 and P2
WEEKLY_DAYS = 21  # history needed for hour-of-week buckets
MIB = 1048576.0
# metric -> (higher is worse, factor from the table's unit to the base unit)
METRICS: dict[str, tuple[bool, float]] = {
    "cpu_total_pct": (True, 0.01),
    "cpu_iowait_pct": (True, 0.01),
    "load_1m": (True, 1.0),
    "temperature_c": (True, 1.0),
    "mem_available_mb": (False, MIB),
}
UPPER_LIMIT = {"cpu_total_pct": 1.0, "cpu_iowait_pct": 1.0}  # a level here never fires
LEVELS = ("p3", "p2", "p1")

# The history's size decides exact or sampled. It is counted over the window itself (an
# index range scan on sample_time), never estimated from table statistics: those include
# rows after `now`, and the answer at `now` must not depend on them.
_COUNT_SQL = sql.SQL(
    "SELECT count(*) AS rows FROM {t} WHERE sample_time > %(start)s AND sample_time <= %(now)s"
    " AND {shard}"
)

# h: one row per sample and metric, with its UTC hour, its bucket and whether it is beyond
# the static P1. The bucket (local hour of day, or of week for the nodes in %(weekly)s) is
# looked up by UTC hour in arrays Python fills from zoneinfo, so no row converts a time
# zone. hours: per node, metric and UTC hour, whether it is an incident hour. ok: the
# samples of the other hours. i: incident hours per node and metric, grouped once (a
# subquery per node and metric would scan `hours` once each: quadratic in nodes).
_LEVELS_SQL = sql.SQL(
    "WITH h AS MATERIALIZED (SELECT node_name, v.metric, v.x, v.bad, sample_time / 3600 AS hr,"
    " CASE WHEN node_name = ANY(%(weekly)s) THEN (%(how)s::int[])[sample_time / 3600 - %(hr0)s]"
    " ELSE (%(hod)s::int[])[sample_time / 3600 - %(hr0)s] END AS bucket"
    " FROM {t} {sample} CROSS JOIN LATERAL (VALUES {values}) v(metric, x, bad)"
    " WHERE sample_time > %(start)s AND sample_time <= %(now)s AND node_name IS NOT NULL"
    " AND {node} AND {shard} AND v.x IS NOT NULL),"
    " hours AS MATERIALIZED (SELECT node_name, metric, hr, bucket,"
    " coalesce(bool_or(bad), false) AS bad FROM h GROUP BY node_name, metric, hr, bucket),"
    " ok AS MATERIALIZED (SELECT h.node_name, h.metric, h.x, h.bucket FROM h WHERE NOT EXISTS"
    " (SELECT FROM hours i WHERE i.bad AND i.node_name = h.node_name AND i.metric = h.metric"
    " AND i.hr = h.hr)),"
    " b AS (SELECT node_name, metric, bucket, percentile_cont(0.5) WITHIN GROUP (ORDER BY x)"
    " AS med FROM ok GROUP BY node_name, metric, bucket),"
    " d AS (SELECT node_name, metric, bucket, count(*) FILTER (WHERE NOT bad) AS days"
    " FROM hours GROUP BY node_name, metric, bucket),"
    " s AS (SELECT ok.node_name, ok.metric, count(*) AS n,"
    " percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(ok.x - b.med)) AS mad"
    " FROM ok JOIN b USING (node_name, metric, bucket) GROUP BY ok.node_name, ok.metric),"
    " i AS (SELECT node_name, metric, count(*) AS n FROM hours WHERE bad GROUP BY 1, 2)"
    " SELECT s.node_name, s.metric, s.n, s.mad, coalesce(i.n, 0) AS incident_hours,"
    " array_agg(b.bucket ORDER BY b.bucket) AS buckets,"
    " array_agg(b.med ORDER BY b.bucket) AS medians,"
    " array_agg(d.days ORDER BY b.bucket) AS days"
    " FROM s JOIN b USING (node_name, metric) JOIN d USING (node_name, metric, bucket)"
    " LEFT JOIN i USING (node_name, metric)"
    " GROUP BY s.node_name, s.metric, s.n, s.mad, i.n"
)
WORK_MEM = "64MB"  # the sorts of the history stay in memory, not in disk merges


def generate_alert_config(ctx: Context, *, now: int) -> ThresholdResult:
    """Seasonal thresholds P1..P3 per node and metric; see the module docstring."""
    cfg = ctx.config.alerts
    start = now - int(cfg.history_days * DAY)
    cpus = _cpu_counts(ctx, now)
    weekly = (
        [n for n, (first, _) in node_spans(ctx, now).items() if first <= now - WEEKLY_DAYS * DAY]
        if cfg.history_days >= WEEKLY_DAYS
        else []
    )
    zone = ZoneInfo(cfg.timezone)
    hr0 = start // HOUR - 1  # array index 1 is the first UTC hour of the window
    hod, how = bucket_arrays(hr0 + 1, now // HOUR, zone)
    params = {"start": start, "now": now, "weekly": weekly, "hr0": hr0, "hod": hod, "how": how}
    with ctx.store.read(timeout=max(ctx.store.statement_timeout, 120)) as cur:
        percent = _sample_percent(cur, ctx, start, now, cfg.max_exact_rows)
        cur.execute("SELECT set_config('work_mem', %s, true)", (WORK_MEM,))
        # the small tables (medians, incident hours) are hashed; a merge join would sort the
        # whole history to disk once more
        cur.execute("SELECT set_config('enable_mergejoin', 'off', true)")
        cur.execute(_levels_sql(ctx, percent, cpus), params)
        rows = cur.fetchall()
    totals = {r["node_name"]: _median(r["medians"]) for r in rows if r["metric"] == "mem_total_mb"}
    thresholds: list[Threshold] = []
    insufficient: list[Insufficient] = []
    for row in sorted(rows, key=lambda r: (r["node_name"], r["metric"])):
        if row["metric"] not in METRICS:
            continue
        if row["n"] < cfg.min_samples * (percent or 100) / 100:
            insufficient.append(
                {"node_name": row["node_name"], "metric": row["metric"], "samples": row["n"]}
            )
            continue
        static = _static(ctx, row["metric"], cpus.get(row["node_name"]), totals)
        if static is not None:
            thresholds.extend(_levels(ctx, row, static(row["node_name"]), zone, now))
    return {
        "history": {
            "start": start,
            "end": now,
            "days": round_float(cfg.history_days, 3),
            "timezone": cfg.timezone,
            "method": "exact" if percent is None else f"tablesample system {percent:.3g}%",
        },
        "thresholds": thresholds,
        "insufficient_data": insufficient,
    }


def _cpu_counts(ctx: Context, now: int) -> dict[str, int]:
    if ctx.cpu_count:
        return {n: ctx.cpu_count for n in node_spans(ctx, now)}
    return cpu_count_of(ctx, now)


def _median(values: list[Any]) -> float | None:
    finite = [float(v) for v in values if v is not None]
    return float(np.median(finite)) if finite else None


def _sample_percent(cur: Any, ctx: Context, start: int, now: int, budget: int) -> float | None:
    """None (read every row) or the TABLESAMPLE percent that reads about `budget` rows."""
    query = _COUNT_SQL.format(t=ctx.store.table, shard=ctx.store.shard_filter)
    cur.execute(query, {"start": start, "now": now})
    rows = cur.fetchone()["rows"]
    if rows <= budget or ctx.store.columns:  # a mapped table is a subquery: no TABLESAMPLE
        return None
    return round(max(0.01, min(100.0, 100.0 * budget / rows)), 2)


def _levels_sql(ctx: Context, percent: float | None, cpus: dict[str, int]) -> sql.Composed:
    """The history query, each metric with its test for "beyond the static P1"."""
    em = ctx.config.emergency
    lit = sql.Literal
    beyond = {
        "cpu_total_pct": sql.SQL("{} > {}").format(clean("cpu_total_pct"), lit(em.cpu_pct.p1)),
        "cpu_iowait_pct": sql.SQL("{} > {}").format(clean("cpu_iowait_pct"), lit(em.iowait_pct.p1)),
        "temperature_c": sql.SQL("{} > {}").format(
            clean("temperature_c"), lit(em.temperature_c.p1)
        ),
        "load_1m": sql.SQL("{} > {} * ({}::jsonb ->> node_name)::float8").format(
            clean("load_1m"), lit(em.load_per_cpu.p1), lit(json.dumps(cpus))
        ),
        "mem_available_mb": sql.SQL("{} < {} * {}").format(
            clean("mem_available_mb"), lit(em.mem_available_pct.p1 / 100), clean("mem_total_mb")
        ),
        "mem_total_mb": sql.SQL("false"),
    }
    values = sql.SQL(", ").join(
        sql.SQL("({}, {}, {})").format(lit(m), clean(m), test) for m, test in beyond.items()
    )
    sample = (
        sql.SQL("TABLESAMPLE SYSTEM ({}) REPEATABLE (0)").format(lit(percent))
        if percent is not None
        else sql.SQL("")
    )
    return _LEVELS_SQL.format(
        t=ctx.store.table, sample=sample, values=values, node=NODE_ROW, shard=ctx.store.shard_filter
    )


def _static(ctx: Context, metric: str, cpus: int | None, totals: dict[str, float | None]) -> Any:
    """node -> the static (P3, P2, P1) levels in base units, or None without them."""
    em = ctx.config.emergency
    if metric in ("cpu_total_pct", "cpu_iowait_pct", "temperature_c"):
        lv = {"cpu_total_pct": em.cpu_pct, "cpu_iowait_pct": em.iowait_pct}.get(
            metric, em.temperature_c
        )
        factor = METRICS[metric][1]
        return lambda node: (lv.p3 * factor, lv.p2 * factor, lv.p1 * factor)
    if metric == "load_1m":
        if not cpus:
            return None
        lv = em.load_per_cpu
        return lambda node: (lv.p3 * cpus, lv.p2 * cpus, lv.p1 * cpus)
    if metric == "mem_available_mb":
        lv = em.mem_available_pct

        def memory(node: str) -> tuple[float, float, float] | None:
            total = totals.get(node)
            if not total:
                return None
            return (lv.p3 * total * MIB / 100, lv.p2 * total * MIB / 100, lv.p1 * total * MIB / 100)

        return lambda node: memory(node)
    return None


def bucket_arrays(first: int, last: int, zone: ZoneInfo) -> tuple[list[int], list[int]]:
    """Hour-of-day and hour-of-week buckets of the UTC hours `first`..`last` (hour numbers)."""
    local = [datetime.fromtimestamp(h * HOUR, zone) for h in range(first, last + 1)]
    return [d.hour for d in local], [d.hour + 24 * d.weekday() for d in local]


def bucket_of(now: int, zone: ZoneInfo, weekly: bool) -> int:
    """The bucket (local hour of day, or of week from Monday 00:00) that holds `now`."""
    local = datetime.fromtimestamp(now, zone)
    return local.hour + (24 * local.weekday() if weekly else 0)


def seasonal_levels(
    medians: np.ndarray, days: np.ndarray, sd: float, scales: tuple[float, ...], worse_up: bool
) -> list[np.ndarray]:
    """Per bucket, baseline +- k sd + margin for each k of `scales` (NaN without data).

    The baseline of a bucket is the worst median of it and its two neighbours (cyclic)."""
    sign = 1.0 if worse_up else -1.0
    signed = sign * medians
    stack = np.vstack([np.roll(signed, 1), signed, np.roll(signed, -1)])
    counts = np.vstack([np.roll(days, 1), days, np.roll(days, -1)]).astype(float)
    counts[~np.isfinite(stack)] = np.inf
    worst = np.where(np.isfinite(stack), stack, -np.inf).max(axis=0)
    base = np.where(np.isfinite(worst), worst, np.nan)
    with np.errstate(all="ignore"):
        margin = MARGIN_SE * MEDIAN_SE * sd / np.sqrt(np.maximum(counts.min(axis=0), 1))
    return [sign * (base + k * sd + margin) for k in scales]


def _levels(
    ctx: Context,
    row: dict[str, Any],
    static: tuple[float, float, float] | None,
    zone: ZoneInfo,
    now: int,
) -> list[Threshold]:
    """The three levels of one node and metric, learned, then held in their safe ranges."""
    if static is None:
        return []
    cfg = ctx.config.alerts
    metric = row["metric"]
    worse_up, factor = METRICS[metric]
    weekly = max(row["buckets"]) >= 24
    size = 168 if weekly else 24
    medians = np.full(size, np.nan)
    days = np.zeros(size)
    for bucket, med, n in zip(row["buckets"], row["medians"], row["days"], strict=True):
        medians[bucket], days[bucket] = float(med) * factor, n
    sd = ROBUST * float(row["mad"] or 0.0) * factor
    p3, p2 = seasonal_levels(
        medians, days, sd, (cfg.p3_robust_scales, cfg.p2_robust_scales), worse_up
    )
    finite = medians[np.isfinite(medians)]
    peak = float(finite.max() if worse_up else finite.min())
    p1 = peak + (1 if worse_up else -1) * cfg.p1_robust_scales * sd
    here = bucket_of(now, zone, weekly)
    season = "hour-of-week" if weekly else "hour-of-day"
    days_text = f"{cfg.history_days:g} days, {season} in {cfg.timezone}"
    sign = "+" if worse_up else "-"
    out: list[Threshold] = []
    for i, (level, values) in enumerate(zip(LEVELS, (p3, p2, np.full(size, p1)), strict=True)):
        held = [_safe(metric, worse_up, v, static[i], level, cfg.floor_ratio) for v in values]
        value, limited = held[here]
        if value is None and level != "p1":  # no data in this bucket: the most lenient one
            known = [v for v, _ in held if v is not None]
            value = (max if worse_up else min)(known) if known else None
        k = (cfg.p3_robust_scales, cfg.p2_robust_scales, cfg.p1_robust_scales)[i]
        basis = (
            f"worst bucket median {sign} {k:g} robust sd of {days_text}"
            if level == "p1"
            else f"bucket median {sign} {k:g} robust sd {sign} 2 se, {days_text}"
        )
        learned = values[here]
        out.append(
            {
                "node_name": row["node_name"],
                "metric": metric,
                "level": level,
                "threshold": round_float(value, 6),
                "direction": "above" if worse_up else "below",
                "basis": basis,
                "seasonality": season,
                "profile": None if level == "p1" else [round_float(v, 6) for v, _ in held],
                "learned": round_float(learned, 6) if math.isfinite(learned) else None,
                "static": round_float(static[i], 6) or 0.0,
                "limited_by": limited,
                "robust_sd": round_float(sd, 6),
                "samples": int(row["n"]),
                "incident_hours": int(row["incident_hours"]),
            }
        )
    return out


def _safe(
    metric: str, worse_up: bool, value: float, static: float, level: str, ratio: float
) -> tuple[float | None, str | None]:
    """`value` held in the safe range of its level (module docstring), and what held it."""
    if not math.isfinite(value):
        return None, None
    limited = None
    if level == "p1":
        if (worse_up and value < static) or (not worse_up and value > static):
            value, limited = static, "static"
    else:
        bound = ratio * static if worse_up else (static / ratio if ratio > 0 else math.inf)
        if (worse_up and value > static) or (not worse_up and value < static):
            value, limited = static, "static"
        elif (worse_up and value < bound) or (not worse_up and value > bound):
            value, limited = bound, "floor"
    if worse_up and value >= UPPER_LIMIT.get(metric, math.inf):
        return None, "limit"
    if not worse_up and value <= 0:
        return None, "limit"
    return value, limited


# --------------------------------------------------------------------------- served

LEARNED = gauge(
    "dynamic_threshold",
    "Alert threshold learned from the node's own seasonal history, for the current hour, "
    "in base units (ratios 0..1, bytes, celsius).",
    ("node", "metric", "level"),
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
                level=t["level"],
            )


def render_text(r: ThresholdResult, t: Text) -> None:
    h = r["history"]
    t.title(f"🔔 LEARNED ALERT THRESHOLDS - history {when(h['start'])} to {when(h['end'])}")
    t.table(
        ("node", "metric", "level", "threshold now", "static", "held by"),
        (
            (x["node_name"], x["metric"], x["level"], x["threshold"], x["static"], x["limited_by"])
            for x in r["thresholds"]
        ),
    )


ANALYSIS = Analysis[ThresholdResult](
    name="alert-config",
    title="seasonal alert thresholds P1..P3 per node and metric learned from its own history",
    run=generate_alert_config,
    render_text=render_text,
    serve=Served(refresh_seconds=900, metrics=(LEARNED,), to_samples=to_samples),
    aliases=("thresholds",),
)
