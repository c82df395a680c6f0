"""Monte Carlo of the capacity trend test and interval: the old fit against the new one.

Each run is 30 daily peaks (CPU %, limit 95) with noise of marginal sd 3 points that is iid
or AR(1) with phi 0.5 or 0.8, either flat at 60 % (no trend: any trend found is false) or
growing 0.5 point/day from 60 % now (the true crossing is 70 days ahead). The old and the
new method see the same series. Reported per case:

- false trend: share of flat runs whose trend counts (the status would be exhaustion,
  decreasing or beyond_horizon); the new method also without its practical-slope floor;
- coverage: share of trend runs whose interval [pessimistic, optimistic] holds the true
  crossing (an open end, None, is infinite);
- power: share of trend runs whose status is exhaustion.

Usage: python -m bench.capacity_mc [--runs 2000] [--seed 1] [--least-squares] [--bad-day 20]
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np

from exporter.analyses.capacity import crossing, fit_trend, t975, trend_counts

LIMIT = 95.0
LEVEL = 60.0
SLOPE = 0.5
SD = 3.0
DAYS = 30
HORIZON = 365.0
MIN_R2 = 0.3
MIN_SLOPE_RATIO = 0.001
TRUE_CROSSING = (LIMIT - LEVEL) / SLOPE
CASES = (("iid", 0.0), ("AR(1) 0.5", 0.5), ("AR(1) 0.8", 0.8))


# ------------------------------------------------------- the old fit, kept for the comparison


@dataclass
class OldFit:
    """Least squares of daily peaks on days since now, with optional day-of-week terms."""

    beta: np.ndarray
    xtx_inv: np.ndarray
    sigma: float
    dof: int
    r2: float | None
    worst: np.ndarray  # the design row's dummies of the busiest day of the week
    weekly: bool
    sse: float

    @property
    def slope(self) -> float:
        return float(self.beta[1])

    @property
    def slope_t(self) -> float | None:
        se = self.sigma * math.sqrt(max(self.xtx_inv[1, 1], 0.0))
        if se > 0:
            return self.slope / se
        return None if self.slope == 0 else math.copysign(1e9, self.slope)

    def predict(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fitted busiest-day peak `d` days after now and its 95 % prediction half-width."""
        d = np.atleast_1d(np.asarray(d, dtype=float))
        x0 = np.column_stack([np.ones(d.size), d, np.tile(self.worst, (d.size, 1))])
        quad = np.einsum("ij,jk,ik->i", x0, self.xtx_inv, x0)
        half = t975(self.dof) * self.sigma * np.sqrt(1.0 + np.maximum(quad, 0.0))
        return x0 @ self.beta, half


def old_fit_trend(x: np.ndarray, y: np.ndarray, dows: np.ndarray) -> OldFit | None:
    """The better (adjusted R²) of a plain line and a line with day-of-week terms; the
    latter only with two weeks of peaks. None with fewer than three points."""
    if x.size < 3:
        return None
    best = old_lsq(x, y, dows, weekly=False)
    if x.max() - x.min() >= 13 and np.unique(dows).size == 7:
        weekly = old_lsq(x, y, dows, weekly=True)
        if weekly is not None and best is not None and old_adj_r2(weekly, y) > old_adj_r2(best, y):
            best = weekly
    return best


def old_design(x: np.ndarray, dows: np.ndarray, weekly: bool) -> tuple[np.ndarray, list[int]]:
    levels = sorted(set(dows.tolist()))[1:] if weekly else []
    dummies = [(dows == k).astype(float) for k in levels]
    return np.column_stack([np.ones(x.size), x, *dummies]), levels


def old_lsq(x: np.ndarray, y: np.ndarray, dows: np.ndarray, *, weekly: bool) -> OldFit | None:
    X, levels = old_design(x, dows, weekly)
    dof = x.size - X.shape[1]
    if dof < 1:
        return None
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    sse = float(np.sum((y - X @ beta) ** 2))
    reduced = np.delete(X, 1, axis=1)  # the same model without the trend
    rbeta, *_ = np.linalg.lstsq(reduced, y, rcond=None)
    sse0 = float(np.sum((y - reduced @ rbeta) ** 2))
    r2 = max(0.0, 1.0 - sse / sse0) if sse0 > 1e-12 * max(1.0, float(np.sum(y**2))) else None
    effects = np.concatenate([[0.0], beta[2:]])
    worst = np.zeros(len(levels))
    top = int(np.argmax(effects))
    if top > 0:
        worst[top - 1] = 1.0
    return OldFit(beta, np.linalg.pinv(X.T @ X), math.sqrt(sse / dof), dof, r2, worst, weekly, sse)


def old_adj_r2(fit: OldFit, y: np.ndarray) -> float:
    sst = float(np.sum((y - y.mean()) ** 2))
    if sst <= 0:
        return 0.0
    n, p = y.size, y.size - fit.dof
    return 1.0 - (fit.sse / (n - p)) / (sst / (n - 1))


def old_crossing(fit: OldFit, limit: float, band: int, horizon: float) -> float | None:
    """The package's crossing search on the old fit: its `predict` gives a prediction
    band, where the new fit's gives a confidence band."""
    return crossing(fit, limit, band, horizon)  # type: ignore[arg-type]


def old_counts(fit: OldFit) -> bool:
    """The old status rule: r2 >= 0.3 and |t| past the iid two-sided 5 % level."""
    t = fit.slope_t
    return not (fit.r2 is None or fit.r2 < MIN_R2 or t is None or abs(t) < t975(fit.dof))


# --------------------------------------------------------------------------- the runs


def ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    """Stationary AR(1) noise of marginal sd SD."""
    z = rng.standard_normal(n)
    e = np.empty(n)
    e[0] = z[0]
    for i in range(1, n):
        e[i] = phi * e[i - 1] + math.sqrt(1 - phi**2) * z[i]
    return SD * e


@dataclass
class Tally:
    false_trend: int = 0
    false_trend_no_floor: int = 0
    covered: int = 0
    detected: int = 0


def covers(lo: float | None, hi: float | None) -> bool:
    return lo is not None and lo <= TRUE_CROSSING and (hi is None or hi >= TRUE_CROSSING)


def one_run(
    rng: np.random.Generator, phi: float, old: Tally, new: Tally, robust: bool, bad_day: float
) -> None:
    x = np.arange(DAYS, dtype=float) - DAYS + 0.5  # busiest hours, days since now
    dows = (np.arange(DAYS) + int(rng.integers(7))) % 7
    for slope in (0.0, SLOPE):
        y = LEVEL + slope * x + ar1(rng, DAYS, phi)
        y[rng.integers(DAYS)] += bad_day  # one runaway day, when asked for
        f_old = old_fit_trend(x, y, dows)
        f_new = fit_trend(x, y, dows, robust=robust)
        assert f_old is not None and f_new is not None
        if slope == 0:
            old.false_trend += old_counts(f_old)
            new.false_trend += trend_counts(f_new, LIMIT, MIN_R2, MIN_SLOPE_RATIO)
            new.false_trend_no_floor += trend_counts(f_new, LIMIT, MIN_R2, 0.0)
            continue
        old.covered += covers(
            old_crossing(f_old, LIMIT, +1, HORIZON), old_crossing(f_old, LIMIT, -1, HORIZON)
        )
        new.covered += covers(
            crossing(f_new, LIMIT, +1, HORIZON), crossing(f_new, LIMIT, -1, HORIZON)
        )
        old.detected += old_counts(f_old) and f_old.slope > 0
        new.detected += trend_counts(f_new, LIMIT, MIN_R2, MIN_SLOPE_RATIO) and f_new.slope > 0


def monte_carlo(
    runs: int, seed: int, robust: bool = True, bad_day: float = 0.0
) -> dict[str, tuple[Tally, Tally]]:
    """case -> (old, new) tallies over `runs` runs of each series kind."""
    out = {}
    for k, (name, phi) in enumerate(CASES):
        rng = np.random.default_rng([seed, k])
        old, new = Tally(), Tally()
        for _ in range(runs):
            one_run(rng, phi, old, new, robust, bad_day)
        out[name] = (old, new)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--least-squares", action="store_true", help="new fit without Theil-Sen")
    parser.add_argument("--bad-day", type=float, default=0.0, help="points added to one day")
    args = parser.parse_args()
    results = monte_carlo(args.runs, args.seed, not args.least_squares, args.bad_day)
    pct = lambda k: f"{100 * k / args.runs:5.1f} %"  # noqa: E731
    print(f"{args.runs} runs per case; targets: false trend <= 7 %, coverage >= 90 %")
    print(f"{'case':<10} {'false trend old/new (no floor)':>34} {'coverage old/new':>20}"
          f" {'power old/new':>18}")  # fmt: skip
    for name, (old, new) in results.items():
        print(
            f"{name:<10} {pct(old.false_trend)} / {pct(new.false_trend)}"
            f" ({pct(new.false_trend_no_floor)})"
            f"  {pct(old.covered)} / {pct(new.covered)}  {pct(old.detected)} / {pct(new.detected)}"
        )


if __name__ == "__main__":
    main()
