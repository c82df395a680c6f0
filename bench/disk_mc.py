"""Monte Carlo of the disk exhaustion forecast: how often is days-to-full within 2 %?

Each run is the filesystem of tests/test_hostfacts.py with its own noise: 30 days of
5-minute samples (jitter up to +-20 s, 3 % missed), filling 0.5 point a day to 80 % at the
end, a daily churn of 0.3 point cresting at 02:00 UTC, and AR(1) noise of sd `--sd` with phi
`--phi` per sample. Hourly means, daily peaks and the forecast are the capacity analysis's
own functions (without the database). The truth is by hand: (95 - 80 - 0.3) / 0.5 days.
Reported: the share within 2 % and 5 %, the median and worst relative error, the share of
runs whose 95 % interval holds the truth, and the share whose status is exhaustion.

Usage: python -m bench.disk_mc [--runs 500] [--seed 1] [--sd 0.0005] [--phi 0.9]
"""

from __future__ import annotations

import argparse

import numpy as np

from exporter.analyses.capacity import Hourly, _current_peak, _daily_peaks, _forecast, limit_pcts
from exporter.config import Config

DAY, HOUR = 86400, 3600
END = 1_790_000_000 // DAY * DAY + 13 * 3600 + 1234
RATE, USED, CHURN, CHURN_HOUR = 0.5, 80.0, 0.3, 2.0  # percent of the filesystem
TRUTH = (95.0 - USED - CHURN) / RATE


def one_run(rng: np.random.Generator, sd: float, phi: float) -> dict:
    grid = np.arange(END - 30 * DAY, END + 1, 300, dtype=np.int64)
    t = grid + rng.integers(-20, 21, grid.size)
    t = t[(rng.random(t.size) > 0.03) & (t <= END)]
    e = rng.standard_normal(t.size)
    noise = np.empty(t.size)
    noise[0] = e[0]
    for i in range(1, t.size):
        noise[i] = phi * noise[i - 1] + np.sqrt(1 - phi**2) * e[i]
    churn = CHURN * np.cos(2 * np.pi * ((t % DAY) / HOUR - CHURN_HOUR) / 24.0)
    used = USED + RATE * (t - END) / DAY + churn + 100 * sd * noise
    hours = t // HOUR * HOUR
    last_hour = END // HOUR * HOUR
    keep = hours < last_hour
    uniq, inverse, counts = np.unique(hours[keep], return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=used[keep]) / counts
    cfg = Config()
    s = Hourly("disk", uniq, means, np.full(uniq.size, 95.0), counts)
    start = END - 30 * DAY
    days = _daily_peaks(s, -(-start // DAY) * DAY, END // DAY * DAY, cfg.capacity.min_day_hours)
    current = _current_peak(s, max(start, last_hour - DAY), last_hour)
    return _forecast(s, days, current, END, cfg.capacity, limit_pcts(cfg))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sd", type=float, default=0.0005, help="noise sd, share of the disk")
    parser.add_argument("--phi", type=float, default=0.9)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    errors, covered, found = [], 0, 0
    for _ in range(args.runs):
        f = one_run(rng, args.sd, args.phi)
        if f["status"] != "exhaustion":
            continue
        found += 1
        errors.append(f["days_to_exhaustion"] / TRUTH - 1)
        low, high = f["days_to_exhaustion_interval"]
        covered += (low is None or low <= TRUTH) and (high is None or high >= TRUTH)
    err = np.abs(np.array(errors))
    print(f"truth {TRUTH:.2f} days; sd {args.sd}, phi {args.phi}, {args.runs} runs")
    print(f"status exhaustion: {found / args.runs:.1%}")
    print(f"within 2 %: {np.mean(err <= 0.02):.1%}; within 5 %: {np.mean(err <= 0.05):.1%}")
    print(f"median |error| {np.median(err):.2%}, worst {err.max():.2%}")
    print(f"mean signed error {np.mean(errors):+.2%}; interval coverage {covered / found:.1%}")


if __name__ == "__main__":
    main()
