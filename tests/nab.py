"""NAB's real CloudWatch series (tests/data/nab/) and the one event-level scoring shared by
tests/test_nab.py and bench/nab_eval.py, so the test's bounds and the benchmark's table
mean the same thing. Bench imports this module; tests never import bench.

Scoring: the detector is replayed with `now=` every `STEP` over each series, its first
`HISTORY` being history only. A labelled window is detected when a reported anomaly's
`sample_time` falls inside it. A false alarm is a distinct step with a report outside
every window (one noisy step counts once, however many reports it holds), and false alarms
per series-day divide by the days after the history. Published detectors' detections are
scored by the same function: each detection time falls in one step.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from exporter import PerformanceAnalyzer
from exporter.schema import init_table
from exporter.store import Store

NAB_DIR = Path(__file__).resolve().parent / "data" / "nab"
HOUR = 3600
DAY = 24 * HOUR
STEP = 2 * HOUR  # replay step: one call of detect_anomalies per step
HISTORY = 3 * DAY  # each series' first days only feed the baselines
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

# Priority sets of the table: each includes the more urgent ones.
P1 = ("P1-CRITICAL",)
P1_P2 = ("P1-CRITICAL", "P2-WARNING")
ALL = None  # every report, whatever its priority
PRIORITY_SETS: dict[str, tuple[str, ...] | None] = {"P1": P1, "P1+P2": P1_P2, "all": ALL}


def unix(text: str) -> int:
    stamp = dt.datetime.fromisoformat(text.strip()).replace(tzinfo=dt.UTC)
    return int(stamp.timestamp())


def read_series(name: str) -> tuple[list[int], list[float]]:
    with open(NAB_DIR / f"{name}.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [unix(r["timestamp"]) for r in rows], [float(r["value"]) for r in rows]


def label_windows(name: str) -> list[tuple[int, int]]:
    labels = json.loads((NAB_DIR / "label_windows.json").read_text())
    return [(unix(a), unix(b)) for a, b in labels[name]]


def published_detectors() -> dict[str, dict]:
    """Detector name -> {"nab_score_standard": float, "detections": {series: [unix]}}."""
    doc = json.loads((NAB_DIR / "published_detectors.json").read_text())
    return {
        name: {
            "nab_score_standard": d["nab_score_standard"],
            "detections": {s: [unix(t) for t in ts] for s, ts in d["detections"].items()},
        }
        for name, d in doc["detectors"].items()
    }


@dataclass(frozen=True)
class Report:
    """One reported anomaly, reduced to what scoring needs."""

    step: int  # replay step that reported it (0 = the first step after the history)
    sample_time: int  # the anomalous sample (a published detection: its own time)
    detected_at: int  # when it could have alerted
    priority: str | None = None


@dataclass(frozen=True)
class Series:
    name: str
    table: str
    start: int
    end: int
    windows: list[tuple[int, int]]

    @property
    def first(self) -> int:
        """End of the history: the first step covers (first, first + STEP]."""
        return self.start + HISTORY

    @property
    def days(self) -> float:
        return (self.end - self.first) / DAY

    def step_of(self, t: int) -> int | None:
        """The step whose interval (now - STEP, now] holds t; None within the history."""
        return None if t <= self.first else (t - self.first - 1) // STEP


def load_series(dsn: str, name: str) -> Series:
    """Load series `name` into table nab_<name> as node "nab"."""
    column, factor = SERIES[name]
    times, values = read_series(name)
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
    return Series(name, table, times[0], times[-1], label_windows(name))


def replay(dsn: str, series: Series, config=None) -> list[Report]:
    """Reports of detect_anomalies called at the end of every step after the history."""
    reports: list[Report] = []
    with PerformanceAnalyzer(dsn, table_name=series.table, config=config) as analyzer:
        step = 0
        while (now := series.first + (step + 1) * STEP) - STEP < series.end:
            found = analyzer.detect_anomalies(hours=STEP / HOUR, now=now)["anomalies"]
            reports.extend(
                Report(step, int(a["sample_time"]), int(a["detected_at"]), a["priority"])
                for a in found
            )
            step += 1
    return reports


def published_reports(times: Iterable[int], series: Series) -> list[Report]:
    """A published detector's detections as reports of the steps they fall in."""
    return [Report(step, t, t) for t in times if (step := series.step_of(t)) is not None]


@dataclass
class Score:
    name: str
    windows: int
    detected: int
    false_alarms: int
    days: float
    delays_min: list[float | None] = field(default_factory=list)  # per window; None: missed

    def __add__(self, other: Score) -> Score:
        return Score(
            "total",
            self.windows + other.windows,
            self.detected + other.detected,
            self.false_alarms + other.false_alarms,
            self.days + other.days,
            self.delays_min + other.delays_min,
        )

    @property
    def false_per_day(self) -> float:
        return self.false_alarms / self.days if self.days else 0.0


def score(series: Series, reports: Iterable[Report], priorities=ALL) -> Score:
    """Windows detected, false-alarm steps and delays (minutes from a window's start to
    the first alert of a report inside it) of one series' reports of `priorities`."""
    kept = [r for r in reports if priorities is None or r.priority in priorities]
    result = Score(series.name, len(series.windows), 0, 0, series.days)
    for a, b in series.windows:
        inside = [r.detected_at for r in kept if a <= r.sample_time <= b]
        result.detected += bool(inside)
        result.delays_min.append((min(inside) - a) / 60 if inside else None)
    outside = {r.step for r in kept if not any(a <= r.sample_time <= b for a, b in series.windows)}
    result.false_alarms = len(outside)
    return result


def total(scores: Iterable[Score]) -> Score:
    return sum(scores, Score("total", 0, 0, 0, 0.0))


def evaluate(dsn: str, names: Iterable[str] = SERIES, config=None):
    """(series, our reports) per series name, and the replay's wall time in seconds."""
    loaded = {name: load_series(dsn, name) for name in names}
    t0 = time.perf_counter()
    reports = {name: (s, replay(dsn, s, config)) for name, s in loaded.items()}
    return reports, time.perf_counter() - t0
