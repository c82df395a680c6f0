"""Strongly correlated node metrics, with the evidence that says what kind of link it is.

Method (all aggregation in PostgreSQL, over the de-duplicated rows of the window):

1. One query computes Pearson's r (`corr()`) and the paired sample count (`regr_count()`)
   of every pair of node metrics, per node. A pair with a constant column has r NULL and
   is skipped (e.g. mem_available_mb against a constant mem_total_mb). A pair is strong
   when |r| >= `min_abs` over at least `min_samples` paired samples.
2. For the strong pairs only, a second query adds:
   - `deseasonalised_coefficient`: r of the residuals after subtracting each metric's
     hour-of-day profile (the mean of each UTC hour over the last `profile_days`, from the
     hourly rollups, linearly interpolated between hour centres). Two metrics that merely
     share a daily cycle have a high raw r and a residual r near 0; direct coupling keeps
     a high residual r.
   - `spearman`: r of the average ranks (rank() windows over the pair's complete rows). It
     differs from Pearson when a few outliers dominate the raw coefficient.
3. A third query searches lags of -max..+max minutes: r of a(t) with b(t + k) through a
   self-join on the sample minute. Sign convention: `lag_minutes` = k > 0 means metric_a
   LEADS metric_b by k minutes (b follows a); k < 0 means metric_b leads by -k minutes. It
   is reported (with `lag_coefficient`) only when the best |r_k| beats |r_0| by
   `lag_min_gain`; otherwise both are None (the pair moves together).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any, NotRequired, TypedDict, cast

import numpy as np
from psycopg import sql

from ..metricdef import gauge
from ..render import Text
from ..rollups import rollups_of
from ..samples import CORRELATION, Sample, sample
from ..schema import NODE_METRICS
from .common import (
    DAY,
    HOUR,
    NODE_ROW,
    Context,
    clean,
    round_float,
    window_rows,
    window_seconds,
)
from .unit import Analysis, ResultView, Served, Window


class Correlation(TypedDict):
    node_name: str
    metric_a: str
    metric_b: str
    coefficient: float
    samples: int
    deseasonalised_coefficient: NotRequired[float | None]
    spearman: NotRequired[float | None]
    lag_minutes: NotRequired[int | None]
    lag_coefficient: NotRequired[float | None]
    interpretation: NotRequired[str]
    window: NotRequired[dict[str, int]]
    evidence_window: NotRequired[dict[str, int]]


class CorrelationResult(TypedDict):
    window: dict[str, int]
    min_abs: float
    nodes_analysed: int
    correlations: list[Correlation]


Pair = tuple[str, str]
PAIRS: tuple[Pair, ...] = tuple(itertools.combinations(NODE_METRICS, 2))


def correlation_analysis(ctx: Context, *, hours: float, now: int) -> CorrelationResult:
    """Strong metric pairs per node over the last `hours` before `now`, with evidence."""
    cfg = ctx.config.correlation
    start = now - window_seconds(hours, HOUR, "hours")
    window = {"start": start, "end": now}
    params = {"start": start, "now": now}
    with ctx.store.read() as cur:
        cur.execute(_pairs_sql(ctx), params)
        rows = cur.fetchall()
    strong = _strong_pairs(rows, cfg.min_abs, cfg.min_samples)
    if strong:
        nodes = sorted({s["node_name"] for s in strong})
        pairs = sorted({(s["metric_a"], s["metric_b"]) for s in strong})
        profile = _hour_profiles(ctx, nodes, pairs, now)
        # Ranks and lags sort every sample: bounded to the last `evidence_hours` so a long
        # window stays inside the statement timeout (the coefficient uses the whole window).
        recent = {"start": max(start, now - int(cfg.evidence_hours * HOUR)), "now": now}
        extra, lags = {}, {}
        for first in range(0, len(nodes), EVIDENCE_NODES_PER_QUERY):  # bounded statements
            batch = nodes[first : first + EVIDENCE_NODES_PER_QUERY]
            with ctx.store.read() as cur:
                extra.update(_evidence(cur, ctx, batch, pairs, profile, recent))
                lags.update(_lags(cur, ctx, batch, pairs, recent, cfg.max_lag_minutes))
        for s in strong:
            key = (s["node_name"], s["metric_a"], s["metric_b"])
            s.update(extra.get(key, {"deseasonalised_coefficient": None, "spearman": None}))
            s.update(_best_lag(lags.get(key, {}), cfg.lag_min_gain, cfg.max_lag_minutes))
            s["interpretation"] = _interpret(s, cfg.min_abs)
            s["window"] = window
            s["evidence_window"] = {"start": recent["start"], "end": now}
    strong.sort(key=lambda s: (s["node_name"], -abs(s["coefficient"]), s["metric_a"]))
    return {
        "window": window,
        "min_abs": cfg.min_abs,
        "nodes_analysed": len(rows),
        "correlations": cast(list[Correlation], strong),
    }


# --------------------------------------------------------------------------- step 1: all pairs


def _pair_alias(prefix: str, i: int) -> sql.Identifier:
    return sql.Identifier(f"{prefix}{i}")


def _pairs_sql(ctx: Context) -> sql.Composed:
    """corr() and regr_count() of every pair, per node (one scan of the window), and each
    metric's span: PostgreSQL's corr() of a constant float column can be rounding noise
    rather than NULL, so a pair with a zero-span column is skipped."""
    aggs = sql.SQL(", ").join(
        sql.SQL("corr({a}, {b}) AS {r}, regr_count({a}, {b}) AS {n}").format(
            a=sql.Identifier(a), b=sql.Identifier(b), r=_pair_alias("r", i), n=_pair_alias("n", i)
        )
        for i, (a, b) in enumerate(PAIRS)
    )
    return sql.SQL(
        "SELECT node_name, count(*) AS samples, {spans}, {aggs} FROM"
        " (SELECT node_name, {cols} FROM {w} w WHERE {node}) v GROUP BY node_name"
    ).format(
        aggs=aggs,
        spans=sql.SQL(", ").join(
            sql.SQL("max({m}) - min({m}) AS {s}").format(
                m=sql.Identifier(m), s=sql.Identifier(f"span:{m}")
            )
            for m in NODE_METRICS
        ),
        cols=_clean_columns(NODE_METRICS),
        w=window_rows(ctx.store, NODE_METRICS),
        node=NODE_ROW,
    )


def _clean_columns(metrics: tuple[str, ...] | list[str]) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(clean(m), sql.Identifier(m)) for m in metrics
    )


def _strong_pairs(
    rows: list[dict[str, Any]], min_abs: float, min_samples: int
) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        for i, (a, b) in enumerate(PAIRS):
            r, n = row[f"r{i}"], row[f"n{i}"] or 0
            if r is None or not math.isfinite(r) or n < min_samples or abs(r) < min_abs:
                continue
            if not row[f"span:{a}"] or not row[f"span:{b}"]:
                continue  # a constant column: corr() of float rounding noise, not a link
            out.append(
                {
                    "node_name": row["node_name"],
                    "metric_a": a,
                    "metric_b": b,
                    "coefficient": round_float(max(-1.0, min(1.0, r))),
                    "samples": int(n),
                }
            )
    return out


# --------------------------------------------------------------------------- step 2: evidence


def _hour_profiles(
    ctx: Context, nodes: list[str], pairs: list[Pair], now: int
) -> dict[str, dict[str, np.ndarray]]:
    """node -> metric -> 24 hour-of-day means (NaN where unknown), from the rollups."""
    cfg = ctx.config.correlation
    rollups = rollups_of(ctx)
    view = rollups.view("node", now - int(cfg.profile_days * DAY), now)
    metrics = sorted({m for p in pairs for m in p})
    wanted = set(nodes)
    out: dict[str, dict[str, np.ndarray]] = {}
    for (node, _), rows in view.series():
        if node not in wanted:
            continue
        hod = (view.hours[rows] // HOUR) % 24
        out[node] = {}
        for m in metrics:
            mean = view.stat("mean", m)[rows].astype(np.float64)
            count = view.stat("count", m)[rows].astype(np.float64)
            ok = np.isfinite(mean) & (count > 0)
            sums = np.bincount(hod[ok], weights=(mean * count)[ok], minlength=24)
            counts = np.bincount(hod[ok], weights=count[ok], minlength=24)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[node][m] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out


def _evidence(
    cur: Any,
    ctx: Context,
    nodes: list[str],
    pairs: list[Pair],
    profile: dict[str, dict[str, np.ndarray]],
    params: dict[str, Any],
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Deseasonalised and rank coefficients of `pairs` on `nodes`, one query."""
    metrics = sorted({m for p in pairs for m in p})
    prof = {f"p{i}": _profile_array(nodes, profile, m) for i, m in enumerate(metrics)}
    cur.execute(_evidence_sql(ctx, metrics, pairs), {**params, **prof, "nodes": nodes})
    out = {}
    for row in cur.fetchall():
        for i, (a, b) in enumerate(pairs):
            out[(row["node_name"], a, b)] = {
                "deseasonalised_coefficient": round_float(row[f"d{i}"]),
                "spearman": round_float(row[f"s{i}"]),
            }
    return out


def _profile_array(
    nodes: list[str], profile: dict[str, dict[str, np.ndarray]], metric: str
) -> list[float | None]:
    """A metric's profiles of all nodes as one flat array: node i, hour h at i * 24 + h."""
    out: list[float | None] = []
    for node in nodes:
        v = profile.get(node, {}).get(metric)
        out.extend(float(v[h]) if v is not None and np.isfinite(v[h]) else None for h in range(24))
    return out


def _evidence_sql(ctx: Context, metrics: list[str], pairs: list[Pair]) -> sql.Composable:
    """Residuals against the hour-of-day profile interpolated between hour centres, and
    average ranks per metric in long form (one sort for all metrics). rank() is the first
    tied position and cume_dist() * n the last: their sum is twice the average rank, and
    corr() is blind to the factor. Ranks are over each metric's valid values of the window;
    a row missing either metric of a pair is skipped by corr()."""
    ident, lit = sql.Identifier, sql.Literal
    resid = sql.SQL(", ").join(
        sql.SQL(
            "{m} - ((1 - frac) * (%({p})s::float8[])[ni * 24 + h0 + 1]"
            " + frac * (%({p})s::float8[])[ni * 24 + h1 + 1]) AS {m}"
        ).format(m=ident(m), p=sql.SQL(f"p{i}"))
        for i, m in enumerate(metrics)
    )
    unpivot = sql.SQL(", ").join(sql.SQL("({}, w.{})").format(lit(m), ident(m)) for m in metrics)
    pivot = sql.SQL(", ").join(
        sql.SQL("max(rk) FILTER (WHERE metric = {}) AS {}").format(lit(m), ident(m))
        for m in metrics
    )

    def corrs(prefix: str) -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL("corr({a}, {b}) AS {r}").format(a=ident(a), b=ident(b), r=ident(f"{prefix}{i}"))
            for i, (a, b) in enumerate(pairs)
        )

    return sql.SQL(
        "WITH w AS MATERIALIZED (SELECT node_name, sample_time, {cols},"
        " sample_time::float8 / 3600 - 24 * floor(sample_time::float8 / 86400) - 0.5 AS f,"
        " array_position(%(nodes)s::text[], node_name) - 1 AS ni"
        " FROM {rows} r WHERE {node} AND node_name = ANY(%(nodes)s)),"
        " d AS (SELECT node_name, {resid} FROM (SELECT *, (floor(f)::int + 24) %% 24 AS h0,"
        " (floor(f)::int + 25) %% 24 AS h1, f - floor(f) AS frac FROM w) x),"
        " l AS (SELECT w.node_name, w.sample_time, v.metric, v.x FROM w"
        " CROSS JOIN LATERAL (VALUES {unpivot}) v(metric, x) WHERE v.x IS NOT NULL),"
        " k AS (SELECT node_name, sample_time, metric, rank() OVER o + cume_dist() OVER o"
        " * count(*) OVER (PARTITION BY node_name, metric) AS rk FROM l"
        " WINDOW o AS (PARTITION BY node_name, metric ORDER BY x)),"
        " kw AS (SELECT node_name, {pivot} FROM k GROUP BY node_name, sample_time),"
        " dc AS (SELECT node_name, {dcorr} FROM d GROUP BY node_name),"
        " kc AS (SELECT node_name, {kcorr} FROM kw GROUP BY node_name)"
        " SELECT * FROM dc JOIN kc USING (node_name)"
    ).format(
        cols=_clean_columns(metrics),
        rows=window_rows(ctx.store, tuple(NODE_METRICS)),
        node=NODE_ROW,
        resid=resid,
        unpivot=unpivot,
        pivot=pivot,
        dcorr=corrs("d"),
        kcorr=corrs("s"),
    )


# --------------------------------------------------------------------------- step 3: lags

# Evidence sorts every recent sample of the nodes it covers: a batch of nodes per query keeps
# each statement well inside the statement timeout however large the fleet (timings in
# docs/performance.md).
EVIDENCE_NODES_PER_QUERY = 25
LAG_PAIRS_PER_QUERY = 40  # pairs x (2 * lag + 1) output columns stay under PostgreSQL's 1664


def _lags(
    cur: Any,
    ctx: Context,
    nodes: list[str],
    pairs: list[Pair],
    params: dict[str, Any],
    max_lag: int,
) -> dict[tuple[str, str, str], dict[int, float]]:
    """(node, a, b) -> {k: r of a(t) with b(t + k minutes)}."""
    max_lag = max(0, min(int(max_lag), 60))
    out: dict[tuple[str, str, str], dict[int, float]] = {}
    for first in range(0, len(pairs), LAG_PAIRS_PER_QUERY):
        chunk = pairs[first : first + LAG_PAIRS_PER_QUERY]
        cur.execute(_lag_sql(ctx, chunk, max_lag), {**params, "nodes": nodes})
        for row in cur.fetchall():
            for i, (a, b) in enumerate(chunk):
                for k in range(-max_lag, max_lag + 1):
                    r = row[f"r{i}_{k}"]
                    if r is not None and math.isfinite(r):
                        out.setdefault((row["node_name"], a, b), {})[k] = float(r)
    return out


def _lag_sql(ctx: Context, pairs: list[Pair], max_lag: int) -> sql.Composable:
    """One row per node and minute (the newest sample of the minute, so sampling jitter
    inside a minute still lines up); b(t + k) is lead(b, k) when the row k positions ahead
    is exactly k minutes ahead (a gap gives NULL, never a misaligned value). One sort, no
    self-join, which would sort every minute 2 * lag + 1 times."""
    ident = sql.Identifier
    firsts = sorted({a for a, _ in pairs})
    seconds = sorted({b for _, b in pairs})
    lags = [k for k in range(-max_lag, max_lag + 1) if k]
    shifted = []
    for k in lags:
        fn, step = (
            (sql.SQL("lead"), sql.Literal(abs(k))) if k > 0 else (sql.SQL("lag"), sql.Literal(-k))
        )
        shifted.append(
            sql.SQL("{fn}(minute, {s}) OVER o = minute + {k} AS {ok}").format(
                fn=fn, s=step, k=sql.Literal(k), ok=ident(f"ok@{k}")
            )
        )
        shifted.extend(
            sql.SQL("{fn}({b}, {s}) OVER o AS {alias}").format(
                fn=fn, s=step, b=ident(b), alias=ident(f"{b}@{k}")
            )
            for b in seconds
        )

    def shifted_b(b: str, k: int) -> sql.Composable:
        if k == 0:
            return ident(b)
        return sql.SQL("CASE WHEN {} THEN {} END").format(ident(f"ok@{k}"), ident(f"{b}@{k}"))

    aggs = sql.SQL(", ").join(
        sql.SQL("corr({a}, {bk}) AS {r}").format(
            a=ident(f"a:{a}"), bk=shifted_b(b, k), r=ident(f"r{i}_{k}")
        )
        for i, (a, b) in enumerate(pairs)
        for k in range(-max_lag, max_lag + 1)
    )
    return sql.SQL(
        "WITH m AS (SELECT DISTINCT ON (node_name, minute) * FROM"
        " (SELECT node_name, sample_time, floor(sample_time::float8 / 60)::bigint AS minute,"
        " {cols} FROM {rows} r WHERE {node} AND node_name = ANY(%(nodes)s)) s"
        " ORDER BY node_name, minute, sample_time DESC),"
        " s AS (SELECT node_name, {acols}, {bcols}{shifted} FROM m"
        " WINDOW o AS (PARTITION BY node_name ORDER BY minute))"
        " SELECT node_name, {aggs} FROM s GROUP BY node_name"
    ).format(
        cols=_clean_columns(sorted(set(firsts) | set(seconds))),
        rows=window_rows(ctx.store, tuple(NODE_METRICS)),
        node=NODE_ROW,
        acols=sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(ident(a), ident(f"a:{a}")) for a in firsts
        ),
        bcols=sql.SQL(", ").join(ident(b) for b in seconds),
        shifted=sql.SQL("").join(sql.SQL(", ") + x for x in shifted),
        aggs=aggs,
    )


def _best_lag(by_lag: dict[int, float], min_gain: float, max_lag: int) -> dict[str, Any]:
    """The lag whose |r| is largest, if it beats lag 0 by `min_gain` and lies inside the
    search range (a maximum at the edge is a slow drift or a phase-shifted cycle, not a
    leader found by the search); see the module doc for the sign."""
    none: dict[str, Any] = {"lag_minutes": None, "lag_coefficient": None}
    if not by_lag:
        return none
    k, r = max(by_lag.items(), key=lambda kv: (abs(kv[1]), -abs(kv[0])))
    r0 = abs(by_lag.get(0, 0.0))
    if k == 0 or abs(k) >= max_lag or abs(r) < r0 + min_gain:
        return none
    return {"lag_minutes": k, "lag_coefficient": round_float(r)}


def _interpret(s: dict[str, Any], min_abs: float) -> str:
    """A one-word reading of the evidence for people (the numbers stay the evidence)."""
    d, rho = s.get("deseasonalised_coefficient"), s.get("spearman")
    if rho is not None and abs(rho) < min_abs / 2:
        return "outlier_driven"
    if d is not None and abs(d) < min_abs / 2:
        return "shared_daily_cycle"
    if s.get("lag_minutes"):
        return "lagged_coupling"
    return "direct_coupling"


# --------------------------------------------------------------------------- served

COEFFICIENT = gauge(
    "metric_correlation",
    "Pearson coefficient of strongly correlated metric pairs.",
    ("node", "metric_a", "metric_b"),
)


def to_samples(result: CorrelationResult, view: ResultView) -> Iterator[Sample]:
    for c in result["correlations"]:
        yield sample(
            "metric_correlation",
            c["coefficient"],
            CORRELATION,
            abs(c["coefficient"]),
            node=c["node_name"],
            metric_a=c["metric_a"],
            metric_b=c["metric_b"],
        )


def render_text(r: CorrelationResult, t: Text) -> None:
    t.title("🔗 STRONG CORRELATIONS")
    t.table(
        ("node", "metric a", "metric b", "pearson", "deseasonalised", "lag min"),
        (
            (
                c["node_name"],
                c["metric_a"],
                c["metric_b"],
                c["coefficient"],
                c.get("deseasonalised_coefficient"),
                c.get("lag_minutes"),
            )
            for c in r["correlations"]
        ),
    )


ANALYSIS = Analysis[CorrelationResult](
    name="correlation",
    title="strongly coupled metric pairs per node, with lead/lag and seasonal evidence",
    run=correlation_analysis,
    render_text=render_text,
    window=Window("hours", lambda c: c.correlation.window_hours),
    serve=Served(refresh_seconds=900, metrics=(COEFFICIENT,), to_samples=to_samples),
)
