"""False alarms of the seasonal departure rule on noise, against the rate it states.

AR(1) noise sampled every 5 minutes (phi 0.5 and 0.8, unit innovations, a level low enough
that the relative scale floor never binds, a daily sine so the same-hour baseline has a
pattern to learn) is averaged per hour exactly as the
rollups do; `_seasonal` (the detector's own function) then judges the last `--days` of each
series against the `range_days` before them. Flags within `range_quiet_hours` of each
other are one episode, as in the detector, so episodes per series-day are its false alarms.

    python bench/seasonal_null.py [--series 400] [--rate 0.01] [--seed 1]
"""

from __future__ import annotations

import argparse

import numpy as np

from exporter.analyses.anomalies import _seasonal
from exporter.config import AnomalyConfig

PER_HOUR = 12  # 5-minute samples


def hourly_ar1(rng: np.random.Generator, series: int, hours: int, phi: float) -> np.ndarray:
    """(series, hours, 1) hourly means of AR(1) samples with a daily pattern."""
    n = hours * PER_HOUR
    e = rng.standard_normal((series, n))
    x = np.empty_like(e)
    x[:, 0] = e[:, 0] / np.sqrt(1 - phi**2)
    for i in range(1, n):
        x[:, i] = phi * x[:, i - 1] + e[:, i]
    t = np.arange(n) / PER_HOUR
    x += 5 + 3 * np.sin(2 * np.pi * t / 24)
    return x.reshape(series, hours, PER_HOUR).mean(axis=2)[:, :, None]


def episodes(flags: np.ndarray, quiet: int) -> int:
    """Runs of flagged hours, split by more than `quiet` unflagged hours."""
    total = 0
    for row in flags:
        hours = np.flatnonzero(row)
        total += int(hours.size and 1 + (np.diff(hours) > quiet).sum())
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=400)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--rate", type=float, default=AnomalyConfig().seasonal_false_per_day)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    cfg = AnomalyConfig(seasonal_false_per_day=args.rate)
    first = round(cfg.range_days * 24)
    hours = first + args.days * 24
    rng = np.random.default_rng(args.seed)
    print("| phi | series-days | flagged hours | episodes | per series-day | stated |")
    print("|---|---|---|---|---|---|")
    for phi in (0.5, 0.8):
        mean = hourly_ar1(rng, args.series, hours, phi)
        seasonal = _seasonal(mean, cfg, first, hours - 1)
        assert seasonal is not None
        flags = np.abs(seasonal.z[:, :, 0]) > seasonal.threshold
        n = episodes(flags, round(cfg.range_quiet_hours))
        days = args.series * args.days
        print(f"| {phi} | {days} | {int(flags.sum())} | {n} | {n / days:.4f} | {args.rate:.4f} |")


if __name__ == "__main__":
    main()
