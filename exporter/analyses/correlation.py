"""Coupled node metrics, tested the way autocorrelated, seasonal series must be.

Method, per node, over the de-duplicated rows of the window:

1. One query computes Pearson's r (`corr()`) and the paired count (`regr_count()`) of
   every pair of node metrics over the whole window (`coefficient`, `samples`). It is
   descriptive only: two trending or cycling series have a large r with no link at all.
2. A second query reads the last `evidence_hours` as one mean per node, metric and minute.
   Per node the minutes are binned at the node's own sampling step (one minute or more),
   and each metric is differenced between consecutive bins: random walks, trends and
   daily cycles become (nearly) stationary, and what is left to correlate is whether two
   metrics move at the same time.
3. Every pair with `min_samples` paired differences is scanned over lags of -max..+max
   minutes, whatever its lag-0 r: r_k = corr(diff a(t), diff b(t + k)) on the rows where
   both are present. The scan's best |r_k| is tested with Fisher's z on an effective n,
   n / (1 + 2 sum_l rho_a(l) rho_b(l)) over the differences' autocorrelations at lags
   1..10 (Bartlett; never above n), Bonferroni-corrected over the lags scanned.
   Benjamini-Hochberg keeps the false-discovery rate of each node's pairs at `fdr`.
4. A pair is coupled when it survives that and |r| >= `min_coupling_abs`. Sign
   convention: `lag_minutes` = k > 0 means metric_a LEADS metric_b by k minutes; k < 0
   means metric_b leads; it is reported when |r_k| beats |r_0| by `lag_min_gain`.
   Evidence beside it: `spearman` of the levels at that lag on pairwise-complete rows
   (a coupling whose ranks do not follow is `outlier_driven`), and
   `deseasonalised_coefficient`, r of the levels after each metric's hour-of-day profile.
5. A pair that is not coupled but has |coefficient| >= `min_abs` is `shared_daily_cycle`
   when both metrics have a real daily cycle (the hour of day explains `min_cycle_share`
   of the within-day variance of hourly means over `profile_days`, three days at least)
   and their hour-of-day profiles correlate by `min_abs`. Other strong-but-untested pairs
   (random walks, common trends) are not reported.
6. Only direct and lagged couplings are exported, `max_per_node` per node, strongest first
   by the differences' r; the exported value is Pearson's r of the levels (at the lag).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any, NotRequired, TypedDict, cast

import numpy as np
from psycopg import sql

from ..config import CorrelationConfig
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
    coefficient: float  # Pearson of the levels over the window (descriptive)
    samples: int
    interpretation: str  # direct_coupling, lagged_coupling, outlier_driven, shared_daily_cycle
    coupling_coefficient: float | None  # r of the differences at the reported lag (or 0)
    differenced_coefficient: float | None  # r of the differences at lag 0
    effective_samples: float | None
    p_value: float | None  # of the lag scan's best |r|, Bonferroni over the lags
    q_value: float | None  # Benjamini-Hochberg over the node's pairs
    exported: bool
    deseasonalised_coefficient: NotRequired[float | None]
    spearman: NotRequired[float | None]
    lag_minutes: NotRequired[int | None]
    lag_coefficient: NotRequired[float | None]  # Pearson of the levels a(t), b(t + lag)
    window: NotRequired[dict[str, int]]
    evidence_window: NotRequired[dict[str, int]]


class CorrelationResult(TypedDict):
    window: dict[str, int]
    min_abs: float
    nodes_analysed: int
    correlations: list[Correlation]


Pair = tuple[str, str]
PAIRS: tuple[Pair, ...] = tuple(itertools.combinations(NODE_METRICS, 2))
ACF_LAGS = 10  # autocorrelation lags in the effective-n sum
EVIDENCE_NODES_PER_QUERY = 25  # minutes of this many nodes per statement
COUPLINGS = ("direct_coupling", "lagged_coupling")


def correlation_analysis(ctx: Context, *, hours: float, now: int) -> CorrelationResult:
    """Coupled metric pairs per node over the last `hours` before `now`, with evidence."""
    cfg = ctx.config.correlation
    start = now - window_seconds(hours, HOUR, "hours")
    window = {"start": start, "end": now}
    with ctx.store.read() as cur:
        cur.execute(_pairs_sql(ctx), {"start": start, "now": now})
        rows = cur.fetchall()
    raw = _raw_pairs(rows)
    # a pair is tested on `min_samples` paired differences of the window's rows: a node
    # with no more rows than that can show nothing, so it gets no per-node work
    enough = {r["node_name"] for r in rows if r["samples"] > cfg.min_samples}
    nodes = sorted(n for n in raw if n in enough)
    recent = {"start": max(start, now - int(cfg.evidence_hours * HOUR)), "now": now}
    cycles = _daily_cycles(ctx, nodes, now) if nodes else {}
    found: list[dict[str, Any]] = []
    for first in range(0, len(nodes), EVIDENCE_NODES_PER_QUERY):  # bounded statements
        batch = nodes[first : first + EVIDENCE_NODES_PER_QUERY]
        with ctx.store.read() as cur:
            cur.execute(_minutes_sql(ctx), {**recent, "nodes": batch})
            minutes = cur.fetchall()
        for node, grid in _grids(minutes).items():
            found.extend(_node_findings(node, grid, raw[node], cycles.get(node, {}), cfg))
    for f in found:
        f["window"] = window
        f["evidence_window"] = {"start": recent["start"], "end": now}
    _mark_exported(found, cfg.max_per_node)
    found.sort(key=lambda f: (f["node_name"], not f["exported"], -_strength(f), f["metric_a"]))
    return {
        "window": window,
        "min_abs": cfg.min_abs,
        "nodes_analysed": len(rows),
        "correlations": cast(list[Correlation], found),
    }


def _strength(f: dict[str, Any]) -> float:
    c = f["coupling_coefficient"] if f["coupling_coefficient"] is not None else f["coefficient"]
    return abs(c)


def _mark_exported(found: list[dict[str, Any]], budget: int) -> None:
    """Direct and lagged couplings only, `budget` per node, strongest first."""
    by_node: dict[str, list[dict[str, Any]]] = {}
    for f in found:
        f["exported"] = False
        if f["interpretation"] in COUPLINGS:
            by_node.setdefault(f["node_name"], []).append(f)
    for items in by_node.values():
        for f in sorted(items, key=_strength, reverse=True)[:budget]:
            f["exported"] = True


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


def _raw_pairs(rows: list[dict[str, Any]]) -> dict[str, dict[Pair, tuple[float, int]]]:
    """node -> pair -> (r, n) of the window's levels; pairs with a constant column (corr()
    of float rounding noise, not a link) are left out."""
    out: dict[str, dict[Pair, tuple[float, int]]] = {}
    for row in rows:
        pairs = out.setdefault(row["node_name"], {})
        for i, (a, b) in enumerate(PAIRS):
            r, n = row[f"r{i}"], row[f"n{i}"] or 0
            if r is None or not math.isfinite(r) or not row[f"span:{a}"] or not row[f"span:{b}"]:
                continue
            pairs[(a, b)] = (max(-1.0, min(1.0, float(r))), int(n))
    return out


# --------------------------------------------------------------------------- step 2: minutes


def _minutes_sql(ctx: Context) -> sql.Composed:
    """One mean per node, metric and minute of the evidence window."""
    return sql.SQL(
        "SELECT node_name, floor(sample_time::float8 / 60)::bigint AS minute, {avgs}"
        " FROM {rows} r WHERE {node} AND node_name = ANY(%(nodes)s)"
        " GROUP BY node_name, minute ORDER BY node_name, minute"
    ).format(
        avgs=sql.SQL(", ").join(
            sql.SQL("avg({}) AS {}").format(clean(m), sql.Identifier(m)) for m in NODE_METRICS
        ),
        rows=window_rows(ctx.store, tuple(NODE_METRICS)),
        node=NODE_ROW,
    )


class Grid(TypedDict):
    step: int  # minutes per bin: the node's median sampling step, at least 1
    times: np.ndarray  # bin centres, unix seconds
    values: np.ndarray  # bins x metrics, NaN where unknown


def _grids(rows: list[dict[str, Any]]) -> dict[str, Grid]:
    """Per node, the minute means binned at the node's own sampling step."""
    out: dict[str, Grid] = {}
    for node, group in itertools.groupby(rows, key=lambda r: r["node_name"]):
        items = list(group)
        minutes = np.array([r["minute"] for r in items], dtype=np.int64)
        values = np.array(
            [[np.nan if r[m] is None else float(r[m]) for m in NODE_METRICS] for r in items]
        )
        step = max(1, round(float(np.median(np.diff(minutes)))) if minutes.size > 1 else 1)
        idx = (minutes - minutes[0]) // step
        size = int(idx[-1]) + 1
        sums = np.zeros((size, len(NODE_METRICS)))
        counts = np.zeros((size, len(NODE_METRICS)))
        ok = np.isfinite(values)
        np.add.at(sums, idx, np.where(ok, values, 0.0))
        np.add.at(counts, idx, ok)
        with np.errstate(invalid="ignore", divide="ignore"):
            grid = np.where(counts > 0, sums / counts, np.nan)
        times = (minutes[0] + np.arange(size) * step) * 60 + step * 30
        out[node] = {"step": step, "times": times, "values": grid}
    return out


# --------------------------------------------------------------------------- step 3: tests


def lagged_correlations(d: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """(r, n): r[i, j] = corr(d[t, i], d[t + lag, j]) over the rows where both are known."""
    if abs(lag) >= d.shape[0]:
        empty = np.zeros((d.shape[1], d.shape[1]))
        return np.full_like(empty, np.nan), empty
    if lag >= 0:
        a, b = d[: d.shape[0] - lag], d[lag:]
    else:
        a, b = d[-lag:], d[: d.shape[0] + lag]
    va, vb = np.isfinite(a).astype(float), np.isfinite(b).astype(float)
    a0, b0 = np.nan_to_num(a), np.nan_to_num(b)
    n = va.T @ vb
    with np.errstate(invalid="ignore", divide="ignore"):
        sa, sb = a0.T @ vb, va.T @ b0
        cov = a0.T @ b0 - sa * sb / n
        var_a = (a0**2).T @ vb - sa**2 / n
        var_b = va.T @ b0**2 - sb**2 / n
        r = cov / np.sqrt(var_a * var_b)
    r[~np.isfinite(r) | (n < 3)] = np.nan
    return np.clip(r, -1.0, 1.0), n


def fisher_p(r: float, n_eff: float) -> float:
    """Two-sided p of r = 0 by Fisher's z on an effective sample size."""
    if not math.isfinite(r) or n_eff <= 3:
        return 1.0
    z = math.atanh(min(abs(r), 1 - 1e-12)) * math.sqrt(n_eff - 3)
    return math.erfc(z / math.sqrt(2))


def benjamini_hochberg(p: list[float]) -> list[float]:
    """Adjusted q-values: a pair is a discovery at false-discovery rate q when q_i <= q."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    q = [1.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, p[i] * m / rank)
        q[i] = running
    return q


def _node_findings(
    node: str,
    grid: Grid,
    raw: dict[Pair, tuple[float, int]],
    cycles: dict[str, tuple[float, np.ndarray]],
    cfg: CorrelationConfig,
) -> list[dict[str, Any]]:
    """The node's coupled pairs and shared daily cycles (see the module doc)."""
    step = grid["step"]
    used = sorted({m for pair in raw for m in pair}, key=NODE_METRICS.index)
    g = grid["values"][:, [NODE_METRICS.index(m) for m in used]]
    d = np.diff(g, axis=0)
    index = {m: i for i, m in enumerate(used)}
    max_k = int(cfg.max_lag_minutes) // step
    by_lag = {k: lagged_correlations(d, k) for k in range(-max_k, max_k + 1)}
    acf = np.array(
        [np.diag(lagged_correlations(d, k)[0]) for k in range(1, ACF_LAGS + 1)]
    )  # lags x metrics
    acf = np.nan_to_num(acf)
    tested: list[dict[str, Any]] = []
    for a, b in raw:
        i, j = index[a], index[b]
        rs = {k: float(by_lag[k][0][i, j]) for k in by_lag}
        ns = {k: float(by_lag[k][1][i, j]) for k in by_lag}
        rs = {k: r for k, r in rs.items() if math.isfinite(r) and ns[k] >= cfg.min_samples}
        if not rs:
            continue
        k, r = max(rs.items(), key=lambda kv: (abs(kv[1]), -abs(kv[0])))
        factor = max(1.0, 1.0 + 2.0 * float(np.sum(acf[:, i] * acf[:, j])))
        n_eff = ns[k] / factor
        p = min(1.0, fisher_p(r, n_eff) * len(by_lag))
        r0 = rs.get(0)
        lagged = k != 0 and (r0 is None or abs(r) >= abs(r0) + cfg.lag_min_gain)
        tested.append(
            {
                "pair": (a, b),
                "r": r if lagged or r0 is None else r0,
                "r0": r0,
                "lag": k * step if lagged else None,
                "n_eff": n_eff,
                "p": p,
            }
        )
    qs = benjamini_hochberg([t["p"] for t in tested])
    out = []
    for t, q in zip(tested, qs, strict=True):
        a, b = t["pair"]
        r_raw, n_raw = raw[(a, b)]
        coupled = q <= cfg.fdr and abs(t["r"]) >= cfg.min_coupling_abs
        bins = (t["lag"] or 0) // step
        if coupled:
            rho = spearman(g[:, index[a]], g[:, index[b]], bins)
            kind = "lagged_coupling" if t["lag"] else "direct_coupling"
            if rho is None or abs(rho) < cfg.min_abs / 2:
                kind = "outlier_driven"
        elif abs(r_raw) >= cfg.min_abs and _shared_cycle(cycles, a, b, cfg):
            kind, rho = "shared_daily_cycle", None
        else:
            continue
        out.append(
            {
                "node_name": node,
                "metric_a": a,
                "metric_b": b,
                "coefficient": round_float(r_raw),
                "samples": n_raw,
                "interpretation": kind,
                "coupling_coefficient": round_float(t["r"]) if coupled else None,
                "differenced_coefficient": round_float(t["r0"]),
                "effective_samples": round_float(t["n_eff"], 1),
                "p_value": round_float(t["p"], 9),
                "q_value": round_float(q, 9),
                "spearman": round_float(rho),
                "deseasonalised_coefficient": round_float(
                    _deseasonalised(grid["times"], g, cycles, a, b, index)
                ),
                "lag_minutes": t["lag"] if coupled else None,
                "lag_coefficient": round_float(_level_r(g, index, a, b, bins))
                if coupled and t["lag"]
                else None,
            }
        )
    return out


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(x.size)
    ranks[order] = np.arange(1, x.size + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def spearman(x: np.ndarray, y: np.ndarray, lag: int = 0) -> float | None:
    """Spearman's rho of x(t) and y(t + lag), ranked over the rows where both are known."""
    if lag > 0:
        x, y = x[:-lag], y[lag:]
    elif lag < 0:
        x, y = x[-lag:], y[:lag]
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return None
    rx, ry = _ranks(x[ok]), _ranks(y[ok])
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def _level_r(g: np.ndarray, index: dict[str, int], a: str, b: str, lag: int) -> float | None:
    """Pearson's r of the levels a(t) and b(t + lag bins), pairwise complete."""
    x, y = g[:, index[a]], g[:, index[b]]
    if lag > 0:
        x, y = x[:-lag], y[lag:]
    elif lag < 0:
        x, y = x[-lag:], y[:lag]
    return _pearson(x, y)


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or x[ok].std() == 0 or y[ok].std() == 0:
        return None
    return float(np.corrcoef(x[ok], y[ok])[0, 1])


def _deseasonalised(
    times: np.ndarray,
    g: np.ndarray,
    cycles: dict[str, tuple[float, np.ndarray]],
    a: str,
    b: str,
    index: dict[str, int],
) -> float | None:
    """r of the levels after each metric's hour-of-day profile, interpolated between hour
    centres, is subtracted (None without a profile)."""
    if a not in cycles or b not in cycles:
        return None
    f = (times % DAY) / HOUR - 0.5
    h0 = np.floor(f).astype(int) % 24
    h1 = (h0 + 1) % 24
    frac = f - np.floor(f)

    def resid(m: str) -> np.ndarray:
        prof = cycles[m][1]
        return g[:, index[m]] - ((1 - frac) * prof[h0] + frac * prof[h1])

    return _pearson(resid(a), resid(b))


def _shared_cycle(
    cycles: dict[str, tuple[float, np.ndarray]], a: str, b: str, cfg: CorrelationConfig
) -> bool:
    """Both metrics cycle daily for real, and their hour-of-day profiles agree."""
    if a not in cycles or b not in cycles:
        return False
    (share_a, prof_a), (share_b, prof_b) = cycles[a], cycles[b]
    if min(share_a, share_b) < cfg.min_cycle_share:
        return False
    r = _pearson(prof_a, prof_b)
    return r is not None and abs(r) >= cfg.min_abs


def _daily_cycles(
    ctx: Context, nodes: list[str], now: int
) -> dict[str, dict[str, tuple[float, np.ndarray]]]:
    """node -> metric -> (share, profile): the share of the within-day variance of hourly
    means that the hour of day explains over the last `profile_days` (a real cycle repeats
    day after day; a random walk or noise gives about 1 / days), and the 24 hour-of-day
    means. Metrics with under three days of at least 12 hours are left out."""
    cfg = ctx.config.correlation
    view = rollups_of(ctx).view("node", now - int(cfg.profile_days * DAY), now)
    wanted = set(nodes)
    out: dict[str, dict[str, tuple[float, np.ndarray]]] = {}
    for (node, _), rows in view.series():
        if node not in wanted:
            continue
        hours = view.hours[rows]
        hod, day = (hours // HOUR) % 24, hours // DAY
        out[node] = {}
        for m in NODE_METRICS:
            mean = view.stat("mean", m)[rows].astype(np.float64)
            ok = np.isfinite(mean) & (view.stat("count", m)[rows] > 0)
            days, per_day = np.unique(day[ok], return_counts=True)
            full = set(days[per_day >= 12].tolist())
            keep = ok & np.isin(day, list(full))
            if len(full) < 3:
                continue
            _, di = np.unique(day[keep], return_inverse=True)
            v = mean[keep]
            centred = v - (np.bincount(di, weights=v) / np.bincount(di))[di]
            h = hod[keep]
            counts = np.bincount(h, minlength=24)
            prof_c = np.bincount(h, weights=centred, minlength=24) / np.maximum(counts, 1)
            total = float(np.sum(centred**2))
            between = float(np.sum(counts * prof_c**2))
            share = between / total if total > 0 else 0.0
            profile = np.bincount(h, weights=v, minlength=24) / np.maximum(counts, 1)
            profile[counts == 0] = np.nan
            out[node][m] = (share, profile)
    return out


# --------------------------------------------------------------------------- served

COEFFICIENT = gauge(
    "metric_correlation",
    "Pearson coefficient of strongly correlated metric pairs.",
    ("node", "metric_a", "metric_b"),
)


def to_samples(result: CorrelationResult, view: ResultView) -> Iterator[Sample]:
    """The exported couplings, each with Pearson's r of its levels: over the window, or at
    the reported lag for a lagged coupling."""
    for c in result["correlations"]:
        if not c.get("exported"):
            continue
        r = c.get("lag_coefficient") if c.get("lag_minutes") else c["coefficient"]
        if r is None:
            continue
        yield sample(
            "metric_correlation",
            r,
            CORRELATION,
            abs(r),
            node=c["node_name"],
            metric_a=c["metric_a"],
            metric_b=c["metric_b"],
        )


def render_text(r: CorrelationResult, t: Text) -> None:
    t.title("🔗 STRONG CORRELATIONS")
    t.table(
        ("node", "metric a", "metric b", "kind", "r (differences)", "lag min", "q"),
        (
            (
                c["node_name"],
                c["metric_a"],
                c["metric_b"],
                c["interpretation"],
                c["coupling_coefficient"],
                c.get("lag_minutes"),
                c["q_value"],
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
