"""Anomalies: samples far from their own series' seasonal baseline, reported once per episode.

Baselines come from the hourly rollups, never from raw history. For every node/container
series, metric and hour h the baseline is the median of past hourly means at the same hour
of week (lags of 1..4 weeks, once 3 weeks of history exist), else of day (lags of 1..7 days,
once 7 days exist), else of the last 24 hours. Its scale combines the within-hour spread
(median hourly sd) and the between-day spread (1.4826 * MAD of the hourly means, at least the
series' typical one), floored per unit and as a share of the level, so flat series never
score. A raw sample x is a candidate when all three hold:

- robust score z = (x - baseline) / scale beyond `score_threshold`;
- |x - baseline| at least the practical minimum change of the metric;
- x outside the envelope the same hour showed before (second-largest hourly max and
  second-smallest hourly min over the lags), so a weekend dip seen last week is not news.

The candidates are selected in SQL (bounds per series and hour are sent as arrays), so only
unusual samples of the window leave the database. A candidate counts once `persist` of the
last `recent_samples` samples deviate the same way; consecutive ones form one episode,
reported once with its peak. Network error and drop counters that were ~never nonzero
(`zero_rate_max` of past hours) get a frequency test instead: any sustained burst is news.

Range departures: the range a series has shown is the extremes of its hourly min and max
(and of its hourly means) over the past `range_days`, ending `range_quiet_hours` ago so an
episode never widens its own range. A sample beyond it by `range_margin` median hourly sd
(once those beyond cover `range_persist_minutes`), or a complete hour whose mean is beyond
the means' range by `range_margin` times their noise, is flagged; an episode ends after
`range_quiet_hours` with nothing flagged and is reported once, as `kind: "range_departure"`,
when it starts. This catches departures too small for the seasonal score but new for the
series. Its priority, and the cap on every spike's or dip's, is how far past the range the
value went: (value - median) / (range edge - median) from `range_p2_ratio` P2, from
`range_p1_ratio` P1, else P3. A sample inside the range is never a spike: shown before.

Seasonal departures: a complete hour whose mean is far from the median of the same hour on
the previous days (3 to 7 of them), by the two-sided normal quantile that makes
`seasonal_false_per_day` false alarms per series-day on noise, in a robust scale of the
series' past residuals (MAD, or where the tails are heavy, the scale that matches their 99th
percentile). It finds an hour unusual for its time of day inside the range a daily job sets;
it joins the range's episodes, is reported as `kind: "seasonal_departure"` and its priority
is the range ratio's (P3 while inside the range).

Level shifts: when hourly means stay beyond their bounds for `changepoint_hours` in a row,
the series has a new normal since the start of that run. It is reported once, as
`kind: "level_shift"` with `since`, by the window in which it became known; later hours are
scored against the old seasonal profile moved by the shift, so it never alarms again.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import math
import statistics
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict, cast

import numpy as np
from psycopg import Cursor, sql
from psycopg.rows import tuple_row

from ..config import AnomalyConfig, Config, EmergencyConfig, Levels
from ..metricdef import gauge
from ..render import PRIORITY_COLOUR, Text, when
from ..rollups import RollupParts, RollupView, rollups_of
from ..samples import ANOMALY_HIGH, ANOMALY_ZERO, CONTAINER_ZERO, Sample, sample
from .common import (
    CONTAINER_ROW,
    DAY,
    HOUR,
    NODE_ROW,
    Context,
    clean,
    invalid_count,
    round_float,
    window_rows,
    window_seconds,
)
from .hourly import HourRows
from .unit import Analysis, ResultView, Served, Window


class Span(TypedDict):
    start: int
    end: int


class Anomaly(TypedDict):
    """One anomaly with its evidence: the value, its baseline and scale, the score."""

    node_name: str
    container_name: str | None
    metric: str
    value: float | None
    baseline: float | None
    score: float | None
    priority: str
    sample_time: int
    kind: str  # spike, dip, level_shift, range_departure, seasonal_departure or outlier
    detected_at: int | None
    scale: float | None
    baseline_kind: str
    samples: int
    window: Span
    since: NotRequired[int]  # level shifts: the first sample of the new level
    # range departures: the range before (sample or hourly-mean extremes), the margin in
    # noise scales (`scale`), the farthest value so far, and what left the range
    range_low: NotRequired[float | None]
    range_high: NotRequired[float | None]
    margin: NotRequired[float]
    peak: NotRequired[float | None]
    source: NotRequired[str]  # sample or hourly_mean


class Score(TypedDict):
    node_name: str
    container_name: str | None
    metric: str
    score: float | None


class AnomalyWindow(TypedDict):
    start: int
    end: int
    hours: float | None


class AnomalyResult(TypedDict):
    window: AnomalyWindow
    anomalies: list[Anomaly]
    scores: list[Score]  # the current score of every series and metric evaluated
    data_quality: dict[str, Any]


# Unit class of each metric: selects its scale floor and minimum change in AnomalyConfig.
UNITS: dict[str, str] = {
    "cpu_total_pct": "pct",
    "cpu_iowait_pct": "pct",
    "mem_available_mb": "mb",
    "swap_used_mb": "mb",
    "c_rss_mb": "mb",
    "load_1m": "load",
    "temperature_c": "celsius",
    "ctx_switches_s": "ops",
    "disk_read_mb_s": "mb_s",
    "disk_write_mb_s": "mb_s",
    "net_rx_mb_s": "mb_s",
    "net_tx_mb_s": "mb_s",
    "net_rx_errs_s": "errors",
    "net_tx_errs_s": "errors",
    "net_rx_drops_s": "errors",
    "net_tx_drops_s": "errors",
}
COUNTERS = frozenset(m for m, u in UNITS.items() if u == "errors")

# Baseline kinds, in the order the fallback prefers them (0 = no baseline).
NONE, ROLLING, HOUR_OF_DAY, HOUR_OF_WEEK, ZERO = 0, 1, 2, 3, 4
KIND_NAMES = {
    ROLLING: "rolling_24h",
    HOUR_OF_DAY: "hour_of_day",
    HOUR_OF_WEEK: "hour_of_week",
    ZERO: "zero_frequency",
}
MAD_SCALE = 1.4826
# A value within the envelope of its lagged hours, widened by this share of the minimum
# change, was seen before: a weekend dip that last weekend also showed is not news.
ENVELOPE_MARGIN = 0.5
BATCH = 16  # series per numpy batch: bounds memory at a few tens of MB for any fleet


def detect_anomalies(
    ctx: Context, *, hours: float, now: int, state: AnomalyState | None = None
) -> AnomalyResult:
    """Anomalies found in (now - hours, now], the current score of every series and metric
    evaluated, and what the data lacked. `state` (the exporter's, kept between its runs)
    saves the baselines of complete hours; the result is the same with or without it."""
    span = window_seconds(hours, HOUR, "hours")
    cfg: AnomalyConfig = ctx.config.anomalies
    start = now - span
    history_start = min(start, now - int(cfg.history_days * DAY))
    rollups = rollups_of(ctx)
    result: AnomalyResult = {
        "window": {"start": start, "end": now, "hours": round_float(span / HOUR)},
        "anomalies": [],
        "scores": [],
        "data_quality": {"series": 0, "evaluated": 0, "without_baseline": 0},
    }
    kinds: dict[str, int] = {}
    invalid: dict[str, int] = {}
    for kind in ("node", "container"):
        parts = rollups.parts(kind, history_start, now)
        memo = None if state is None else state.kinds.setdefault(kind, _Memo())
        model = _model_of(kind, parts, ctx.config, history_start, start, now, memo)
        if model is None:
            continue
        found: list[Anomaly] = []
        scores: list[Score] = []
        if model.keys:
            rows = None if state is None else state.candidates.setdefault(kind, HourRows())
            candidates = _candidates(ctx, kind, model, start, now, rows)
            found, scores = _evaluate(model, candidates, cfg, start, now)
        result["anomalies"].extend(found)
        result["scores"].extend(scores)
        quality = result["data_quality"]
        quality["series"] += len(model.keys) + model.unjudged
        quality["evaluated"] += len(scores)
        unjudged = model.unjudged * len(model.metrics)  # never a baseline: left out
        quality["without_baseline"] += int(model.kinds_now.size - len(scores)) + unjudged
        for code in model.kinds_now.ravel():
            if code != NONE:
                kinds[KIND_NAMES[int(code)]] = kinds.get(KIND_NAMES[int(code)], 0) + 1
        kept = None if state is None else state.invalid.setdefault(kind, HourRows())
        for metric, count in _invalid_counts(ctx, kind, model.metrics, start, now, kept).items():
            invalid[metric] = invalid.get(metric, 0) + count
    result["anomalies"].sort(key=lambda a: (-abs(a["score"] or 0), a["node_name"], a["metric"]))
    quality = result["data_quality"]
    quality["baseline_kinds"] = kinds
    quality["invalid_values"] = {m: n for m, n in invalid.items() if n}
    quality["status"] = "ok" if quality["evaluated"] else "insufficient_data"
    return result


# --------------------------------------------------------------------------- baselines


@dataclass
class _Fit:
    """Per (series, hour, metric): baseline, sample scale, sample bounds, hourly bounds and
    the kind of baseline (0 = none)."""

    base: np.ndarray
    scale: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    hour_scale: np.ndarray
    hour_lo: np.ndarray
    hour_hi: np.ndarray
    kind: np.ndarray


@dataclass
class _Model:
    """Baselines of one kind of series ("node"/"container") over the hour grid."""

    kind: str
    keys: list[tuple[str, str]]
    metrics: tuple[str, ...]
    first_hour: int
    fit: _Fit
    interval: np.ndarray  # (S,) seconds between samples, from the rollups' hourly counts
    shifts: list[dict[str, Any]] = field(default_factory=list)
    kinds_now: np.ndarray = field(default_factory=lambda: np.empty(0, np.int8))
    range: _Range | None = None
    grids: dict[str, np.ndarray] = field(default_factory=dict)
    impact: _Impact | None = None
    unjudged: int = 0  # series with too few hours for any baseline, left out of the grids
    seasonal: _Seasonal | None = None
    # for the memo: hourly sample counts and mean total memory (S, H), the level shifts of
    # the complete hours and, per walked (series, metric), the hour its walk went on from
    counts: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    totals: np.ndarray | None = None
    settled_shifts: list[dict[str, Any]] = field(default_factory=list)
    walked: dict[tuple[int, int], int] = field(default_factory=dict)

    def hour_index(self, t: int) -> int:
        return (t // HOUR * HOUR - self.first_hour) // HOUR


@dataclass
class _Memo:
    """What the runs of one kind of series rebuild identically while the complete hours
    they read are unchanged (an hour completes, a late sample lands in a complete hour, the
    history start moves: each changes them, so each rebuilds): the model from hour `tail` on
    with the level shifts of the complete hours, and what a run needs to add the hour in
    progress to it. A hit reads only the rollups' fresh rows, never the stored month."""

    key: tuple[Any, ...] | None = None
    model: _Model | None = None  # hours from `tail` on (its first_hour is the tail's)
    shifts: list[dict[str, Any]] = field(default_factory=list)  # of the complete hours
    walked: dict[tuple[int, int], int] = field(default_factory=dict)  # see _shifts_of
    sid: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # key id -> s
    # per rollup key id and metric of the view in UNITS: complete hours with a mean (-1:
    # no complete row), which tells whether the hour in progress can change the model
    valid_hours: np.ndarray = field(default_factory=lambda: np.empty((0, 0), np.int64))
    ucols: list[int] = field(default_factory=list)
    cols: list[int] = field(default_factory=list)  # the model's metrics in the view
    counts: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))  # sorted, NaN last
    totals: np.ndarray | None = None  # complete hours' mean total memory, sorted, NaN last
    hits: int = 0
    misses: int = 0


@dataclass
class AnomalyState:
    """The exporter's incremental state of the anomaly analysis, per kind of series."""

    kinds: dict[str, _Memo] = field(default_factory=dict)
    invalid: dict[str, HourRows] = field(default_factory=dict)  # rows with invalid values
    candidates: dict[str, HourRows] = field(default_factory=dict)  # with their bounds


_FIT_FIELDS = tuple(_Fit.__dataclass_fields__)
_RANGE_FIELDS = ("lo", "hi", "mean_lo", "mean_hi")  # the range's fields per hour


def _round_fit(fit: _Fit) -> None:
    """Round the baselines and bounds to float32, in place (they stay float64 arrays, so a
    comparison with a Python float is not made in float32). They are fitted from the
    rollups' float32 statistics, which carry that rounding already, so the baselines do not
    depend on whether a fit was computed in one batch or another."""
    for n in _FIT_FIELDS:
        a = getattr(fit, n)
        if a.dtype == np.float64:
            a[...] = a.astype(np.float32)


def _tail(cfg: AnomalyConfig, window_first: int) -> int:
    """The first hour a run evaluates: the window's, less the candidates' lookback
    (`recent_samples` intervals of at most an hour) and the hours before the window that a
    range departure's start is judged by (`range_quiet_hours`), with a day to spare. The
    memo keeps the model from there on only."""
    back = math.ceil(cfg.recent_samples) + math.ceil(cfg.range_quiet_hours) + 24
    return max(0, window_first - back)


def _model_of(
    kind: str,
    parts: RollupParts,
    config: Config,
    history_start: int,
    start: int,
    now: int,
    memo: _Memo | None,
) -> _Model | None:
    """The model of one kind of series: from the memo and the hour in progress when the
    complete hours are those it was built from, else fitted (and kept) from the view."""
    cfg = config.anomalies
    if memo is not None:
        if memo.model is not None and memo.key == _memo_key(memo, parts, config, start, now):
            memo.hits += 1
            return _from_memo(memo, parts, cfg, config.emergency, now)
        memo.misses += 1
        memo.key, memo.model = None, None  # the stale model goes before the new one is built
    view = parts.view()
    model = _fit_kind(kind, view, cfg, history_start, start, now)
    if model is None or not model.keys:
        return model
    model.impact = _impact_scales(model, view, cfg, config.emergency)
    n_hours = model.fit.kind.shape[1]
    window_first = max(0, model.hour_index(start))
    tail = _tail(cfg, window_first)
    # the range reads hours a quiet gap back; without a gap it reads the hour in progress
    settled = math.ceil(cfg.range_quiet_hours) >= 1 and window_first < n_hours
    if memo is not None and settled and n_hours - tail >= math.ceil(cfg.changepoint_hours):
        _keep(memo, model, view, tail, now)
        memo.key = _memo_key(memo, parts, config, start, now)
    return model


def _memo_key(
    memo: _Memo, parts: RollupParts, config: Config, start: int, now: int
) -> tuple[Any, ...]:
    """What the memo's model is a function of, in O(fresh rows): the stored rows (their
    generation and the hours taken), the fresh rows of complete hours (a digest), and of
    the hour in progress only the rows that could make a series judged or set the first
    hour of a metric (their series had fewer complete hours with a mean than any baseline
    needs): `_fit` reads an hour only for the hours after it."""
    now_hour = now // HOUR * HOUR
    ids, hours, samples, stats = parts.fresh
    done = hours < now_hour
    h = hashlib.blake2b(digest_size=32)
    order = np.lexsort((hours[done], ids[done]))
    for a in (ids, hours, samples, stats):
        h.update(np.ascontiguousarray(a[done][order]).data)
    last = ids[~done]
    have = np.full((last.size, len(memo.ucols)), -1, np.int64)
    known = last < memo.valid_hours.shape[0]
    have[known] = memo.valid_hours[last[known]]
    valid = ~np.isnan(stats[~done][:, _STAT["mean"], :][:, memo.ucols])
    telling = (valid & (have < _fewest_hours(config.anomalies))) | (have < 0)
    rows = telling.any(axis=1)
    order = np.argsort(last[rows], kind="stable")
    h.update(np.ascontiguousarray(last[rows][order]).data)
    h.update(np.ascontiguousarray(telling[rows][order]).data)
    hours_of = (start // HOUR, now_hour, parts.first, parts.settled, parts.generation)
    return (*hours_of, parts.metrics, config.anomalies, config.emergency, h.digest())


def _keep(memo: _Memo, model: _Model, view: RollupView, tail: int, now: int) -> None:
    """Keep a fitted model from hour `tail` on (copies: the run's own arrays go), and what
    adding the hour in progress to it needs."""
    done = view.hours < now // HOUR * HOUR
    memo.ucols = [i for i, m in enumerate(view.metrics) if m in UNITS]
    memo.cols = [view.metrics.index(m) for m in model.metrics]
    valid = ~np.isnan(view.stats[:, _STAT["mean"], :][done][:, memo.ucols])
    n_ids = len(view.keys)
    have = np.stack(
        [np.bincount(view.ids[done], valid[:, k], n_ids) for k in range(valid.shape[1])], 1
    ).astype(np.int64) if valid.shape[1] else np.zeros((n_ids, 0), np.int64)  # fmt: skip
    have[np.bincount(view.ids[done], minlength=n_ids) == 0] = -1
    memo.valid_hours = have
    index = {k: i for i, k in enumerate(view.keys)}
    memo.sid = np.full(n_ids, -1, np.int64)
    memo.sid[[index[k] for k in model.keys]] = np.arange(len(model.keys))
    counts = model.counts[:, :-1]
    memo.counts = np.sort(np.where(counts > 0, counts, np.nan), axis=1)
    memo.totals = None if model.totals is None else np.sort(model.totals[:, :-1], axis=1)
    memo.shifts, memo.walked = model.settled_shifts, model.walked
    r, seasonal = model.range, model.seasonal
    assert r is not None
    edges = {n: getattr(r, n)[:, tail:].copy() for n in _RANGE_FIELDS}
    memo.model = dataclasses.replace(
        model,
        first_hour=model.first_hour + tail * HOUR,
        fit=_Fit(*(getattr(model.fit, n)[:, tail:].copy() for n in _FIT_FIELDS)),
        range=_Range(**edges, median=r.median, noise=r.noise, mean_noise=r.mean_noise,
                     margin=r.margin),
        grids={k: g[:, tail:].copy() for k, g in model.grids.items()},
        seasonal=None if seasonal is None else dataclasses.replace(
            seasonal, first=seasonal.first - tail),
        shifts=[], counts=np.empty((0, 0)), totals=None, settled_shifts=[], walked={},
    )  # fmt: skip


def _from_memo(
    memo: _Memo, parts: RollupParts, cfg: AnomalyConfig, emergency: EmergencyConfig, now: int
) -> _Model:
    """The memo's model with the hour in progress of the fresh rows: its grid column, its
    sample counts and total memory (medians over every hour), its seasonal scores and a
    level shift it may complete. The fit, range and complete hours' grids are shared: no
    run changes them."""
    kept = memo.model
    assert kept is not None
    ids, hours, samples, stats = parts.fresh
    rows = np.flatnonzero(hours == now // HOUR * HOUR)
    known = ids[rows] < memo.sid.size
    rows = rows[known]
    s = memo.sid[ids[rows]]
    rows, s = rows[s >= 0], s[s >= 0]
    grids = {}
    for name, g in kept.grids.items():
        g = g.copy()
        g[:, -1] = np.nan
        g[s, -1] = stats[rows][:, _STAT[name]][:, memo.cols]
        grids[name] = g
    n_series = len(kept.keys)
    count = np.full(n_series, np.nan)
    count[s] = samples[rows]
    per_hour = _merged_median(memo.counts, np.where(count > 0, count, np.nan))
    interval = np.clip(HOUR / np.maximum(np.where(np.isnan(per_hour), 1, per_hour), 1), 1, HOUR)
    model = dataclasses.replace(kept, grids=grids, interval=interval)
    model.kinds_now = kept.fit.kind[:, -1, :]
    model.seasonal = _seasonal_now(kept.seasonal, grids["mean"])
    model.shifts = _sorted_shifts(memo.shifts + _last_hour_shifts(model, memo.walked, cfg, now))
    total = np.full(n_series, np.nan)
    if memo.totals is not None:
        last = np.full(n_series, np.nan, np.float32)
        last[s] = stats[rows, _STAT["mean"], parts.metrics.index("mem_total_mb")]
        total = _merged_median(memo.totals, last).astype(np.float64)
    model.impact = _impact_of(model, total, cfg, emergency)
    return model


def _merged_median(sorted_: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per row, the median of the row's values (sorted, NaN last) and x (ignored when NaN),
    as np.nanmedian computes it, in the arrays' dtype; NaN for a row without any value."""
    n = (~np.isnan(sorted_)).sum(axis=1)
    has = ~np.isnan(x)
    total = n + has
    with np.errstate(invalid="ignore"):
        below = (sorted_ < x[:, None]).sum(axis=1)  # x's rank among the row's values

    def at(q: np.ndarray) -> np.ndarray:
        q = np.clip(q, 0, None)
        own = _take(sorted_, np.where(has & (q > below), q - 1, q))
        return np.where(has & (q == below), x, own)

    lower, upper = at((total - 1) // 2), at(total // 2)
    with np.errstate(invalid="ignore"):
        return np.where(total > 0, (lower + upper) / 2, np.nan).astype(sorted_.dtype)


def _take(a: np.ndarray, q: np.ndarray) -> np.ndarray:
    if a.shape[1] == 0:
        return np.full(a.shape[0], np.nan, a.dtype)
    return np.take_along_axis(a, np.clip(q, 0, a.shape[1] - 1)[:, None], axis=1)[:, 0]


def _sorted_shifts(shifts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Level shifts by series, metric and time, the order the walk finds them in."""
    return sorted(shifts, key=lambda x: (x["series"], x["metric"], x["hour"]))


def _fit_kind(
    kind: str,
    view: RollupView,
    cfg: AnomalyConfig,
    history_start: int,
    start: int,
    now: int,
) -> _Model | None:
    """Dense hourly grids of the view's series that have the hours of history a baseline
    needs, their baselines and their level shifts. The others could never be judged, so
    they are only counted: the grids are sized by the series worth judging, not by every
    name that ever wrote a row."""
    if view.ids.size == 0:
        return None
    present = ~np.isnan(view.stats[:, _STAT["mean"], :]).all(axis=0)  # columns with data
    metrics = tuple(m for i, m in enumerate(view.metrics) if m in UNITS and present[i])
    if not metrics:
        return None
    first = history_start // HOUR * HOUR
    n_hours = (now // HOUR * HOUR - first) // HOUR + 1
    cols = [view.metrics.index(m) for m in metrics]
    view, unjudged = _judged(view, cols, _fewest_hours(cfg))
    series = list(view.series())
    shape = (len(series), n_hours, len(metrics))
    if not series:
        empty = _Fit(*(np.empty(shape, np.int8 if n == "kind" else float) for n in _FIT_FIELDS))
        model = _Model(kind, [], metrics, first, empty, np.empty(0), unjudged=unjudged)
        model.kinds_now = empty.kind[:, -1, :]
        return model
    # the rollups' float32 statistics, held exactly in half the memory; each computation
    # takes float64 copies of what it reads (a batch of series, the range's past hours)
    grids = {name: np.full(shape, np.nan, np.float32) for name in ("mean", "sd", "min", "max")}
    counts = np.zeros(shape[:2])
    total = view.metrics.index("mem_total_mb") if "mem_total_mb" in view.metrics else None
    totals = None if total is None else np.full(shape[:2], np.nan, np.float32)
    for s, (_, rows) in enumerate(series):
        h = (view.hours[rows] - first) // HOUR
        ok = (h >= 0) & (h < n_hours)
        rows, h = rows[ok], h[ok]
        counts[s, h] = view.samples[rows]
        for name in grids:
            grids[name][s, h] = view.stats[rows][:, _STAT[name]][:, cols]
        if totals is not None:
            totals[s, h] = view.stats[rows, _STAT["mean"], total]
    floors = _floors(cfg, metrics)
    window_first = max(0, (start // HOUR * HOUR - first) // HOUR)
    keys = [key for key, _ in series]
    fit: _Fit | None = None
    for i in range(0, len(series), BATCH):  # written batch by batch into one set of arrays
        part = _fit({k: g[i : i + BATCH].astype(np.float64) for k, g in grids.items()}, floors, cfg)
        if fit is None:
            fit = _Fit(*(np.empty(shape, getattr(part, n).dtype) for n in _FIT_FIELDS))
        for n in _FIT_FIELDS:
            getattr(fit, n)[i : i + BATCH] = getattr(part, n)
    assert fit is not None
    _zero_inflated(fit, grids, metrics, cfg, window_first, floors)
    _round_fit(fit)
    unmasked = _range(grids, metrics, cfg, window_first)
    before = max(0, window_first - math.ceil(cfg.range_quiet_hours) - 1)
    seasonal = _seasonal(grids["mean"], cfg, before, n_hours - 1)
    model = _Model(kind, keys, metrics, first, fit, _intervals(counts), unjudged=unjudged)
    model.grids, model.counts, model.totals = grids, counts, totals
    # the level shifts of the complete hours (the hour in progress hidden: they are what a
    # memo keeps), then one the hour in progress may complete
    progress = grids["mean"][:, -1].copy()
    grids["mean"][:, -1] = np.nan
    model.settled_shifts = _level_shifts(model, grids, floors, cfg, now, model.walked)
    grids["mean"][:, -1] = progress
    found = _last_hour_shifts(model, model.walked, cfg, now)
    model.shifts = _sorted_shifts(model.settled_shifts + found)
    model.kinds_now = fit.kind[:, -1, :]
    model.range = _masked_range(unmasked, fit)
    model.seasonal = seasonal
    return model


_STAT = {"count": 0, "mean": 1, "sd": 2, "min": 3, "max": 4}


def _judged(view: RollupView, cols: list[int], fewest: int) -> tuple[RollupView, int]:
    """The view without the series that have fewer than `fewest` hours with a mean of any
    of the metrics `cols` (the series' rows are dropped, its key stays), and how many those
    were. Counted per series with numpy, before any per-series structure exists."""
    valid = ~np.isnan(view.stats[:, _STAT["mean"], :][:, cols])  # (rows, metrics)
    hours = np.zeros((len(view.keys), len(cols)), np.int64)
    np.add.at(hours, view.ids, valid.astype(np.int64))
    keep = np.any(hours >= fewest, axis=1)
    present = np.zeros(len(view.keys), bool)
    present[view.ids] = True
    unjudged = int((present & ~keep).sum())
    if not unjudged:
        return view, 0
    rows = keep[view.ids]
    return dataclasses.replace(
        view,
        ids=view.ids[rows],
        hours=view.hours[rows],
        samples=view.samples[rows],
        stats=view.stats[rows],
    ), unjudged


def _fewest_hours(cfg: AnomalyConfig) -> int:
    """Hours with a mean that any baseline needs (the least `min_valid` of `_fit`'s
    options; the frequency test of counters needs more): a series with fewer never gets a
    baseline, a range or a score, whatever its values."""
    return min(min_valid for _, _, min_valid, _ in _options(cfg))


def _options(cfg: AnomalyConfig) -> tuple[tuple[int, np.ndarray, int, float], ...]:
    """Baseline kinds in order of preference: (kind, lags in hours, lagged hours with a mean
    needed, hours of age needed)."""
    return (
        (HOUR_OF_WEEK, 168 * np.arange(1, 5), 3, cfg.hour_of_week_days * 24),
        (HOUR_OF_DAY, 24 * np.arange(1, 8), 4, cfg.hour_of_day_days * 24),
        (ROLLING, np.arange(1, 25), max(1, cfg.rolling_min_hours), 0),
    )


def _floors(cfg: AnomalyConfig, metrics: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per metric: absolute scale floor and minimum change, from the metric's unit."""
    return {
        "scale": np.array([getattr(cfg, f"{UNITS[m]}_scale_floor") for m in metrics]),
        "change": np.array([getattr(cfg, f"{UNITS[m]}_min_change") for m in metrics]),
    }


def _intervals(counts: np.ndarray) -> np.ndarray:
    """Seconds between samples per series: an hour over its median hourly sample count."""
    filled = np.where(counts > 0, counts, np.nan)
    per_hour = _nanmedian(np.where(np.isnan(filled).all(1, keepdims=True), 1, filled), axis=1)
    return np.clip(HOUR / np.maximum(per_hour, 1), 1, HOUR)


def _fit(grids: dict[str, np.ndarray], floors: dict[str, np.ndarray], cfg: AnomalyConfig) -> _Fit:
    """Baselines of a batch (series, hour, metric): each hour chooses the richest kind its
    history allows, falling back when too few lagged hours are present."""
    mean = grids["mean"]
    n_hours = mean.shape[1]
    valid = ~np.isnan(mean)
    seen = np.maximum.accumulate(valid, axis=1)
    first = np.where(seen.any(1), np.argmax(valid, axis=1), n_hours)[:, None, :]
    age = np.arange(n_hours)[None, :, None] - first  # hours since the first valid one
    options = _options(cfg)
    out = {k: np.full(mean.shape, np.nan) for k in ("base", "within", "between", "lo", "hi")}
    out["mlo"], out["mhi"] = np.full(mean.shape, np.nan), np.full(mean.shape, np.nan)
    kind = np.zeros(mean.shape, np.int8)
    for code, lags, min_valid, min_age in options:
        at = np.flatnonzero(((kind == NONE) & (age >= min_age)).any(axis=(0, 2)))
        if at.size == 0:
            continue  # only the hours still without a baseline are computed
        stats = _lagged(grids, at, lags, min_valid)
        take = (kind[:, at] == NONE) & (age[:, at] >= min_age) & ~np.isnan(stats["base"])
        for k in out:
            out[k][:, at] = np.where(take, stats[k], out[k][:, at])
        kind[:, at] = np.where(take, code, kind[:, at])
    base = out["base"]
    floor = np.maximum(cfg.scale_floor_rel * np.abs(base), floors["scale"])
    scale = np.fmax(np.sqrt(np.nan_to_num(out["within"]) ** 2 + out["between"] ** 2), floor)
    hour_scale = np.fmax(out["between"], floor)
    change = np.maximum(cfg.min_change_rel * np.abs(base), floors["change"])
    thr = cfg.score_threshold
    margin = ENVELOPE_MARGIN * change
    return _Fit(
        base=base,
        scale=scale,
        lo=np.fmin(np.minimum(base - thr * scale, base - change), out["lo"] - margin),
        hi=np.fmax(np.maximum(base + thr * scale, base + change), out["hi"] + margin),
        hour_scale=hour_scale,
        hour_lo=np.fmin(np.minimum(base - thr * hour_scale, base - change), out["mlo"] - margin),
        hour_hi=np.fmax(np.maximum(base + thr * hour_scale, base + change), out["mhi"] + margin),
        kind=kind,
    )


def _lagged(grids: dict[str, np.ndarray], at: np.ndarray, lags: np.ndarray, min_valid: int) -> dict:
    """Robust statistics of the hours `lags` before each hour of `at`: median of means,
    pooled 1.4826*MAD, median sd, envelopes (extremes of min/max and of means)."""
    idx = at[:, None] - lags[None, :]
    outside = idx < 0

    def gather(name: str) -> np.ndarray:
        g = grids[name][:, np.clip(idx, 0, None), :]  # (S, H, K, M)
        g[:, outside, :] = np.nan
        return np.sort(g, axis=2)  # NaN last

    means = gather("mean")
    n = (~np.isnan(means)).sum(axis=2)
    enough = n >= min_valid
    base = _median_sorted(means, n)
    spread = MAD_SCALE * _median_sorted(np.sort(np.abs(means - base[:, :, None, :]), 2), n)
    typical = _nanmedian(np.where(enough, spread, np.nan), axis=1, keepdims=True)
    sds = gather("sd")
    lows, highs = gather("min"), gather("max")
    second = np.where(n >= 8, 1, 0)  # long lag sets (rolling) ignore one past extreme
    out = {
        "base": base,
        "between": np.fmax(spread, typical),
        "within": _median_sorted(sds, (~np.isnan(sds)).sum(axis=2)),
        "lo": _pick(lows, second),
        "hi": _pick(highs, (~np.isnan(highs)).sum(axis=2) - 1 - second),
        "mlo": _pick(means, second),
        "mhi": _pick(means, n - 1 - second),
    }
    return {k: np.where(enough, v, np.nan) for k, v in out.items()}


def _nanmedian(a: np.ndarray, **kwargs: Any) -> Any:
    """np.nanmedian without the warning for all-NaN slices (they give NaN, as wanted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(a, **kwargs)


def _pick(sorted_: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Element `pos` (per cell) along the lag axis of a sorted gather; NaN when absent."""
    pos = np.clip(pos, 0, sorted_.shape[2] - 1)
    return np.take_along_axis(sorted_, pos[:, :, None, :], axis=2)[:, :, 0, :]


def _median_sorted(sorted_: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Median along the lag axis of a NaN-last sorted gather with `n` valid values."""
    lower = _pick(sorted_, (n - 1) // 2)
    upper = _pick(sorted_, n // 2)
    return np.where(n > 0, (lower + upper) / 2, np.nan)


def _zero_inflated(
    fit: _Fit,
    grids: dict[str, np.ndarray],
    metrics: tuple[str, ...],
    cfg: AnomalyConfig,
    window_first: int,
    floors: dict[str, np.ndarray],
) -> None:
    """Counters that were (almost) never nonzero before the window: baseline 0, and any
    sustained burst above the minimum change is anomalous (a frequency test)."""
    for m, metric in enumerate(metrics):
        if metric not in COUNTERS:
            continue
        past = grids["max"][:, :window_first, m]
        hours = (~np.isnan(past)).sum(axis=1)
        with np.errstate(all="ignore"):
            rate = (past > 0).sum(axis=1) / hours
        rare = (hours >= max(1, cfg.rolling_min_hours)) & (rate <= cfg.zero_rate_max)
        scale = floors["scale"][m]
        hi = max(cfg.score_threshold * scale, floors["change"][m])
        for name, value in (
            ("base", 0.0),
            ("scale", scale),
            ("hour_scale", scale),
            ("hi", hi),
            ("hour_hi", hi),
            ("lo", np.nan),
            ("hour_lo", np.nan),
            ("kind", ZERO),
        ):
            getattr(fit, name)[rare, :, m] = value


# --------------------------------------------------------------------------- range


@dataclass
class _Range:
    """What each series has shown before each hour (S, H, M): extremes of its samples and
    of its hourly means over the past `range_days`; and per series and metric (S, M): the
    median level, the sample noise (median hourly sd) and the noise of hourly means, all
    from the hours before the window so every hour of it is judged the same way."""

    lo: np.ndarray
    hi: np.ndarray
    mean_lo: np.ndarray
    mean_hi: np.ndarray
    median: np.ndarray
    noise: np.ndarray
    mean_noise: np.ndarray
    margin: float
    # bounds of an hour, computed once: the episode walk asks for them per sample
    _hours: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, init=False, repr=False
    )

    def bounds(self, h: int | slice) -> tuple[np.ndarray, np.ndarray]:
        """Sample bounds (S, M), or (S, hours, M) for a slice: beyond them a sample has
        left the range."""
        pad = self.margin * self.noise
        if isinstance(h, slice):
            return _widened(self.lo[:, h], self.hi[:, h], pad[:, None, :])
        if ("sample", h) not in self._hours:
            self._hours[("sample", h)] = _widened(self.lo[:, h], self.hi[:, h], pad)
        return self._hours[("sample", h)]

    def mean_bounds(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        if ("mean", h) not in self._hours:
            pad = self.margin * self.mean_noise
            self._hours[("mean", h)] = _widened(self.mean_lo[:, h], self.mean_hi[:, h], pad)
        return self._hours[("mean", h)]


# The rollups keep float32 statistics: a sample equal to the range's edge can differ from
# the stored edge in the seventh digit, which is rounding, not a departure.
ROUNDING = 1e-6


def _widened(lo: np.ndarray, hi: np.ndarray, pad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = lo.astype(np.float64), hi.astype(np.float64)  # the stored edges are float32
    return lo - pad - ROUNDING * np.abs(lo), hi + pad + ROUNDING * np.abs(hi)


def _range(
    grids: dict[str, np.ndarray],
    metrics: tuple[str, ...],
    cfg: AnomalyConfig,
    window_first: int,
) -> _Range:
    """The range each series has shown until `range_quiet_hours` ago: a value beyond it by a
    few noise scales is news, however the series is shaped. Needs a day of history; counters
    use the frequency test."""
    hours = max(1, round(cfg.range_days * 24))
    # the range ends where an episode could have begun: its own hours never widen it
    gap = math.ceil(cfg.range_quiet_hours)
    past = slice(max(0, window_first - hours), window_first)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = grids["mean"][:, past].astype(np.float64)
        median = np.nanmedian(means, axis=1)
        noise = np.nanmedian(grids["sd"][:, past].astype(np.float64), axis=1)
        steps = np.abs(np.diff(means, axis=1))
        mean_noise = MAD_SCALE * np.nanmedian(steps, axis=1) / math.sqrt(2)
    enough = (~np.isnan(means)).sum(axis=1) >= 24
    enough &= np.array([m not in COUNTERS for m in metrics])[None, :]
    # a flat series (or flat hourly means) has no noise to measure a departure by
    noise[~(noise > 0)] = np.nan
    mean_noise[~(mean_noise > 0)] = np.nan
    rank = int(cfg.range_day_rank)

    def extreme(name: str, op: Any) -> np.ndarray:
        # the grids hold the rollups' float32 statistics, and an extreme is one of them:
        # float32 keeps every edge exactly, in half the memory (the memo keeps these)
        return _ranked_extreme(grids[name].astype(np.float32, copy=False), hours, gap, op, rank)

    out = _Range(
        lo=extreme("min", np.fmin),
        hi=extreme("max", np.fmax),
        mean_lo=extreme("mean", np.fmin),
        mean_hi=extreme("mean", np.fmax),
        median=np.where(enough, median, np.nan),
        noise=np.where(enough, noise, np.nan),
        mean_noise=np.where(enough, mean_noise, np.nan),
        margin=cfg.range_margin,
    )
    for name in ("lo", "hi", "mean_lo", "mean_hi"):
        a = getattr(out, name)
        a[~np.broadcast_to(enough[:, None, :], a.shape)] = np.nan
    return out


def _masked_range(r: _Range, fit: _Fit) -> _Range:
    """The range without the hours a counter is judged by the frequency test (the fit's
    kind, which level shifts may have refitted, so this runs after them). In place: the
    memo keeps a copy of its own, so no second set of edges is built."""
    zero = fit.kind == ZERO
    for name in _RANGE_FIELDS:
        getattr(r, name)[zero] = np.nan
    return r


def _ranked_extreme(a: np.ndarray, hours: int, gap: int, op: Any, rank: int) -> np.ndarray:
    """The `rank`-th most extreme of the daily extremes in the range's history: with rank 2
    one past day alone (an earlier incident) does not set the range."""
    if rank <= 1 or hours < 48:
        return _past_extreme(a, hours, gap, op)
    day = _past_extreme(a, 24, gap, op)
    stack = np.full((hours // 24, *a.shape), np.nan, a.dtype)
    for k in range(hours // 24):
        stack[k, :, 24 * k :] = day[:, : a.shape[1] - 24 * k]
    sign = -1.0 if op is np.fmax else 1.0
    ordered = np.sort(sign * stack, axis=0)  # most extreme first, NaN last
    return sign * ordered[min(rank, stack.shape[0]) - 1]


def _past_extreme(a: np.ndarray, hours: int, gap: int, op: Any) -> np.ndarray:
    """op (np.fmax / np.fmin) of a[:, h - gap - hours : h - gap] for every hour h, in
    log(hours) passes: blocks of doubling length, then two overlapping blocks per hour."""

    def shift(x: np.ndarray, k: int) -> np.ndarray:
        out = np.full_like(x, np.nan)
        if k < x.shape[1]:
            out[:, k:] = x[:, : x.shape[1] - k]
        return out

    block, length = shift(a, gap), 1  # block[h] covers `length` hours, `gap` before h
    while 2 * length <= hours:
        block, length = op(block, shift(block, length)), 2 * length
    return op(block, shift(block, hours - length))


def _ratio(value: float, median: float, edge: float) -> float:
    """How far past its range a value went: 1 at the edge, 2 twice as far from the median."""
    if math.isnan(edge) or math.isnan(median) or edge == median:
        return math.nan
    return (value - median) / (edge - median)


SEASONAL_LAGS = 24 * np.arange(1, 8)  # the same hour on each of the previous 7 days
SEASONAL_MIN_DAYS = 3  # fewer previous days make the median a poor prediction
TAIL_QUANTILE = 0.99  # residual quantile a bursty series' scale is matched at
TAIL_Z = statistics.NormalDist().inv_cdf(0.5 + TAIL_QUANTILE / 2)  # a normal's |z| there


@dataclass
class _Seasonal:
    """Hourly means against the median of the same hour on the previous days, for the hours
    `first..last` (S, hours, M): residual, that median, and per series and metric the robust
    scale of the residuals of the hours before the window. A daily pattern (a nightly job)
    is its own baseline, so an hour unusual for its time of day stands out even inside the
    range the pattern sets."""

    first: int
    base: np.ndarray
    z: np.ndarray
    scale: np.ndarray
    threshold: float

    def beyond(self, s: int, m: int, h: int) -> bool:
        return bool(abs(self.z[s, h - self.first, m]) > self.threshold)


def _seasonal_residuals(mean: np.ndarray, hours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(residual, baseline) of the hourly means of `hours`, by series in batches."""
    idx = hours[:, None] - SEASONAL_LAGS[None, :]
    res = np.full((mean.shape[0], hours.size, mean.shape[2]), np.nan)
    base = np.full_like(res, np.nan)
    for i in range(0, mean.shape[0], BATCH):
        g = mean[i : i + BATCH].astype(np.float64)[:, np.clip(idx, 0, None), :]  # (S, H, K, M)
        g[:, idx < 0, :] = np.nan
        n = (~np.isnan(g)).sum(axis=2)
        b = np.where(n >= SEASONAL_MIN_DAYS, _median_sorted(np.sort(g, axis=2), n), np.nan)
        base[i : i + BATCH] = b
        res[i : i + BATCH] = mean[i : i + BATCH][:, hours, :] - b
    return res, base


def _hours_quantile(a: np.ndarray, q: float) -> np.ndarray:
    """Quantile `q` of (S, H, M) over its hours, ignoring NaN (linear between order
    statistics, as np.nanquantile): by one sort, not numpy's per-slice masked path, which
    costs more than the sort on the few series of a small fleet."""
    if a.shape[1] == 0:  # no past hours: no scale, as np.nanquantile's all-NaN slices
        return np.full((a.shape[0], a.shape[2]), np.nan)
    sorted_ = np.sort(a, axis=1)[:, None]  # (S, 1, H, M), NaN last
    n = (~np.isnan(a)).sum(axis=1)[:, None]
    pos = q * (n - 1)
    low = np.floor(pos).astype(np.int64)
    below, above = _pick(sorted_, low), _pick(sorted_, np.minimum(low + 1, n - 1))
    return np.where(n > 0, below + (above - below) * (pos - low), np.nan)[:, 0]


def _seasonal(mean: np.ndarray, cfg: AnomalyConfig, first: int, last: int) -> _Seasonal | None:
    """Seasonal residuals of hours first..last, standardised by 1.4826 * MAD of the
    residuals over the `range_days` before `first`. The threshold is the two-sided normal
    quantile for `seasonal_false_per_day` spread over 24 hourly tests: on Gaussian noise
    (hourly means of AR(1) samples are close to independent) that is the stated rate."""
    rate = cfg.seasonal_false_per_day
    if rate <= 0 or last < first:
        return None
    past = np.arange(max(0, first - max(1, round(cfg.range_days * 24))), first)
    res, _ = _seasonal_residuals(mean, past)
    centre = _hours_quantile(res, 0.5)
    dev = np.abs(res - centre[:, None, :])
    scale = MAD_SCALE * _hours_quantile(dev, 0.5)
    # heavy tails (bursty series): the normal scale that puts the past residuals' 99th
    # percentile where a normal's would be; on normal noise both agree
    tail_scale = _hours_quantile(dev, TAIL_QUANTILE) / TAIL_Z
    level = np.abs(_hours_quantile(mean[:, past].astype(np.float64), 0.5))
    scale = np.fmax(np.fmax(scale, tail_scale), cfg.scale_floor_rel * level)
    scale[~(scale > 0) | ((~np.isnan(res)).sum(axis=1) < 24)] = np.nan
    now_res, base = _seasonal_residuals(mean, np.arange(first, last + 1))
    tail = min(0.5, rate / 24 / 2)
    threshold = statistics.NormalDist().inv_cdf(1 - tail)
    return _Seasonal(first, base, now_res / scale[:, None, :], scale, threshold)


def _seasonal_now(kept: _Seasonal | None, mean: np.ndarray) -> _Seasonal | None:
    """A seasonal test kept from complete hours, with the hour in progress rescored: its
    baseline (earlier days) and the scale (hours before the window) are of complete hours,
    so only its own mean can have moved."""
    if kept is None:
        return None
    z = kept.z.copy()
    k = mean.shape[1] - 1 - kept.first
    z[:, k] = (mean[:, -1] - kept.base[:, k]) / kept.scale
    return dataclasses.replace(kept, z=z)


# --------------------------------------------------------------------------- impact


@dataclass
class _Impact:
    """What a move means in practice, per metric: its emergency levels (with the factor
    that turns them into the metric's unit per series: free memory's are % of the total)
    and the unit's practical scale."""

    levels: dict[int, Levels]
    factor: np.ndarray  # (S, M): emergency level units -> the metric's unit
    practical: np.ndarray  # (M,)


# metric -> EmergencyConfig levels it is judged by (load needs CPU counts the table lacks)
EMERGENCY_LEVELS = {
    "cpu_total_pct": "cpu_pct",
    "cpu_iowait_pct": "iowait_pct",
    "temperature_c": "temperature_c",
    "mem_available_mb": "mem_available_pct",
}


def _impact_scales(
    model: _Model, view: RollupView, cfg: AnomalyConfig, emergency: EmergencyConfig
) -> _Impact:
    """Emergency levels and practical scales of the model's metrics."""
    total = np.full(len(model.keys), np.nan)
    if "mem_total_mb" in view.metrics:
        index = {key: s for s, key in enumerate(model.keys)}
        means = view.stats[:, _STAT["mean"], view.metrics.index("mem_total_mb")]
        for key, rows in view.series():
            s = index.get(key, -1)  # the view may hold series the model left out
            if s >= 0 and rows.size and not np.isnan(means[rows]).all():
                total[s] = float(_nanmedian(means[rows]))
    return _impact_of(model, total, cfg, emergency)


def _impact_of(
    model: _Model, total: np.ndarray, cfg: AnomalyConfig, emergency: EmergencyConfig
) -> _Impact:
    """The same from each series' median total memory (NaN: not known)."""
    factor = np.ones((len(model.keys), len(model.metrics)))
    levels: dict[int, Levels] = {}
    for m, metric in enumerate(model.metrics):
        if metric not in EMERGENCY_LEVELS:
            continue
        levels[m] = getattr(emergency, EMERGENCY_LEVELS[metric])
        if metric == "mem_available_mb":
            factor[:, m] = total / 100  # NaN without a total: the practical scale judges
    practical = cfg.impact_scale_changes * _floors(cfg, model.metrics)["change"]
    return _Impact(levels, factor, np.maximum(practical, 1e-9))


def _impact(model: _Model, s: int, m: int, value: float, base: float) -> float:
    """How much a move from `base` to `value` matters: the share of the way to the
    metric's emergency P3 level when it moved toward it from below that level (1 = it got
    there), else the move in practical scales. Never from the noise: a quiet metric's big
    z is still a small move."""
    imp = model.impact
    if imp is None or math.isnan(value) or math.isnan(base):
        return math.nan
    delta = value - base
    levels = imp.levels.get(m)
    if levels is not None and not math.isnan(imp.factor[s, m]):
        edge = levels.p3 * float(imp.factor[s, m])
        gap = edge - base if levels.higher_is_worse else base - edge
        toward = delta > 0 if levels.higher_is_worse else delta < 0
        if toward and gap > 0:
            return abs(delta) / gap
    return abs(delta) / float(imp.practical[m])


def _impact_priority(impact: float, cfg: AnomalyConfig) -> str:
    if math.isnan(impact) or impact >= cfg.impact_p1:
        return "P1-CRITICAL"  # unknown impact: the other caps decide
    if impact >= cfg.impact_p2:
        return "P2-WARNING"
    return "P3-ADVISORY"


def _capped(priority: str, *caps: str) -> str:
    """The least urgent of a priority and its caps."""
    return min((priority, *caps), key=PRIORITIES.index)


# --------------------------------------------------------------------------- level shifts


def _level_shifts(
    model: _Model,
    grids: dict[str, np.ndarray],
    floors: dict[str, np.ndarray],
    cfg: AnomalyConfig,
    now: int,
    walked: dict[tuple[int, int], int],
) -> list[dict[str, Any]]:
    """Runs of `changepoint_hours` hourly means beyond their bounds, the same way: each is
    a new normal. Later hours are refitted on history moved by the shift."""
    run_hours = max(1, math.ceil(cfg.changepoint_hours))
    fit = model.fit
    signs = _hour_signs(fit, grids["mean"])
    hit = _has_run(signs, run_hours)
    shifts = []
    for s, m in zip(*np.nonzero(hit), strict=True):
        found = _shifts_of(model, grids, floors, cfg, int(s), int(m), run_hours, now, walked)
        shifts.extend(found)
    return shifts


def _last_hour_shifts(
    model: _Model, walked: dict[tuple[int, int], int], cfg: AnomalyConfig, now: int
) -> list[dict[str, Any]]:
    """The level shifts the hour in progress completes: a run of `changepoint_hours` of
    equal signs ending with it, after the hour each walk of the complete hours went on
    from. Nothing is refitted: no hour follows it. With the complete hours' walk, this is
    the walk over every hour (the walk finds runs in time order, and the hour in progress
    changes no fit)."""
    run_hours = max(1, math.ceil(cfg.changepoint_hours))
    fit, mean = model.fit, model.grids["mean"]
    n_hours = mean.shape[1]
    r = n_hours - run_hours
    if r < 0:
        return []
    signs = _hour_signs(_Fit(*(getattr(fit, n)[:, r:] for n in _FIT_FIELDS)), mean[:, r:])
    run = (signs != 0).all(axis=1) & (signs == signs[:, :1]).all(axis=1)
    hour = model.first_hour + r * HOUR
    shifts = []
    for s, m in zip(*np.nonzero(run), strict=True):
        s, m = int(s), int(m)
        if hour < walked.get((s, m), hour):
            continue  # inside the run of a shift the walk found
        value = mean[s, r:, m].astype(np.float64)
        moved = value - fit.base[s, r:, m]
        shifts.append(
            {
                "series": s,
                "metric": m,
                "hour": hour,
                "known": min(now, model.first_hour + (n_hours - 1) * HOUR),
                "absorbed_until": model.first_hour + n_hours * HOUR,
                "value": float(_nanmedian(value)),
                "baseline": float(_nanmedian(fit.base[s, r:, m])),
                "score": float(_nanmedian(moved / fit.scale[s, r:, m])),
                "kind": int(fit.kind[s, r, m]),
            }
        )
    return shifts


def _hour_signs(fit: _Fit, mean: np.ndarray) -> np.ndarray:
    """+1 / -1 where an hourly mean is above / below its hourly bounds, else 0."""
    ordinary = (fit.kind != NONE) & (fit.kind != ZERO)
    with np.errstate(invalid="ignore"):
        up = ordinary & (mean > fit.hour_hi)
        down = ordinary & (mean < fit.hour_lo)
    return up.astype(np.int8) - down.astype(np.int8)


def _has_run(signs: np.ndarray, length: int) -> np.ndarray:
    """(S, M) True where some run of `length` equal nonzero signs exists along hours."""
    hit = np.zeros((signs.shape[0], signs.shape[2]), bool)
    if signs.shape[1] < length:
        return hit
    for sign in (1, -1):
        total = np.cumsum(signs == sign, axis=1, dtype=np.int32)
        total = np.concatenate([np.zeros_like(total[:, :1]), total], axis=1)
        hit |= ((total[:, length:] - total[:, :-length]) >= length).any(axis=1)
    return hit


def _first_run(signs: np.ndarray, length: int, start: int) -> int | None:
    """Index of the first hour >= start that opens a run of `length` equal nonzero signs."""
    run, prev = 0, 0
    for h in range(start, signs.size):
        cur = int(signs[h])
        run = run + 1 if cur != 0 and cur == prev else int(cur != 0)
        prev = cur
        if run >= length:
            return h - length + 1
    return None


def _shifts_of(
    model: _Model,
    grids: dict[str, np.ndarray],
    floors: dict[str, np.ndarray],
    cfg: AnomalyConfig,
    s: int,
    m: int,
    run_hours: int,
    now: int,
    walked: dict[tuple[int, int], int],
) -> list[dict[str, Any]]:
    """Walk the change points of series s, metric m in time order; after each, refit the
    hours from `since + run_hours` on, with the history before `since` moved by the shift.
    `walked` gets the hour the walk went on from after the last one."""
    fit = model.fit
    one = {k: g[s : s + 1, :, m : m + 1].astype(np.float64) for k, g in grids.items()}
    one_floors = {k: v[m : m + 1] for k, v in floors.items()}
    signs = _hour_signs(_slice(fit, s, m), one["mean"])[0, :, 0]
    shifts, pos = [], 0
    while (r := _first_run(signs, run_hours, pos)) is not None:
        end = r + run_hours
        moved = one["mean"][0, r:end, 0] - fit.base[s, r:end, m]
        offset = float(_nanmedian(moved))
        shifts.append(
            {
                "series": s,
                "metric": m,
                "hour": model.first_hour + r * HOUR,
                "known": min(now, model.first_hour + (end - 1) * HOUR),
                "absorbed_until": model.first_hour + end * HOUR,
                "value": float(_nanmedian(one["mean"][0, r:end, 0])),
                "baseline": float(_nanmedian(fit.base[s, r:end, m])),
                # the sample scale, as spikes: one move, one score, however it is found
                "score": float(_nanmedian(moved / fit.scale[s, r:end, m])),
                "kind": int(fit.kind[s, r, m]),
            }
        )
        for name in ("mean", "min", "max"):
            one[name][0, :r, 0] += offset
        refit = _fit(one, one_floors, cfg)
        for name in _FIT_FIELDS:
            getattr(fit, name)[s, end:, m] = getattr(refit, name)[0, end:, 0]
        signs[end:] = _hour_signs(_slice(fit, s, m), one["mean"])[0, end:, 0]
        pos = end
    walked[(s, m)] = model.first_hour + pos * HOUR
    return shifts


def _slice(fit: _Fit, s: int, m: int) -> _Fit:
    return _Fit(*(getattr(fit, n)[s : s + 1, :, m : m + 1] for n in _FIT_FIELDS))


# --------------------------------------------------------------------------- candidates


def _candidates(
    ctx: Context, kind: str, model: _Model, start: int, now: int, kept: HourRows | None = None
) -> list[tuple[str, str, int, tuple]]:
    """Window samples beyond their hour's bounds or out of their range (values of the other
    metrics NULL): the bounds go to PostgreSQL as arrays, only unusual samples come back.
    Reading from the hour the window starts in lets an episode see its own beginning."""
    cfg = ctx.config.anomalies
    lookback = int(cfg.recent_samples * float(model.interval.max()))
    since = min(start - lookback, start // HOUR * HOUR)
    first = max(0, model.hour_index(since))
    last = model.hour_index(now)
    fit = model.fit
    hours = np.arange(first, last + 1)
    n_series, n_hours = len(model.keys), hours.size
    params: dict[str, Any] = {
        "start": since,
        "now": now,
        "nodes": [k[0] for k in model.keys for _ in range(n_hours)],
        "conts": [k[1] for k in model.keys for _ in range(n_hours)],
        "hours": [model.first_hour + int(h) * HOUR for _ in range(n_series) for h in hours],
    }
    lo, hi = fit.lo[:, first : last + 1], fit.hi[:, first : last + 1]
    if model.range is not None:
        range_lo, range_hi = model.range.bounds(slice(first, last + 1))
        lo, hi = np.fmax(lo, range_lo), np.fmin(hi, range_hi)
    for m in range(len(model.metrics)):
        params[f"lo{m}"] = _nullable(lo[:, :, m])
        params[f"hi{m}"] = _nullable(hi[:, :, m])
    queries = ctx.cache("anomaly_queries", dict)  # composing costs more than running
    key = (kind, model.metrics)
    if kept is not None:
        return _kept_candidates(ctx, queries, key, model, params, lo, hi, since, now, kept)
    with ctx.store.read() as cur:
        cur.row_factory = tuple_row  # type: ignore[assignment]  # many rows: no dicts
        if key not in queries:
            queries[key] = _candidate_query(ctx, kind, model.metrics).as_string(cur)
        cur.execute(queries[key], params)
        return cast(list[tuple[str, str, int, tuple[Any, ...]]], cur.fetchall())


def _kept_candidates(
    ctx: Context,
    queries: dict[Any, str],
    key: tuple[str, tuple[str, ...]],
    model: _Model,
    params: dict[str, Any],
    lo: np.ndarray,
    hi: np.ndarray,
    since: int,
    now: int,
    kept: HourRows,
) -> list[tuple[str, str, int, tuple]]:
    """The same candidates from those kept per hour with the bounds they were filtered by:
    an hour is read again when its rows or its bounds change, else only newer rows."""
    first = params["hours"][0] if params["hours"] else 0
    n_hours = lo.shape[1]

    def hour_key(b: int) -> bytes:  # bucket ((b-1) h, b h]: hours b-1 and b (its last second)
        digest = hashlib.blake2b(digest_size=16)
        for h in ((b - 1) * HOUR, b * HOUR):
            i = (h - first) // HOUR
            if 0 <= i < n_hours and h <= now:
                digest.update(lo[:, i].tobytes() + hi[:, i].tobytes())
        return digest.digest()

    def read(cur: Cursor[dict[str, Any]], a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        cur.row_factory = tuple_row  # type: ignore[assignment]  # many rows: no dicts
        if key not in queries:
            queries[key] = _candidate_query(ctx, *key).as_string(cur)
        cur.execute(queries[key], {**params, "start": a, "now": b})
        rows = cast(list[tuple[Any, ...]], cur.fetchall())
        values = np.empty(len(rows), object)
        values[:] = rows
        return np.array([r[2] for r in rows], np.int64), values

    kept.refresh(ctx, (key, tuple(model.keys)), since, now, read, hour_key)
    rows = kept.values(since).tolist()
    rows.sort(key=lambda r: (r[0], r[1], r[2]))  # the query's order
    return cast(list[tuple[str, str, int, tuple[Any, ...]]], rows)


def _nullable(a: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in a.ravel()]


def _candidate_query(ctx: Context, kind: str, metrics: tuple[str, ...]) -> sql.Composed:
    arrays: list[sql.Composable] = [
        sql.SQL("%(nodes)s::text[], %(conts)s::text[], %(hours)s::bigint[]")
    ]
    names: list[sql.Composable] = [sql.SQL("node_name, container, hour")]
    values: list[sql.Composable] = []
    beyond: list[sql.Composable] = []
    for m, metric in enumerate(metrics):
        arrays.append(
            sql.SQL("{}::float8[], {}::float8[]").format(
                sql.Placeholder(f"lo{m}"), sql.Placeholder(f"hi{m}")
            )
        )
        names.append(sql.SQL("{}, {}").format(sql.Identifier(f"lo{m}"), sql.Identifier(f"hi{m}")))
        test = sql.SQL("({v} < b.{lo} OR {v} > b.{hi})").format(
            v=clean(metric, "w"), lo=sql.Identifier(f"lo{m}"), hi=sql.Identifier(f"hi{m}")
        )
        beyond.append(test)
        values.append(sql.SQL("CASE WHEN {} THEN {} END").format(test, clean(metric, "w")))
    return sql.SQL(
        "SELECT w.node_name, coalesce(w.container_name, '') AS container, w.sample_time, {values}"
        " FROM {rows} AS w"
        " JOIN unnest({arrays}) AS b({names})"
        " ON b.node_name = w.node_name AND b.container = coalesce(w.container_name, '')"
        " AND b.hour = floor(w.sample_time::float8 / 3600)::bigint * 3600"
        " WHERE {which} AND ({beyond}) ORDER BY 1, 2, 3"
    ).format(
        values=sql.SQL(", ").join(values),
        rows=window_rows(ctx.store, _read_columns(metrics)),
        arrays=sql.SQL(", ").join(arrays),
        names=sql.SQL(", ").join(names),
        which=sql.SQL("w.") + (NODE_ROW if kind == "node" else CONTAINER_ROW),
        beyond=sql.SQL(" OR ").join(beyond),
    )


def _read_columns(metrics: tuple[str, ...]) -> tuple[str, ...]:
    """Columns `clean` reads for `metrics` (free memory is checked against the total)."""
    extra = ("mem_total_mb",) if "mem_available_mb" in metrics else ()
    return tuple(dict.fromkeys(metrics + extra))


def _invalid_counts(
    ctx: Context,
    kind: str,
    metrics: tuple[str, ...],
    start: int,
    now: int,
    kept: HourRows | None = None,
) -> dict[str, int]:
    """Values of the window that `clean` dropped (NaN, infinite, negative, absurd); `kept`:
    the exporter's rows with such values, kept between runs (the same counts)."""
    if kept is not None:
        return _kept_invalid_counts(ctx, kind, metrics, start, now, kept)
    query = sql.SQL("SELECT {counts} FROM {rows} AS w WHERE {which}").format(
        counts=sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(invalid_count(m), sql.Identifier(m)) for m in metrics
        ),
        rows=window_rows(ctx.store, _read_columns(metrics)),
        which=NODE_ROW if kind == "node" else CONTAINER_ROW,
    )
    with ctx.store.read() as cur:
        cur.execute(query, {"start": start, "now": now})
        row = cur.fetchone() or {}
    return {m: int(row.get(m) or 0) for m in metrics}


def _kept_invalid_counts(
    ctx: Context, kind: str, metrics: tuple[str, ...], start: int, now: int, kept: HourRows
) -> dict[str, int]:
    """The same counts from the window's rows with an invalid value, one bit per metric."""
    invalid = [
        sql.SQL("{} IS NOT NULL AND {} IS NULL").format(sql.Identifier(m), clean(m))
        for m in metrics
    ]
    query = sql.SQL(
        "SELECT w.sample_time, {bits} AS bits FROM {rows} AS w WHERE {which} AND ({any})"
    ).format(
        bits=sql.SQL(" | ").join(
            sql.SQL("(CASE WHEN {} THEN {} ELSE 0 END)").format(c, sql.Literal(1 << k))
            for k, c in enumerate(invalid)
        ),
        rows=window_rows(ctx.store, _read_columns(metrics)),
        which=NODE_ROW if kind == "node" else CONTAINER_ROW,
        any=sql.SQL(" OR ").join(invalid),
    )

    def read(cur: Cursor[dict[str, Any]], lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        cur.execute(query, {"start": lo, "now": hi})
        rows = cur.fetchall()
        t = np.array([r["sample_time"] for r in rows], np.int64)
        return t, np.array([r["bits"] for r in rows], np.int64)

    kept.refresh(ctx, (kind, metrics), start, now, read)
    bits = kept.values(start)
    return {m: int(((bits >> k) & 1).sum()) for k, m in enumerate(metrics)}


# --------------------------------------------------------------------------- episodes


def _evaluate(
    model: _Model, rows: list[tuple[Any, ...]], cfg: AnomalyConfig, start: int, now: int
) -> tuple[list[Anomaly], list[Score]]:
    """Episodes of persistent candidates, level shifts and current scores."""
    per, out_of_range, beyond = _sorted_candidates(model, rows)
    anomalies: list[Anomaly] = []
    current: dict[tuple[int, int], float] = {}
    spans: dict[tuple[int, int], list[tuple[int, int]]] = {}
    outliers: list[tuple[int, int, dict[str, Any]]] = []
    for (s, m), samples in per.items():
        episodes = _episodes(model, s, m, samples, cfg)
        iv = float(model.interval[s])
        for ep in episodes:
            if ep["end"] > now - (cfg.recent_samples - 0.5) * iv and ep["recent"]:
                current[(s, m)] = ep["recent"]
        shifts = [x for x in model.shifts if x["series"] == s and x["metric"] == m]
        for ep in episodes:
            if not ep.get("outlier"):
                spans.setdefault((s, m), []).append((ep["start"], ep["end"]))
            if not start < ep["detected_at"] <= now or _absorbed(ep, shifts):
                continue
            if ep.get("outlier"):
                # a sample that covers `range_persist_minutes` alone is the range's to judge
                if iv < cfg.range_persist_minutes * 60 or model.range is None:
                    outliers.append((s, m, ep))
            else:
                anomalies.append(_report(model, s, m, ep, cfg))
    for shift in model.shifts:
        spans.setdefault((shift["series"], shift["metric"]), []).append(
            (shift["hour"] - HOUR, shift["absorbed_until"])
        )
        if start < shift["known"] <= now:
            anomalies.append(_report_shift(model, shift, per, cfg))
    departed: dict[tuple[int, int], list[tuple[int, int]]] = {}
    wild: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for s, m, ep in outliers:
        wild.setdefault((s, m), []).append((ep["start"], ep["end"]))
    if model.range is not None:
        found = _departures(model, out_of_range, spans, departed, cfg, start, now, wild, beyond)
        anomalies.extend(found)
    for s, m, ep in outliers:  # a lone sample inside a departure is part of that episode
        # (hours before the window are flagged at their end, so a span reaches an hour back)
        spans_of = departed.get((s, m), [])
        if not any(a - HOUR <= ep["end"] and b >= ep["start"] for a, b in spans_of):
            anomalies.append(_report(model, s, m, ep, cfg))
    scores: list[Score] = []
    for s, key in enumerate(model.keys):
        for m, metric in enumerate(model.metrics):
            if model.kinds_now[s, m] == NONE:
                continue
            score = current.get((s, m), 0.0)
            scores.append(
                {
                    "node_name": key[0],
                    "container_name": key[1] or None,
                    "metric": metric,
                    "score": round_float(score, 3),
                }
            )
    return anomalies, scores


def _sorted_candidates(
    model: _Model, rows: list[tuple[Any, ...]]
) -> tuple[
    dict[tuple[int, int], list[tuple[int, float]]],
    dict[tuple[int, int], list[tuple[int, float]]],
    set[tuple[int, int]],
]:
    """Per series and metric, in the rows' order: the candidates beyond the fit's bounds
    and not inside the range (shown before), every value the query returned, and whether
    one was beyond the range. Compared in numpy for all rows at once (float64, as each
    value against its bounds one by one), then listed for the values present only."""
    index = {key: i for i, key in enumerate(model.keys)}
    per: dict[tuple[int, int], list[tuple[int, float]]] = {}
    out_of_range: dict[tuple[int, int], list[tuple[int, float]]] = {}
    beyond: set[tuple[int, int]] = set()
    n_metrics = len(model.metrics)
    sid = np.fromiter((index.get((r[0], r[1]), -1) for r in rows), np.int64, len(rows))
    known = np.flatnonzero(sid >= 0)
    if known.size == 0:
        return per, out_of_range, beyond
    sid = sid[known]
    t = np.fromiter((rows[i][2] for i in known), np.int64, known.size)
    values = np.array([rows[i][3:] for i in known], np.float64).reshape(known.size, n_metrics)
    h = (t // HOUR * HOUR - model.first_hour) // HOUR
    present = ~np.isnan(values)  # NULL: within every bound
    fit = model.fit
    with np.errstate(invalid="ignore"):
        candidate = (values < fit.lo[sid, h]) | (values > fit.hi[sid, h])
        if model.range is not None:
            first = int(h.min())
            lo, hi = model.range.bounds(slice(first, int(h.max()) + 1))
            lo, hi = lo[sid, h - first], hi[sid, h - first]
            candidate &= ~((lo <= values) & (values <= hi))
            out = present & ((values < lo) | (values > hi))
            beyond = {(int(sid[i]), int(m)) for i, m in zip(*np.nonzero(out), strict=True)}
    i, m = np.nonzero(present)  # row by row, as the rows came
    listed = zip(
        sid[i].tolist(),
        m.tolist(),
        t[i].tolist(),
        values[i, m].tolist(),
        candidate[i, m].tolist(),
        strict=True,
    )
    for s, k, at, v, unusual in listed:
        if unusual:
            per.setdefault((s, k), []).append((at, v))
        out_of_range.setdefault((s, k), []).append((at, v))
    return per, out_of_range, beyond


def _departures(
    model: _Model,
    samples: dict[tuple[int, int], list[tuple[int, float]]],
    spans: dict[tuple[int, int], list[tuple[int, int]]],
    departed: dict[tuple[int, int], list[tuple[int, int]]],
    cfg: AnomalyConfig,
    start: int,
    now: int,
    wild: dict[tuple[int, int], list[tuple[int, int]]] | None = None,
    beyond: set[tuple[int, int]] | None = None,
) -> list[Anomaly]:
    """Episodes of samples or hourly means beyond the range their series has shown, or of
    hourly means unusual for their hour, each reported once, when it starts: after
    `range_quiet_hours` with nothing beyond. Episodes another path reports (spikes, dips,
    level shifts) are left to it, and so is an hour moved only by `wild` lone samples (the
    outliers); every other episode's span goes to `departed`. `beyond`: the series and
    metrics with a sample beyond the range (all of `samples` when not given)."""
    r = model.range
    assert r is not None
    quiet = cfg.range_quiet_hours * HOUR
    first = model.hour_index(start)  # hours before it are judged from their rollups
    before = range(max(0, first - math.ceil(cfg.range_quiet_hours) - 1), first)
    seasonal = model.seasonal
    assert seasonal is None or seasonal.first == before.start  # fitted for this window
    out: list[Anomaly] = []
    walk, early = _flagged(model, set(samples) if beyond is None else beyond, before, first, now)
    for s, m in zip(*np.nonzero(walk), strict=True):
        s, m = int(s), int(m)
        flags: list[tuple[int, dict[str, Any] | None]] = [
            (model.first_hour + (h + 1) * HOUR - 1, None)
            for i, h in enumerate(before)
            if early[i, s, m]
        ]
        flags += _window_flags(model, s, m, samples.get((s, m), []), cfg, start, now)
        if seasonal is not None:
            flags += _seasonal_flags(model, seasonal, s, m, first, now)
        for ep in _range_episodes(sorted(flags, key=lambda f: f[0]), quiet):
            t0 = ep[0][0]
            if _seasonal_only(ep) and any(
                a - HOUR <= ep[-1][0] and b >= t0 - HOUR for a, b in (wild or {}).get((s, m), [])
            ):
                continue
            departed.setdefault((s, m), []).append((t0, ep[-1][0]))
            if ep[0][1] is None or not start < t0 <= now:
                continue
            if any(a <= ep[-1][0] and b >= t0 - quiet for a, b in spans.get((s, m), [])):
                continue
            out.append(_report_departure(model, s, m, ep, cfg, now))
    return out


def _flagged(
    model: _Model, beyond: set[tuple[int, int]], before: range, first: int, now: int
) -> tuple[np.ndarray, np.ndarray]:
    """(S, M) where `_departures` can find a flag, by the same comparisons for all series
    at once: a series with a range and a sample beyond it, or an hour before the window or
    a complete hour of it beyond the range or the seasonal threshold (the others, nearly
    all, have nothing to walk); and (hours before the window, S, M) which of those hours
    had a sample or their mean beyond the range, or their mean beyond the seasonal
    threshold."""
    r, g, seasonal = model.range, model.grids, model.seasonal
    assert r is not None
    out = np.zeros(r.median.shape, bool)
    for s, m in beyond:
        out[s, m] = True
    early = np.zeros((len(before), *out.shape), bool)
    last = model.hour_index(now)
    with np.errstate(invalid="ignore"):
        for i, h in enumerate(before):
            lo, hi = r.bounds(h)
            mlo, mhi = r.mean_bounds(h)
            early[i] = (g["max"][:, h] > hi) | (g["min"][:, h] < lo)
            early[i] |= (g["mean"][:, h] > mhi) | (g["mean"][:, h] < mlo)
            if seasonal is not None:
                early[i] |= np.abs(seasonal.z[:, h - seasonal.first]) > seasonal.threshold
        out |= early.any(axis=0)
        for h in range(first, last + 1):
            if model.first_hour + (h + 1) * HOUR - 1 > now:
                continue  # the hour in progress: judged at its end
            mlo, mhi = r.mean_bounds(h)
            out |= (g["mean"][:, h] > mhi) | (g["mean"][:, h] < mlo)
            if seasonal is not None:
                out |= np.abs(seasonal.z[:, h - seasonal.first]) > seasonal.threshold
    return out & ~np.isnan(r.median), early


def _window_flags(
    model: _Model,
    s: int,
    m: int,
    samples: list[tuple[int, float]],
    cfg: AnomalyConfig,
    start: int,
    now: int,
) -> list[tuple[int, dict[str, Any]]]:
    """Samples of the window's hours beyond the range once those of the last
    `recent_samples` cover `range_persist_minutes`, and complete hours whose mean is
    (known at the hour's last second), each with its evidence."""
    r = model.range
    assert r is not None
    first_t = start // HOUR * HOUR
    median = float(r.median[s, m])
    flags = []
    interval = float(model.interval[s])  # each sample stands for its interval
    reach, persist = (cfg.recent_samples - 0.5) * interval, cfg.range_persist_minutes * 60
    at = [(t, v, r.bounds(model.hour_index(t))) for t, v in samples]
    beyond = [t for t, v, bounds in at if _beyond(bounds, s, m, v)]
    for t, v, (lo, hi) in at:
        if t < first_t:
            continue
        h = model.hour_index(t)
        support = bisect.bisect_right(beyond, t) - bisect.bisect_right(beyond, t - reach)
        if (v > hi[s, m] or v < lo[s, m]) and support * interval >= persist:
            edge = float(r.hi[s, h, m] if v > hi[s, m] else r.lo[s, h, m])
            flags.append((t, _flag(v, median, edge, r.lo[s, h, m], r.hi[s, h, m], r.noise[s, m])))
    for h in range(model.hour_index(first_t), model.hour_index(now) + 1):
        t = model.first_hour + (h + 1) * HOUR - 1
        v = float(model.grids["mean"][s, h, m])
        if t > now or math.isnan(v):
            continue
        lo, hi = r.mean_bounds(h)
        if v > hi[s, m] or v < lo[s, m]:
            edge = float(r.mean_hi[s, h, m] if v > hi[s, m] else r.mean_lo[s, h, m])
            noise = r.mean_noise[s, m]
            flag = _flag(v, median, edge, r.mean_lo[s, h, m], r.mean_hi[s, h, m], noise)
            flags.append((t, {**flag, "source": "hourly_mean"}))
    return flags


def _seasonal_only(ep: list[tuple[int, Any]]) -> bool:
    seen = [f for _, f in ep if f is not None]
    return bool(seen) and all(f["source"] == "seasonal_mean" for f in seen)


def _seasonal_flags(
    model: _Model, seasonal: _Seasonal, s: int, m: int, first: int, now: int
) -> list[tuple[int, dict[str, Any]]]:
    """Complete hours of the window whose mean is beyond the seasonal threshold (known at
    the hour's last second), with the seasonal evidence and the range ratio for priority."""
    r = model.range
    assert r is not None
    flags = []
    for h in range(first, model.hour_index(now) + 1):
        t = model.first_hour + (h + 1) * HOUR - 1
        if t > now or not seasonal.beyond(s, m, h):
            continue
        v = float(model.grids["mean"][s, h, m])
        edge = float(r.mean_hi[s, h, m] if v > r.median[s, m] else r.mean_lo[s, h, m])
        flag = _flag(v, float(r.median[s, m]), edge, r.mean_lo[s, h, m], r.mean_hi[s, h, m], 0)
        k = h - seasonal.first
        flag.update(
            source="seasonal_mean",
            noise=float(seasonal.scale[s, m]),
            baseline=float(seasonal.base[s, k, m]),
            z=float(seasonal.z[s, k, m]),
        )
        flags.append((t, flag))
    return flags


def _beyond(bounds: tuple[np.ndarray, np.ndarray], s: int, m: int, v: float) -> bool:
    return bool(v < bounds[0][s, m] or v > bounds[1][s, m])


def _flag(value: float, median: float, edge: float, lo: Any, hi: Any, noise: Any) -> dict:
    return {
        "value": value,
        "ratio": _ratio(value, median, edge) * (1 if value > median else -1),
        "range_low": float(lo),
        "range_high": float(hi),
        "noise": float(noise),
        "source": "sample",
    }


def _range_episodes(flags: list[tuple[int, Any]], quiet: float) -> list[list[tuple[int, Any]]]:
    """Flags in time order, split where nothing was beyond the range for `quiet` seconds."""
    episodes: list[list[tuple[int, Any]]] = []
    for f in flags:
        if episodes and f[0] - episodes[-1][-1][0] <= quiet:
            episodes[-1].append(f)
        else:
            episodes.append([f])
    return episodes


def _report_departure(
    model: _Model, s: int, m: int, ep: list[tuple[int, Any]], cfg: AnomalyConfig, now: int
) -> Anomaly:
    """A range departure, as first seen; its score is the farthest it has gone past the
    range so far, as a ratio (1 = at the edge), signed by direction. One sample followed by
    `recent_samples` normal ones is an outlier (P3 at most): it came back at once."""
    r = model.range
    assert r is not None
    t0, first = ep[0]
    seen = [f for _, f in ep if f is not None]
    peak = max(seen, key=lambda f: abs(f["ratio"]) if not math.isnan(f["ratio"]) else 0)
    node, container = model.keys[s]
    ratio = peak["ratio"]
    priority = _capped(
        _range_priority(abs(ratio) if not math.isnan(ratio) else 0.0, cfg),
        _impact_priority(_impact(model, s, m, peak["value"], float(r.median[s, m])), cfg),
    )
    back = ep[-1][0] + cfg.recent_samples * float(model.interval[s]) <= now
    lone = len(seen) == 1 and first["source"] == "sample" and back
    seasonal = first["source"] == "seasonal_mean"  # within the range, unusual for its hour
    kind = "outlier" if lone else "seasonal_departure" if seasonal else "range_departure"
    baseline = first["baseline"] if seasonal else float(r.median[s, m])
    return {
        "node_name": node,
        "container_name": container or None,
        "metric": model.metrics[m],
        "value": round_float(first["value"]),
        "baseline": round_float(baseline),
        "score": round_float(first["z"] if seasonal else ratio, 3),
        "priority": _capped(priority, "P3-ADVISORY") if lone else priority,
        "sample_time": t0,
        "kind": kind,
        "detected_at": t0,
        "scale": round_float(first["noise"]),
        "baseline_kind": "seasonal" if seasonal else "range",
        "samples": len(seen),
        "window": {"start": t0, "end": ep[-1][0]},
        "range_low": round_float(first["range_low"]),
        "range_high": round_float(first["range_high"]),
        "margin": cfg.range_margin,
        "peak": round_float(peak["value"]),
        "source": first["source"],
    }


def _episodes(
    model: _Model, s: int, m: int, samples: list[tuple[int, float]], cfg: AnomalyConfig
) -> list[dict[str, Any]]:
    """Group candidates of one series and metric into episodes of one sign; an episode
    counts from the first sample with `persist` of the last `recent_samples` beyond."""
    fit = model.fit
    iv = float(model.interval[s])
    reach = (cfg.recent_samples - 0.5) * iv
    scored = []
    for t, v in samples:
        h = model.hour_index(t)
        base, scale = fit.base[s, h, m], fit.scale[s, h, m]
        if math.isnan(base) or not scale > 0:
            continue
        scored.append((t, v, (v - base) / scale, float(base), float(scale), int(fit.kind[s, h, m])))
    episodes: list[dict[str, Any]] = []
    for ep in _group(scored, iv, cfg):
        last = [x[2] for x in ep.pop("members") if x[0] > ep["end"] - reach]
        ep["recent"] = float(np.median(last)) if ep["support"] >= cfg.persist else 0.0
        if ep.get("outlier"):  # known once the samples after it failed to confirm it
            ep["detected_at"] = ep["end"] + int(cfg.recent_samples * iv)
        episodes.append(ep)
    return episodes


def _group(scored: list[tuple], iv: float, cfg: AnomalyConfig) -> list[dict[str, Any]]:
    """Episodes of one sign: candidates less than `recent_samples` intervals apart."""
    reach = (cfg.recent_samples - 0.5) * iv
    episodes: list[dict[str, Any]] = []
    for sign in (1, -1):
        same = [x for x in scored if x[2] * sign > 0]
        times = np.array([x[0] for x in same], dtype=np.int64)
        ep: dict[str, Any] | None = None
        for i, x in enumerate(same):
            support = i + 1 - int(np.searchsorted(times, x[0] - reach, side="right"))
            if ep is not None and x[0] - ep["end"] > cfg.recent_samples * iv:
                _close(ep, episodes, cfg)
                ep = None
            if ep is None:
                ep = {"start": x[0], "detected_at": None, "peak": x, "n": 0, "members": []}
            ep["end"], ep["n"] = x[0], ep["n"] + 1
            ep["members"].append(x)
            if abs(x[2]) > abs(ep["peak"][2]):
                ep["peak"] = x
            if support >= cfg.persist and ep["detected_at"] is None:
                ep["detected_at"] = x[0]
            ep["support"] = support
        if ep is not None:
            _close(ep, episodes, cfg)
    return episodes


def _close(ep: dict[str, Any], episodes: list[dict[str, Any]], cfg: AnomalyConfig) -> None:
    """Keep a finished group of candidates if persistence confirmed it, or if it is too far
    out to be noise though nothing confirmed it: an outlier (a bad reading, a one-off)."""
    if ep["detected_at"] is None and abs(ep["peak"][2]) >= cfg.outlier_score:
        ep["outlier"] = True
    if ep["detected_at"] is not None or ep.get("outlier"):
        episodes.append(ep)


def _absorbed(ep: dict[str, Any], shifts: list[dict[str, Any]]) -> bool:
    """True when the episode is the onset of a level shift (reported as the shift)."""
    return any(ep["end"] >= x["hour"] - HOUR and ep["start"] < x["absorbed_until"] for x in shifts)


def _priority(score: float, cfg: AnomalyConfig) -> str:
    a = abs(score)
    if a >= cfg.p1_score:
        return "P1-CRITICAL"
    if a >= cfg.p2_score:
        return "P2-WARNING"
    if a >= cfg.score_threshold:
        return "P3-ADVISORY"
    return "INFO"


PRIORITIES = ("INFO", "P3-ADVISORY", "P2-WARNING", "P1-CRITICAL")  # least urgent first


def _range_priority(ratio: float, cfg: AnomalyConfig) -> str:
    """Priority from how far past its range a value went: just beyond it is advisory."""
    if ratio >= cfg.range_p1_ratio:
        return "P1-CRITICAL"
    if ratio >= cfg.range_p2_ratio:
        return "P2-WARNING"
    return "P3-ADVISORY"


def _report(model: _Model, s: int, m: int, ep: dict[str, Any], cfg: AnomalyConfig) -> Anomaly:
    t, value, score, base, scale, kind = ep["peak"]
    node, container = model.keys[s]
    priority = _capped(
        _priority(score, cfg), _impact_priority(_impact(model, s, m, value, base), cfg)
    )
    if model.range is not None:  # a value the series has shown before is not critical
        r, h = model.range, model.hour_index(t)
        edge = r.hi[s, h, m] if score > 0 else r.lo[s, h, m]
        ratio = _ratio(value, float(r.median[s, m]), float(edge))
        if not math.isnan(ratio):
            priority = _capped(priority, _range_priority(ratio, cfg))
    if ep.get("outlier"):
        priority = _capped(priority, "P3-ADVISORY")
    return {
        "node_name": node,
        "container_name": container or None,
        "metric": model.metrics[m],
        "value": round_float(value),
        "baseline": round_float(base),
        "score": round_float(score, 3),
        "priority": priority,
        "sample_time": t,
        "kind": "outlier" if ep.get("outlier") else "spike" if score > 0 else "dip",
        "detected_at": ep["detected_at"],
        "scale": round_float(scale),
        "baseline_kind": KIND_NAMES.get(kind, "none"),
        "samples": ep["n"],
        "window": {"start": ep["start"], "end": ep["end"]},
    }


def _report_shift(
    model: _Model, shift: dict[str, Any], per: dict[tuple[int, int], list], cfg: AnomalyConfig
) -> Anomaly:
    """A change point: the new level since `since` (its first unusual sample, if seen)."""
    s, m = shift["series"], shift["metric"]
    node, container = model.keys[s]
    onset = [
        t for t, _ in per.get((s, m), []) if shift["hour"] - HOUR <= t < shift["absorbed_until"]
    ]
    since = min(onset) if onset else shift["hour"]
    score = shift["score"]
    return {
        "node_name": node,
        "container_name": container or None,
        "metric": model.metrics[m],
        "value": round_float(shift["value"]),
        "baseline": round_float(shift["baseline"]),
        "score": round_float(score, 3),
        "priority": _capped(
            _priority(score, cfg),
            _impact_priority(_impact(model, s, m, shift["value"], shift["baseline"]), cfg),
        ),
        "sample_time": since,
        "kind": "level_shift",
        "since": since,
        "detected_at": shift["known"],
        "scale": round_float(abs(shift["value"] - shift["baseline"]) / abs(score) if score else 0),
        "baseline_kind": KIND_NAMES.get(shift["kind"], "none"),
        "samples": len(onset),
        "window": {"start": since, "end": shift["known"]},
    }


# --------------------------------------------------------------------------- served

SCORE = gauge(
    "anomaly_score",
    "Signed robust score of the recent samples against the series' own seasonal baseline "
    "(0 when normal).",
    ("node", "container", "metric"),
)


def to_samples(result: AnomalyResult, view: ResultView) -> Iterator[Sample]:
    for s in result["scores"]:
        container = s["container_name"] or ""
        score = s["score"] or 0.0
        if score:
            cut, importance = ANOMALY_HIGH, abs(score)
        else:
            cut, importance = (CONTAINER_ZERO if container else ANOMALY_ZERO), 0.0
        yield sample(
            "anomaly_score",
            score,
            cut,
            importance,
            node=s["node_name"],
            container=container,
            metric=s["metric"],
        )


def render_text(r: AnomalyResult, t: Text) -> None:
    t.title(f"🔍 ANOMALIES - {when(r['window']['start'])} to {when(r['window']['end'])}")
    anomaly_table(r["anomalies"], t)


def anomaly_table(anomalies: list[Anomaly], t: Text) -> None:
    t.table(
        ("node", "container", "metric", "value", "baseline", "score", "priority", "at"),
        (
            (
                a["node_name"],
                a.get("container_name"),
                a["metric"],
                a["value"],
                a["baseline"],
                a["score"],
                a["priority"],
                when(a["sample_time"]),
            )
            for a in anomalies
        ),
        lambda row: PRIORITY_COLOUR.get(row[6]),
    )


ANALYSIS = Analysis[AnomalyResult](
    name="anomalies",
    title="samples unusual for their series' own seasonal baseline, with their evidence",
    run=detect_anomalies,
    render_text=render_text,
    window=Window("hours", lambda c: 24, served=lambda c: c.anomalies.window_hours),
    serve=Served(refresh_seconds=60, metrics=(SCORE,), to_samples=to_samples),
    incremental=AnomalyState,
)
