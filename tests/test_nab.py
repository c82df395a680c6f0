"""The anomaly detector on NAB's real CloudWatch series (bench/nab_eval.py), replayed with
`now=` every 3 hours and scored event by event. The bounds are the figures measured when
the detector was calibrated (docs in bench/nab_eval.py), with a little slack: a change that
loses a detected window or adds false alarms fails here."""

from __future__ import annotations

import pytest

from . import nab

# series: (windows detected at least, false-alarm episodes at most); measured: 2 of 17
# windows, 11 false alarms in 107 days (0.10 per day), at 1-hour and 3-hour steps alike.
EXPECTED = {
    "ec2_cpu_utilization_24ae8d": (0, 1),
    "ec2_cpu_utilization_53ea38": (0, 1),
    "ec2_cpu_utilization_5f5533": (0, 2),
    "ec2_cpu_utilization_77c1ca": (0, 6),
    "ec2_cpu_utilization_fe7f93": (1, 6),
    "ec2_disk_write_bytes_c0d644": (0, 1),
    "ec2_network_in_5abac7": (0, 1),
    "rds_cpu_utilization_cc0c53": (1, 1),
}


@pytest.fixture(scope="module")
def nab_scores(dsn):
    if not nab.NAB_DIR.is_dir():
        pytest.fail(f"NAB data missing at {nab.NAB_DIR}")
    return {s.name: s for s in nab.evaluate(dsn, list(EXPECTED), step_h=3.0)}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXPECTED))
def test_nab_series_holds_its_level(nab_scores, name):
    score = nab_scores[name]
    detected, false_alarms = EXPECTED[name]
    assert score.detected >= detected, score
    assert score.false_alarms <= false_alarms, score
    assert all(-12 <= d <= 3 for d in score.delays_h), score  # hours from the labelled point


@pytest.mark.slow
def test_nab_totals(nab_scores):
    scores = nab_scores.values()
    windows = sum(s.windows for s in scores)
    assert windows == 17
    assert sum(s.detected for s in scores) >= 2
    days = sum(s.days for s in scores)
    assert sum(s.false_alarms for s in scores) / days <= 0.15
