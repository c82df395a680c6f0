"""The anomaly detector on NAB's real AWS CloudWatch series, side by side with the detectors
published with NAB, all scored by the one function in tests/nab.py.

Each series is loaded as one node's column of its own table (5-minute samples), then
`detect_anomalies` is replayed with `now=` every 2 hours, each series' first 3 days being
history only. A window is detected when a reported anomaly's `sample_time` falls inside
it; a false alarm is a distinct 2-hour step with a report outside every window. The
published detectors' own detections are mapped to the step they fall in and scored the
same way. Prints one table (ours per priority set, then theirs with NAB's whole-benchmark
score), the delay from each window's start to our first alert in it, and the replay's wall
time.

    python bench/nab_eval.py [--dsn DSN] [--set pct_min_change=2 --set persist=2 ...]

`--set` overrides AnomalyConfig fields, to measure a variant without editing code.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
from pathlib import Path

from exporter.config import AnomalyConfig, Config
from tests import nab

OURS = "perf-analyzer"


def table_rows(ours: dict, peers: dict) -> list[tuple[str, nab.Score, float | None]]:
    """(detector, total score, NAB score) rows: ours per priority set, then the peers."""
    rows = []
    for label, priorities in nab.PRIORITY_SETS.items():
        total = nab.total(nab.score(s, reports, priorities) for s, reports in ours.values())
        rows.append((f"{OURS} ({label})", total, None))
    for name, peer in peers.items():
        total = nab.total(
            nab.score(s, nab.published_reports(peer["detections"].get(key, []), s))
            for key, (s, _) in ours.items()
        )
        rows.append((name, total, peer["nab_score_standard"]))
    return rows


def print_table(rows, out=sys.stdout) -> None:
    print("| detector | windows detected | false alarms | per series-day | NAB score |", file=out)
    print("|---|---|---|---|---|", file=out)
    for name, t, nab_score in rows:
        shown = "-" if nab_score is None else f"{nab_score:.1f}"
        print(
            f"| {name} | {t.detected}/{t.windows} | {t.false_alarms} "
            f"| {t.false_per_day:.3f} | {shown} |",
            file=out,
        )
    days = rows[0][1].days
    print(f"\n{days:.1f} series-days scored (after each series' history).", file=out)


def print_delays(ours: dict, out=sys.stdout) -> None:
    """Minutes from each window's start to our first alert inside it, per priority set."""
    labels = list(nab.PRIORITY_SETS)
    print("| series | window start (UTC) | " + " | ".join(labels) + " |", file=out)
    print("|---|---|" + "---|" * len(labels), file=out)
    for s, reports in ours.values():
        per = [nab.score(s, reports, p).delays_min for p in nab.PRIORITY_SETS.values()]
        for i, (a, b) in enumerate(s.windows):
            start = dt.datetime.fromtimestamp(a, dt.UTC).strftime("%Y-%m-%d %H:%M")
            history = " (within the history)" if b <= s.first else ""
            cells = ["-" if d[i] is None else f"{d[i]:.0f}" for d in per]
            print(f"| {s.name} | {start}{history} | " + " | ".join(cells) + " |", file=out)


def config_with(overrides: list[str]) -> Config | None:
    """A Config whose AnomalyConfig has the `field=value` overrides (None: defaults)."""
    if not overrides:
        return None
    defaults = AnomalyConfig()
    changes = {}
    for item in overrides:
        key, _, value = item.partition("=")
        if key not in {f.name for f in dataclasses.fields(AnomalyConfig)}:
            raise SystemExit(f"unknown AnomalyConfig field {key!r}")
        changes[key] = type(getattr(defaults, key))(value)
    return Config(anomalies=dataclasses.replace(defaults, **changes))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dsn", default=None, help="default: a temporary embedded PostgreSQL")
    parser.add_argument("--series", nargs="*", default=list(nab.SERIES))
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import database

    config = config_with(args.set)
    with database(args.dsn) as dsn:
        ours, seconds = nab.evaluate(dsn, args.series, config)
    print_table(table_rows(ours, nab.published_detectors()))
    print(f"Replay: {sum(len(r) for _, r in ours.values())} reports, {seconds:.1f} s wall.\n")
    print_delays(ours)


if __name__ == "__main__":
    main()
