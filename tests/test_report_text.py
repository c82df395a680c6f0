"""The daily and weekly text reports, rendered from reports built by hand: grades from too
few samples say so, the capacity peaks say they are yesterday's, and the weekly "peak hour"
column holds an hour."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from exporter.analyses.daily import daily_text
from exporter.analyses.weekly import _summary, weekly_text
from exporter.render import Text

NOW = int(datetime(2026, 12, 1, 18, 0, tzinfo=UTC).timestamp())  # a Tuesday


def node(name: str, grade: str, data: str, ratio: float | None) -> dict[str, Any]:
    return {"node_name": name, "availability": ratio, "performance": ratio, "capacity": ratio,
            "grade": grade, "samples": 3, "expected_samples": 1440, "interval_seconds": 60.0,
            "data": data, "cpu_count": None, "critical_threats": [],
            "invalid_values": {}}  # fmt: skip


def forecast() -> dict[str, Any]:
    return {"node_name": "n1", "container_name": None, "resource_type": "cpu", "unit": "%",
            "current_peak": 91.5, "limit": 95.0, "current_peak_ratio": 0.963,
            "trend_per_day": 1.25, "trend_ratio_per_day": None, "days_to_exhaustion": 2.8,
            "days_to_exhaustion_interval": None, "exhaustion_time": None,
            "status": "exhaustion", "evidence": {}, "recommendation": ""}  # fmt: skip


def rows_of(text: str, first: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip().startswith(first)]


def test_daily_text_marks_insufficient_data_and_yesterdays_peak():
    report = {
        "report": "daily", "status": "WARNING",
        "window": {"start": NOW - 86400, "end": NOW, "hours": 24},
        "nodes": [node("n1", "GOOD", "ok", 0.97),
                  node("n2", "UNKNOWN", "insufficient_data", None)],
        "threats": [], "immediate_actions": [], "anomalies": [],
        "capacity_warnings": [forecast()],
        "summary": {"text": "WARNING: 2 nodes"},
    }  # fmt: skip
    t = Text(colour=False)
    daily_text(report, t)  # type: ignore[arg-type]
    text = str(t)
    (n1,) = rows_of(text, "n1 ")
    (n2,) = rows_of(text, "n2 ")
    assert n1[-1] == "GOOD" and "insufficient" not in " ".join(n1)
    assert " ".join(n2[-3:]) == "UNKNOWN (insufficient data)"
    assert "   cpu     yesterday's peak 91.5% (trend: +1.25%/day)" in text


def test_weekly_summary_finds_the_busiest_hour():
    start = NOW - 5 * 3600
    hours = np.arange(start, NOW, 3600)  # five hours
    values = np.array([10.0, 50.0, np.nan, 70.0, 30.0])
    counts = np.array([60, 60, 60, 0, 60])  # the 70 % hour has no CPU sample: not a peak
    got = _summary(values, counts, hours)
    assert got["peak_hour"] == start + 3600 and got["peak_hour_mean"] == 50.0
    assert got["mean"] == 30.0 and got["hours"] == 3  # (10 + 50 + 30) / 3


def test_weekly_text_peak_hour_is_an_hour():
    peak = int(datetime(2026, 11, 24, 14, 0, tzinfo=UTC).timestamp())  # a Tuesday
    cpu = {"this_week": {"mean": 42.5, "peak_hour_mean": 88.25, "peak_hour": peak, "hours": 168},
           "last_week": {"mean": 40.0, "peak_hour_mean": 80.0, "peak_hour": peak, "hours": 168},
           "change": 2.5}  # fmt: skip
    report = {
        "report": "weekly",
        "window": {"start": NOW - 7 * 86400, "end": NOW, "days": 7},
        "previous_window": {"start": NOW - 14 * 86400, "end": NOW - 7 * 86400, "days": 7},
        "nodes": [{"node_name": "n1", "metrics": {"cpu_total_pct": cpu}}],
        "worst_nodes": [node("n9", "POOR", "insufficient_data", 0.5)],
        "patterns": [], "capacity_warnings": [forecast()], "grades": {},
    }  # fmt: skip
    t = Text(colour=False)
    weekly_text(report, t)  # type: ignore[arg-type]
    text = str(t)
    header = next(line for line in text.splitlines() if "cpu this week" in line)
    assert header.split() == ["node", "cpu", "this", "week", "last", "week", "change",
                              "peak", "hour", "peak", "hour", "cpu"]  # fmt: skip
    (n1,) = rows_of(text, "n1 ")
    assert n1 == ["n1", "42.5", "40", "2.5", "Tue", "14:00", "UTC", "88.25"]
    (n9,) = rows_of(text, "n9 ")
    assert " ".join(n9[-3:]) == "POOR (insufficient data)"
    assert "yesterday's peak 91.5%" in text
