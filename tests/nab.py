"""Scoring the anomaly detector on NAB's real AWS CloudWatch series, event by event: each
series is loaded as one node's column of its own table, `detect_anomalies` is replayed with
`now=` stepping through it, and the reports are scored against NAB's labelled windows.
Shared by tests/test_nab.py (bounds) and bench/nab_eval.py (the table of figures)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from exporter import PerformanceAnalyzer
from exporter.schema import init_table
from exporter.store import Store

# The project's shared/ folder sits beside the checkout; PERF_ANALYZER_NAB_DIR overrides it.
NAB_DIR = Path(
    os.environ.get("PERF_ANALYZER_NAB_DIR")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"
)
MIB = 2**20
PERIOD = 300  # CloudWatch 5-minute periods: byte counts are per period

# NAB series -> (column, factor to the column's unit)
SERIES: dict[str, tuple[str, float]] = {
    "ec2_cpu_utilization_24ae8d": ("cpu_total_pct", 1.0),
    "ec2_cpu_utilization_53ea38": ("cpu_total_pct", 1.0),
    "ec2_cpu_utilization_5f5533": ("cpu_total_pct", 1.0),
    "ec2_cpu_utilization_77c1ca": ("cpu_total_pct", 1.0),
    "ec2_cpu_utilization_fe7f93": ("cpu_total_pct", 1.0),
    "ec2_disk_write_bytes_c0d644": ("disk_write_mb_s", 1.0 / PERIOD / MIB),
    "ec2_network_in_5abac7": ("net_rx_mb_s", 1.0 / PERIOD / MIB),
    "rds_cpu_utilization_cc0c53": ("cpu_total_pct", 1.0),
}


def _unix(text: str) -> int:
    stamp = dt.datetime.fromisoformat(text.strip()).replace(tzinfo=dt.UTC)
    return int(stamp.timestamp())


def read_series(name: str, nab_dir: Path = NAB_DIR) -> tuple[list[int], list[float]]:
    with open(nab_dir / f"{name}.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [_unix(r["timestamp"]) for r in rows], [float(r["value"]) for r in rows]


def label_windows(name: str, nab_dir: Path = NAB_DIR) -> list[tuple[int, int]]:
    labels = json.loads((nab_dir / "label_windows.json").read_text())
    return [(_unix(a), _unix(b)) for a, b in labels[name]]


def load_series(dsn: str, name: str, nab_dir: Path = NAB_DIR) -> tuple[str, int, int]:
    """Load series `name` into table nab_<name> as node "nab"; returns (table, start, end)."""
    column, factor = SERIES[name]
    times, values = read_series(name, nab_dir)
    table = f"nab_{name}"
    with Store(dsn, table) as store:
        init_table(store)
        with store.write() as cur:
            cur.execute(sql.SQL("TRUNCATE {}").format(store.table))
            cur.executemany(
                sql.SQL(
                    "INSERT INTO {} (sample_time, node_name, node_flag, {})"
                    " VALUES (%s, 'nab', TRUE, %s)"
                ).format(store.table, sql.Identifier(column)),
                [(t, v * factor) for t, v in zip(times, values, strict=True)],
            )
    return table, times[0], times[-1]


@dataclass
class SeriesScore:
    name: str
    windows: int
    detected: int
    false_alarms: int
    days: float
    delays_h: list[float] = field(default_factory=list)
    calls: int = 0
    seconds: float = 0.0

    @property
    def recall(self) -> float:
        return self.detected / self.windows if self.windows else 0.0

    @property
    def false_per_day(self) -> float:
        return self.false_alarms / self.days if self.days else 0.0


def replay(dsn: str, table: str, start: int, end: int, step_h: float, config=None) -> list[dict]:
    """Anomalies reported by calls at now = start + 6 h, + step, ... up to end."""
    step = int(step_h * 3600)
    reports: list[dict] = []
    with PerformanceAnalyzer(dsn, table_name=table, config=config) as analyzer:
        now = start + 6 * 3600
        while now <= end + step - 1:
            at = min(now, end)
            found = analyzer.detect_anomalies(hours=step_h, now=at)["anomalies"]
            reports.extend(found)
            now += step
    return reports


def score(
    name: str,
    reports: list[dict],
    windows: list[tuple[int, int]],
    start: int,
    end: int,
    *,
    early_h: float = 1.0,
    merge_h: float = 2.0,
) -> SeriesScore:
    """Event-level recall, false-alarm episodes and delays of one series' reports."""
    times = sorted(int(r["detected_at"]) for r in reports)
    early = int(early_h * 3600)
    result = SeriesScore(name, len(windows), 0, 0, (end - start - 6 * 3600) / 86400)
    for a, b in windows:
        hits = [t for t in times if a - early <= t <= b]
        if hits:
            result.detected += 1
            result.delays_h.append((hits[0] - (a + b) / 2) / 3600)
    outside = [t for t in times if not any(a - early <= t <= b for a, b in windows)]
    last = None
    for t in outside:
        if last is None or t - last > merge_h * 3600:
            result.false_alarms += 1
        last = t
    return result


def evaluate(dsn: str, names: list[str], step_h: float, config=None) -> list[SeriesScore]:
    scores = []
    for name in names:
        table, start, end = load_series(dsn, name)
        t0 = time.perf_counter()
        reports = replay(dsn, table, start, end, step_h, config)
        seconds = time.perf_counter() - t0
        s = score(name, reports, label_windows(name), start, end)
        s.calls = int((end - start - 6 * 3600) // (step_h * 3600)) + 1
        s.seconds = seconds
        scores.append(s)
    return scores
