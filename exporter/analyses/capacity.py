"""Capacity planning: when does each node's daily peak reach its limit?

Method, per node and resource (CPU %, memory used MiB, swap MiB, and where the table has
the optional host-fact columns, disk and inodes used in % of the fullest filesystem), from
the hourly rollups:

- The limit is configurable per resource and defaults to the emergency check's P1 level
  (CPU 95 %, memory 95 % used i.e. 5 % free, disk and inodes 95 % used), swap
  `swap_limit_mb`. Exhaustion means the daily peak reaching it.
- Daily peak = the busiest hour of a UTC day: the largest hourly mean (CPU, memory used =
  mem_total - mem_available, disk, inodes) or hourly max (swap). A *sustained* peak: one
  busy minute does not make a day's peak, a busy hour does, and an hour counts only with
  `min_hour_coverage` of the node's median samples per hour (one lone sample at 100 % is
  no busy hour). Only complete UTC days inside the window with at least `min_day_hours`
  such hours count; the current, partial day is left out, but the forecast is projected
  from `now`.
- Each peak is placed at the time of its busiest hour (not the day's midpoint).
- The model is fixed before looking at the peaks: a line, plus day-of-week levels whenever
  the peaks cover two weeks and every weekday, else a weekend level when the peaks hold two
  weekend and two weekday days. The slope is Theil-Sen (the median of the slopes between
  peaks of the same group of days) or least squares (`robust_slope`).
- Inference allows for autocorrelated peaks: the lag-1 autocorrelation of the residuals,
  corrected for its small-sample bias and clipped to [0, 0.95], inflates the slope's
  variance by (1 + rho) / (1 - rho) and shrinks the degrees of freedom by the same factor
  (an effective sample size). The correction was chosen by bench/capacity_mc.py.
- A trend counts when its t statistic passes the two-sided 5 % level, r2 >= `min_r2`, and
  |slope| >= `min_slope_ratio_per_day` of the limit (significance without magnitude is no
  trend). days_to_exhaustion = (limit - fitted peak at now) / slope, never negative. The
  fitted peak follows the busiest weekday when that weekday stands out of the average by
  BUSIEST_DAY_Z standard errors, else the average weekday.
- The interval is a 95 % confidence set for the day the *mean* daily peak (of the followed
  weekday) reaches the limit: the days at which the limit lies inside the mean line's
  confidence band (Fieller's construction), searched up to 10 horizons; None at the
  optimistic end when the band's lower edge never gets there. It is not a band for a
  single day's peak, which can cross earlier.
- The fit restarts after a drop (the peak falls by more than `drop_restart_pct` of the limit
  and stays down for three days) and after a change of mem_total (a resize).
- "already_exhausted": the busiest complete hour of the last 24 h reached
  `exhausted_ratio` of the limit (it wins over insufficient_data: it needs no history).

Container rows are skipped: the table carries no container memory limit to exhaust.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypedDict, cast

import numpy as np

from ..config import CapacityConfig, Config
from ..metricdef import gauge
from ..render import Text, cell
from ..rollups import RollupView, rollups_of
from ..samples import Sample, sample
from ..schema import DISK_USED, INODES_USED
from ..vocabulary import ForecastStatus
from .common import DAY, HOUR, Context, round_float, window_seconds
from .unit import Analysis, ResultView, Served, Window

Advice = Callable[[float, float], str]
RESOURCES = ("cpu", "memory", "swap", "disk", "inodes")
UNITS = {"cpu": "percent", "memory": "MiB", "swap": "MiB", "disk": "percent", "inodes": "percent"}
# Resources read from optional columns (host facts): forecast only where the table has them.
FACT_COLUMNS = {"disk": DISK_USED.name, "inodes": INODES_USED.name}
PEAK_DEFINITION = "busiest hour of each complete UTC day (hourly mean; swap: hourly max)"
DROP_PERSIST_DAYS = 3  # a drop must hold this many days (or to the end) to restart the fit
SEARCH_HORIZONS = 10  # the interval's optimistic end is searched up to 10 horizons ahead

# Two-sided 95 % Student t quantiles (0.975) for 1..30 degrees of freedom.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(dof: float) -> float:
    """The 0.975 quantile of Student's t: the table (linear in 1 / dof between its entries,
    for the fractional degrees of freedom of an effective sample), then the Cornish-Fisher
    expansion (error < 1e-4 beyond 30 degrees of freedom); infinite below 1."""
    if not dof >= 1:
        return math.inf
    if dof <= len(_T975):
        lo = int(dof)
        if lo == dof or lo == len(_T975):
            return _T975[lo - 1]
        w = (1 / lo - 1 / dof) / (1 / lo - 1 / (lo + 1))
        return (1 - w) * _T975[lo - 1] + w * _T975[lo]
    z = 1.959964
    return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)


class Forecast(TypedDict):
    """One node's forecast of one resource, with the evidence it rests on."""

    node_name: str
    container_name: str | None
    resource_type: str  # cpu, memory or swap
    unit: str
    current_peak: float | None
    limit: float | None  # what exhaustion means, in the unit (default: the P1 level)
    current_peak_ratio: float | None  # of the limit
    trend_per_day: float | None
    trend_ratio_per_day: float | None
    days_to_exhaustion: float | None
    days_to_exhaustion_interval: list[float | None] | None
    exhaustion_time: int | None
    status: str
    evidence: dict[str, Any]
    recommendation: str


class CapacityResult(TypedDict):
    window: dict[str, Any]
    forecasts: list[Forecast]


class DefaultAdvice:
    """Default capacity advice, overridable by subclassing PerformanceAnalyzer."""

    def _get_cpu_recommendation(self, current_avg: float, trend: float) -> str:
        """Advice for a node's CPU given its daily peak (percent) and trend (points/day)."""
        if current_avg >= 90:
            return "Scale now: CPU peaks are at saturation"
        if current_avg >= 70 and trend > 0:
            return "Plan scaling: high usage with an increasing trend"
        if trend > 0.5:
            return "Watch: CPU peaks are growing"
        if current_avg < 20 and trend <= 0:
            return "Consider downsizing: CPU is mostly idle"
        return "No action: CPU headroom is sufficient"

    def _get_memory_recommendation(self, current_avg: float, trend: float) -> str:
        """Advice for a node's memory given its daily peak use (percent) and trend."""
        if current_avg >= 90:
            return "Act now: memory is nearly exhausted; add memory or find the consumer"
        if trend > 0 and current_avg >= 70:
            return "Plan more memory: high usage with an increasing trend (leak?)"
        if trend > 0.5:
            return "Investigate: memory use grows steadily (possible leak)"
        return "No action: memory headroom is sufficient"


def capacity_planning_analysis(ctx: Context, *, days: float, now: int) -> CapacityResult:
    """Forecast per node and resource; see the module docstring for the method."""
    cfg = ctx.config.capacity
    pct = limit_pcts(ctx.config)
    start = now - window_seconds(days, DAY, "days")
    first_day = -(-start // DAY) * DAY  # the first UTC day wholly inside the window
    end_day = now // DAY * DAY  # days before it are complete
    last_hour = now // HOUR * HOUR  # hours before it are complete
    rollups = rollups_of(ctx)
    view = rollups.view("node", start, now)
    advisor = ctx.advice or DefaultAdvice()
    advice: dict[str, Advice] = {
        "cpu": advisor._get_cpu_recommendation,
        "memory": advisor._get_memory_recommendation,
        "swap": _swap_advice,
        "disk": _disk_advice,
        "inodes": _inodes_advice,
    }
    forecasts: list[Forecast] = []
    for (node, _), rows in view.series():
        rows = rows[view.hours[rows] < last_hour]
        for resource in RESOURCES:
            series = _hourly(view, rows, resource, cfg, pct)
            if series is None:
                continue
            days_ = _daily_peaks(series, first_day, end_day, cfg.min_day_hours)
            current = _current_peak(series, max(start, last_hour - DAY), last_hour)
            row = _forecast(series, days_, current, now, cfg, pct)
            row["recommendation"] = _recommend(row, advice[resource], resource, pct)
            forecasts.append(cast(Forecast, {"node_name": node, "container_name": None, **row}))
    window = {
        "start": start,
        "end": now,
        "days": round_float(days),
        "first_day": first_day,
        "end_day": end_day,
        "peak_definition": PEAK_DEFINITION,
    }
    return {"window": window, "forecasts": forecasts}


# --------------------------------------------------------------------------- series


@dataclass
class Hourly:
    """One node's complete hours of one resource: value, limit and samples per hour."""

    resource: str
    hours: np.ndarray
    values: np.ndarray
    limits: np.ndarray  # the resource's limit in the value's unit, per hour
    samples: np.ndarray


def limit_pcts(config: Config) -> dict[str, float]:
    """CPU, memory-used, disk and inode limits in percent of the whole: as configured, else
    the P1 levels of the emergency check (CPU busy, 100 minus the free-memory P1, the
    disk-full and inode-full P1)."""
    cap, em = config.capacity, config.emergency
    cpu = cap.cpu_limit_pct if cap.cpu_limit_pct is not None else em.cpu_pct.p1
    mem = cap.mem_limit_pct if cap.mem_limit_pct is not None else 100 - em.mem_available_pct.p1
    disk = cap.disk_limit_ratio if cap.disk_limit_ratio is not None else em.disk_used_ratio.p1
    inodes = cap.inodes_limit_ratio
    if inodes is None:
        inodes = em.inodes_used_ratio.p1
    return {
        "cpu": float(cpu),
        "memory": float(mem),
        "disk": 100.0 * float(disk),
        "inodes": 100.0 * float(inodes),
    }


def _hourly(
    view: RollupView, rows: np.ndarray, resource: str, cfg: CapacityConfig, pct: dict[str, float]
) -> Hourly | None:
    """The hourly values of `resource` (None when the node has none valid)."""
    if resource == "cpu":
        values = view.stat("mean", "cpu_total_pct")[rows].astype(float)
        limits = np.full(values.size, pct["cpu"])
    elif resource == "memory":
        total = view.stat("mean", "mem_total_mb")[rows].astype(float)
        values = total - view.stat("mean", "mem_available_mb")[rows].astype(float)
        limits = total * pct["memory"] / 100.0
    elif resource in FACT_COLUMNS:  # percent of the fullest filesystem, hourly mean
        if FACT_COLUMNS[resource] not in view.metrics:  # a table without the column
            return None
        values = 100.0 * view.stat("mean", FACT_COLUMNS[resource])[rows].astype(float)
        limits = np.full(values.size, pct[resource])
    else:
        values = view.stat("max", "swap_used_mb")[rows].astype(float)
        limits = np.full(values.size, float(cfg.swap_limit_mb))
    ok = np.isfinite(values) & np.isfinite(limits) & (limits > 0)
    if not ok.any():
        return None
    # An hour the sampler barely covered (one sample at 100 %) is no sustained peak: it
    # needs `min_hour_coverage` of the node's usual (median) samples per hour.
    column = {"cpu": "cpu_total_pct", "memory": "mem_available_mb", **FACT_COLUMNS}.get(
        resource, "swap_used_mb"
    )
    counts = view.stat("count", column)[rows].astype(float)
    ok &= counts >= cfg.min_hour_coverage * float(np.median(counts[ok]))
    sel = rows[ok]
    return Hourly(resource, view.hours[sel], values[ok], limits[ok], view.samples[sel])


@dataclass
class Days:
    """Daily peaks: day start, time of the busiest hour (its middle), value, limit, samples."""

    starts: np.ndarray
    times: np.ndarray
    peaks: np.ndarray
    limits: np.ndarray
    samples: np.ndarray


def _daily_peaks(s: Hourly, first_day: int, end_day: int, min_hours: int) -> Days:
    day = s.hours // DAY * DAY
    keep = (day >= first_day) & (day < end_day)
    starts, times, peaks, limits, samples = [], [], [], [], []
    for d in np.unique(day[keep]):
        idx = np.flatnonzero(day == d)
        if idx.size < min_hours:
            continue
        top = idx[np.argmax(s.values[idx])]
        starts.append(int(d))
        times.append(int(s.hours[top]) + HOUR // 2)
        peaks.append(float(s.values[top]))
        limits.append(float(np.median(s.limits[idx])))
        samples.append(int(s.samples[idx].sum()))
    return Days(
        np.array(starts, dtype=np.int64),
        np.array(times, dtype=np.int64),
        np.array(peaks, dtype=float),
        np.array(limits, dtype=float),
        np.array(samples, dtype=np.int64),
    )


def _current_peak(s: Hourly, start: int, end: int) -> tuple[float, float, int] | None:
    """(value, limit, hour) of the busiest complete hour of the last 24 h in the window."""
    idx = np.flatnonzero((s.hours >= start) & (s.hours < end))
    if not idx.size:
        return None
    top = idx[np.argmax(s.values[idx])]
    return float(s.values[top]), float(s.limits[top]), int(s.hours[top])


def restart_index(peaks: np.ndarray, limits: np.ndarray, drop_pct: float) -> int:
    """Index of the first day after the last drop or resize (0 when none).

    A drop: the peak falls by more than `drop_pct` of the limit below the day before and
    stays down for DROP_PERSIST_DAYS days (so a drop is confirmed three days after it, and a
    two-day weekend dip never is). A resize: the limit changes by more than 1 %."""
    start = 0
    for i in range(1, peaks.size):
        threshold = drop_pct / 100.0 * limits[i - 1]
        after = peaks[i : i + DROP_PERSIST_DAYS]
        held = after.size == DROP_PERSIST_DAYS  # a weekend dip at the end is not yet a drop
        dropped = held and peaks[i - 1] - after.max() > threshold
        resized = abs(limits[i] - limits[i - 1]) > 0.01 * limits[i - 1]
        if dropped or resized:
            start = i
    return start


# --------------------------------------------------------------------------- the fit


@dataclass
class Fit:
    """A line through daily peaks (days since now), day-of-week levels when fixed in advance,
    and inference that allows for AR(1) residuals through an effective sample size."""

    beta: np.ndarray
    xtx_inv: np.ndarray
    sigma: float
    n: int
    params: int
    r2: float | None
    worst: np.ndarray  # the design row's dummies of the weekday the forecast follows
    weekly: bool
    robust: bool
    rho: float  # bias-corrected lag-1 autocorrelation of the residuals, clipped to [0, 0.95]

    @property
    def slope(self) -> float:
        return float(self.beta[1])

    @property
    def inflation(self) -> float:
        """Variance inflation of a mean or a slope under AR(1) errors: (1 + rho) / (1 - rho)."""
        return (1.0 + self.rho) / (1.0 - self.rho)

    @property
    def n_eff(self) -> float:
        return self.n / self.inflation

    @property
    def dof(self) -> float:
        """Residual degrees of freedom, shrunk by the same inflation as the sample size, and
        at least 1 (Cauchy tails: a near-perfect line of smooth residuals still counts)."""
        return max(1.0, (self.n - self.params) / self.inflation)

    @property
    def slope_se(self) -> float:
        return self.sigma * math.sqrt(max(self.xtx_inv[1, 1], 0.0) * self.inflation)

    @property
    def slope_t(self) -> float | None:
        se = self.slope_se
        if se > 0:
            return self.slope / se
        return None if self.slope == 0 else math.copysign(1e9, self.slope)

    def predict(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fitted busiest-day mean peak `d` days after now and the half-width of its 95 %
        confidence band (the mean line's, not a single day's)."""
        d = np.atleast_1d(np.asarray(d, dtype=float))
        x0 = np.column_stack([np.ones(d.size), d, np.tile(self.worst, (d.size, 1))])
        quad = np.einsum("ij,jk,ik->i", x0, self.xtx_inv, x0) * self.inflation
        half = t975(self.dof) * self.sigma * np.sqrt(np.maximum(quad, 0.0))
        return x0 @ self.beta, half


def weekly_design(x: np.ndarray, dows: np.ndarray) -> bool:
    """Day-of-week terms are used when the data can carry them (two weeks of peaks covering
    every weekday), decided before any fit so the trend test is not a test after selection."""
    return bool(x.size >= 14 and x.max() - x.min() >= 13 and np.unique(dows).size == 7)


def day_groups(x: np.ndarray, dows: np.ndarray) -> np.ndarray | None:
    """The groups of days whose levels the fit carries, fixed by the calendar alone: each
    weekday (see `weekly_design`); else weekend against weekdays (UTC) when the peaks hold
    two of each, so a quiet weekend at the start of a short history is a level, not a
    trend; else None (a plain line)."""
    if weekly_design(x, dows):
        return dows
    weekend = (dows >= 5).astype(int)
    if x.size >= 6 and 2 <= int(weekend.sum()) <= x.size - 2:
        return weekend
    return None


def fit_trend(
    x: np.ndarray,
    y: np.ndarray,
    dows: np.ndarray,
    *,
    robust: bool = False,
    day_numbers: np.ndarray | None = None,
) -> Fit | None:
    """Least squares (or Theil-Sen when `robust`) of peaks on time; None when too few.
    `day_numbers` (UTC day of each peak, default floor(x)) tells consecutive days apart."""
    weekly = weekly_design(x, dows)
    groups = day_groups(x, dows)
    X, levels = _design(x, groups)
    n, p = X.shape
    if n - p < 1:
        return None
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    if robust:
        beta = _theil_sen(x, y, groups if groups is not None else np.zeros(n, dtype=int), X)
    resid = y - X @ beta
    sse = float(np.sum(resid**2))
    reduced = np.delete(X, 1, axis=1)  # the same model without the trend
    rbeta, *_ = np.linalg.lstsq(reduced, y, rcond=None)
    sse0 = float(np.sum((y - reduced @ rbeta) ** 2))
    r2 = max(0.0, 1.0 - sse / sse0) if sse0 > 1e-12 * max(1.0, float(np.sum(y**2))) else None
    rho = residual_rho(np.floor(x) if day_numbers is None else day_numbers, resid, p)
    xtx_inv = np.linalg.pinv(X.T @ X)
    fit = Fit(beta, xtx_inv, math.sqrt(sse / (n - p)), n, p, r2, np.zeros(0), weekly, robust, rho)
    fit.worst = _busiest_weekday(fit, len(levels))
    return fit


BUSIEST_DAY_Z = 3.0  # one-sided 5 % over 7 weekdays (Bonferroni, 2.45) with room for t tails


def _busiest_weekday(fit: Fit, k: int) -> np.ndarray:
    """The design row of the weekday the forecast follows: the busiest weekday when it
    stands above the average weekday by BUSIEST_DAY_Z standard errors (the largest of seven
    noisy levels is biased upwards, so it must earn its place), else the average weekday."""
    if k == 0:
        return np.zeros(0)
    average = np.full(k, 1.0 / (k + 1))  # the baseline weekday has no dummy
    effects = np.concatenate([[0.0], fit.beta[2:]])
    top = int(np.argmax(effects))
    worst = np.zeros(k)
    if top > 0:
        worst[top - 1] = 1.0
    c = np.concatenate([[0.0, 0.0], worst - average])
    se = fit.sigma * math.sqrt(max(float(c @ fit.xtx_inv @ c), 0.0) * fit.inflation)
    return worst if float(c @ fit.beta) > BUSIEST_DAY_Z * se else average


def _design(x: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, list[int]]:
    levels = sorted(set(groups.tolist()))[1:] if groups is not None else []
    dummies = [(groups == k).astype(float) for k in levels]
    return np.column_stack([np.ones(x.size), x, *dummies]), levels


def _theil_sen(x: np.ndarray, y: np.ndarray, groups: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Median of the pairwise slopes between peaks of the same weekday (so weekday levels
    cancel), then the levels by least squares of what the slope leaves."""
    i, j = np.triu_indices(x.size, k=1)
    same = (groups[i] == groups[j]) & (x[j] != x[i])
    if not same.any():
        same = x[j] != x[i]
    slope = float(np.median((y[j] - y[i])[same] / (x[j] - x[i])[same]))
    rest = np.delete(X, 1, axis=1)
    levels, *_ = np.linalg.lstsq(rest, y - slope * x, rcond=None)
    return np.insert(levels, 1, slope)


def residual_rho(day_numbers: np.ndarray, resid: np.ndarray, params: int) -> float:
    """Lag-1 autocorrelation of residuals (winsorised at 3 robust sd) on consecutive days,
    corrected for its downward bias in a short fitted series by (1 + 4 rho) / n plus
    (p - 1) / (2 n) for p parameters (the correction bench/capacity_mc.py chose), clipped
    to [0, 0.95]: negative correlation is never credited."""
    n = resid.size
    mad = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
    if mad > 0:  # one runaway day would hide the day-to-day memory of all the others
        resid = np.clip(resid, -3 * mad, 3 * mad)
    den = float(np.sum(resid**2))
    if n < 3 or den <= 0:
        return 0.0
    step = np.diff(day_numbers.astype(np.int64)) == 1
    num = float(np.sum((resid[1:] * resid[:-1])[step]))
    r = num / den * n / max(1, int(step.sum()))  # rescaled when days are missing
    r += (1.0 + 4.0 * r) / n + (params - 1) / (2 * n)
    return min(0.95, max(0.0, r))


def crossing(fit: Fit, limit: float, band: int, horizon: float) -> float | None:
    """First day >= 0 on which the fitted mean peak (band 0), its upper (+1) or lower (-1)
    95 % confidence bound reaches `limit`; None when not within SEARCH_HORIZONS horizons."""
    grid = np.linspace(0.0, SEARCH_HORIZONS * horizon, 4001)
    value, half = fit.predict(grid)
    above = np.flatnonzero(value + band * half >= limit)
    if not above.size:
        return None
    i = int(above[0])
    if i == 0:
        return 0.0
    lo, hi = grid[i - 1], grid[i]
    for _ in range(50):  # bisection inside the bracketing grid step
        mid = (lo + hi) / 2
        v, h = fit.predict(np.array([mid]))
        lo, hi = (lo, mid) if v[0] + band * h[0] >= limit else (mid, hi)
    return float(hi)


# --------------------------------------------------------------------------- the forecast


def _forecast(
    s: Hourly,
    days: Days,
    current: tuple[float, float, int] | None,
    now: int,
    cfg: CapacityConfig,
    pct: dict[str, float],
) -> dict[str, Any]:
    first = restart_index(days.peaks, days.limits, cfg.drop_restart_pct) if days.peaks.size else 0
    used = slice(first, None)
    x = (days.times[used] - now) / DAY
    y = days.peaks[used]
    dows = (days.starts[used] // DAY + 3) % 7  # Monday = 0 (1970-01-01 was a Thursday)
    limit = current[1] if current else (float(days.limits[-1]) if days.limits.size else None)
    enough = y.size >= max(3, cfg.min_days)
    numbers = days.starts[used] // DAY
    fit = fit_trend(x, y, dows, robust=cfg.robust_slope, day_numbers=numbers) if enough else None

    peak = current[0] if current else None
    slope = fit.slope if fit else None
    status, d, interval = _status(fit, peak, limit, y.size, cfg)
    evidence = {
        "value": round_float(peak),
        "threshold": round_float(limit),
        "limit": round_float(limit),
        "current_peak_time": current[2] if current else None,
        "r2": round_float(fit.r2) if fit else None,
        "slope_t": round_float(fit.slope_t) if fit and fit.r2 is not None else None,
        "slope_se": round_float(fit.slope_se) if fit else None,
        "residual_sd": round_float(fit.sigma) if fit else None,
        "residual_autocorrelation": round_float(fit.rho) if fit else None,
        "effective_days": round_float(fit.n_eff) if fit else None,
        "slope_method": ("theil_sen" if fit.robust else "least_squares") if fit else None,
        "weekly_adjusted": bool(fit.weekly) if fit else False,
        "follows_busiest_weekday": bool(fit.worst.size and fit.worst.max() == 1) if fit else False,
        "days_used": int(y.size),
        "days_available": int(days.peaks.size),
        "fit_start": int(days.starts[first]) if days.starts.size else None,
        "fit_end": int(days.starts[-1] + DAY) if days.starts.size else None,
        "restarted": bool(first > 0),
        "samples": int(days.samples[used].sum()),
        "daily_peaks": [round_float(v, 3) for v in y],
    }
    row: dict[str, Any] = {
        "resource_type": s.resource,
        "unit": UNITS[s.resource],
        "current_peak": round_float(peak, 3),
        "limit": round_float(limit, 3),
        "current_peak_ratio": round_float(peak / limit if peak is not None and limit else None),
        "trend_per_day": round_float(slope),
        "trend_ratio_per_day": round_float(slope / limit if slope is not None and limit else None),
        "days_to_exhaustion": round_float(d, 3),
        "days_to_exhaustion_interval": interval,
        "exhaustion_time": int(now + d * DAY) if d is not None else None,
        "status": status,
        "evidence": evidence,
    }
    if s.resource == "memory" and peak is not None and current:
        total = current[1] * 100.0 / pct["memory"]
        row["min_free_mb"] = round_float(total - peak if total else None, 3)
    return row


def trend_counts(fit: Fit, limit: float, min_r2: float, min_slope_ratio: float) -> bool:
    """A trend counts when it is significant at 5 % (two-sided, autocorrelation-adjusted t),
    large enough to matter (|slope| >= min_slope_ratio of the limit per day) and explains
    min_r2 of the variance the weekday levels leave."""
    t = fit.slope_t
    if fit.r2 is None or fit.r2 < min_r2 or t is None or abs(t) < t975(fit.dof):
        return False
    return abs(fit.slope) >= min_slope_ratio * limit


def _status(
    fit: Fit | None, peak: float | None, limit: float | None, n: int, cfg: CapacityConfig
) -> tuple[str, float | None, list[float | None] | None]:
    """(status, days_to_exhaustion, [pessimistic, optimistic]) of one forecast."""
    if peak is not None and limit and peak >= cfg.exhausted_ratio * limit:
        return "already_exhausted", None, None
    if fit is None or limit is None or n < cfg.min_days:
        return "insufficient_data", None, None
    if not trend_counts(fit, limit, cfg.min_r2, cfg.min_slope_ratio_per_day):
        return "no_significant_trend", None, None
    if fit.slope < 0:
        return "decreasing", None, None
    value_now = float(fit.predict(np.array([0.0]))[0][0])
    d = max(0.0, (limit - value_now) / fit.slope)
    if not math.isfinite(d) or d > cfg.horizon_days:
        return "beyond_horizon", None, None
    pessimistic = crossing(fit, limit, +1, cfg.horizon_days)
    optimistic = crossing(fit, limit, -1, cfg.horizon_days)
    interval = [round_float(pessimistic, 3), round_float(optimistic, 3)]
    return "exhaustion", d, interval


def _recommend(row: dict[str, Any], advice: Advice, resource: str, pct: dict[str, float]) -> str:
    """The analyzer's (overridable) advice, given the peak in percent of the whole (CPU,
    memory) or of the swap limit, and the trend in points per day (0 when the trend does
    not count)."""
    ratio = row["current_peak_ratio"]
    if ratio is None:
        days = row["evidence"]["days_used"]
        return f"Not enough data for a {resource} forecast ({days} complete days)"
    whole = pct.get(resource, 100.0)
    significant = row["status"] in ("exhaustion", "decreasing", "beyond_horizon")
    trend = row["trend_ratio_per_day"] if significant and row["trend_ratio_per_day"] else 0.0
    return advice(whole * ratio, whole * trend)


def _swap_advice(current_pct: float, trend: float) -> str:
    """Swap has no overridable hook in the Python API: plain advice here."""
    if current_pct >= 90:
        return "Act now: swap is nearly full; add memory or find the consumer"
    if trend > 0.5:
        return "Investigate: swap use grows steadily (memory pressure)"
    return "No action: swap headroom is sufficient"


def _disk_advice(current_pct: float, trend: float) -> str:
    """Disk space (percent of the fullest filesystem used, points per day)."""
    if current_pct >= 90:
        return "Act now: the fullest filesystem is nearly full; free space or grow it"
    if trend > 0:
        return "Plan space: the fullest filesystem fills steadily (logs, retention?)"
    return "No action: disk headroom is sufficient"


def _inodes_advice(current_pct: float, trend: float) -> str:
    """Inodes (percent of the fullest filesystem's inodes used, points per day)."""
    if current_pct >= 90:
        return "Act now: inodes are nearly exhausted; remove the many small files"
    if trend > 0:
        return "Investigate: files accumulate on the fullest filesystem (caches, spools?)"
    return "No action: inode headroom is sufficient"


CAPACITY_WARNING_DAYS = 30  # reports warn of resources exhausting sooner than this


def capacity_warnings(forecasts: list[Forecast]) -> list[Forecast]:
    """Forecasts already exhausted or exhausting within CAPACITY_WARNING_DAYS, soonest first."""
    urgent = [
        f
        for f in forecasts
        if f["status"] == "already_exhausted"
        or (
            f["status"] == "exhaustion"
            and (f["days_to_exhaustion"] or 0.0) <= CAPACITY_WARNING_DAYS
        )
    ]
    return sorted(urgent, key=lambda f: f["days_to_exhaustion"] or 0.0)


# --------------------------------------------------------------------------- served

STATUSES = tuple(s.value for s in ForecastStatus)
TIME_TO_EXHAUSTION = gauge(
    "time_to_exhaustion_seconds",
    "Forecast time until the resource's daily peak reaches its limit; +Inf when not "
    "trending to exhaustion, 0 when already exhausted.",
    ("node", "resource"),
    unit="s",
)
PEAK = gauge(
    "capacity_peak_ratio",
    "Current daily peak of the resource, 0..1 of its limit.",
    ("node", "resource"),
    unit="percentunit",
)
TREND = gauge(
    "capacity_trend_ratio_per_day",
    "Growth of the daily peak per day, as a ratio of the limit (0 without a significant trend).",
    ("node", "resource"),
    unit="percentunit",
)
STATUS = gauge(
    "capacity_forecast_status",
    "1 for the forecast's current status, 0 for the others.",
    ("node", "resource", "status"),
)


def to_samples(result: CapacityResult, view: ResultView) -> Iterator[Sample]:
    for f in result["forecasts"]:
        if f.get("container_name"):
            continue
        labels = {"node": f["node_name"], "resource": f["resource_type"]}
        status = f["status"]
        if status == "exhaustion" and f["days_to_exhaustion"] is not None:
            tte = f["days_to_exhaustion"] * DAY
        else:
            tte = 0.0 if status == "already_exhausted" else math.inf
        yield sample("time_to_exhaustion_seconds", tte, **labels)
        if f.get("current_peak_ratio") is not None:
            yield sample("capacity_peak_ratio", f["current_peak_ratio"], **labels)
        yield sample("capacity_trend_ratio_per_day", f.get("trend_ratio_per_day") or 0.0, **labels)
        for s in STATUSES:
            yield sample("capacity_forecast_status", 1 if s == status else 0, **labels, status=s)


def render_text(r: CapacityResult, t: Text) -> None:
    forecast_lines(r["forecasts"], t)


def forecast_lines(forecasts: list[Forecast], t: Text, *, peak_label: str = "peak") -> None:
    t.title("📈 CAPACITY PLANNING ANALYSIS")
    units = {"cpu": "%", "memory": " MiB", "swap": " MiB", "disk": "%", "inodes": "%"}
    by_node: dict[str, list[Forecast]] = {}
    for f in forecasts:
        by_node.setdefault(f["node_name"], []).append(f)
    for node, node_forecasts in sorted(by_node.items()):
        t.line(f"📊 {node}:")
        for f in node_forecasts:
            unit = units.get(f["resource_type"], "")
            peak, trend = f["current_peak"], f["trend_per_day"]
            line = f"   {f['resource_type']:<7} {peak_label} {cell(peak)}{unit}"
            if trend is not None:
                line += f" (trend: {trend:+.2f}{unit}/day)"
            status = f["status"]
            if status == "exhaustion" and f["days_to_exhaustion"] is not None:
                line += t.paint(f"  ⚠️ exhaustion in ~{f['days_to_exhaustion']:.0f} days", "red")
            elif status == "already_exhausted":
                line += t.paint("  ⛔ already exhausted", "red")
            else:
                line += f"  {status.replace('_', ' ')}"
            t.line(line)
            if f.get("recommendation"):
                t.line(t.paint(f"      💡 {f['recommendation']}", "dim"))


ANALYSIS = Analysis[CapacityResult](
    name="capacity",
    title="daily-peak trends per node and resource, and when each reaches its limit",
    run=capacity_planning_analysis,
    render_text=render_text,
    window=Window("days", lambda c: c.capacity.days),
    serve=Served(
        refresh_seconds=900,
        metrics=(TIME_TO_EXHAUSTION, PEAK, TREND, STATUS),
        to_samples=to_samples,
    ),
)
