"""The live demo keeps its findings: the outage and the spike recur daily instead of
sliding out of their 24-hour windows (the whole served view: bench/demo_drift.py)."""

from __future__ import annotations

import pytest

from exporter.demo import LiveAppender
from exporter.simulate import FleetSpec, copy_fleet, simulate
from exporter.store import Store

START = 1_790_000_040
DAY = 86400


@pytest.mark.slow
def test_the_outage_recurs_a_day_later(fresh_dsn):
    spec = FleetSpec(days=2, end=START)
    with Store(fresh_dsn) as store:
        fleet = copy_fleet(store, simulate(spec))
        gap = fleet.truth_for("outage_gap")
        appender = LiveAppender(store, spec, fleet.end)
        for hour in range(1, 21):  # steps shorter than the gap's distance from the end
            appender.append(START + hour * 3600)
        with store.read() as cur:
            cur.execute(
                f"SELECT sample_time FROM {store.table_name} WHERE node_name = %s"
                " AND node_flag AND sample_time > %s",
                (gap["node"], START),
            )
            times = {r["sample_time"] for r in cur}
    later = range(gap["gap_start"] + DAY, gap["gap_end"] + DAY, spec.interval)
    assert not times & set(later)  # silent again at the same time of day
    slots = set(range(START + spec.interval, START + 20 * 3600 + 1, spec.interval))
    assert times == slots - set(later)  # and present at every other slot
