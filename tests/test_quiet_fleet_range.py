"""A quiet realistic fleet must not report a range departure of a constant series.

Found by bench/quiet_fleet.py: on a 7.1-day quiet fleet, once an hour (at this phase of
`now`) six nodes with a constant swap are reported; a cold analyzer does the same."""

from __future__ import annotations

import pytest

from exporter import PerformanceAnalyzer
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store

END = 1_790_000_040


@pytest.mark.slow
def test_constant_swap_is_not_a_range_departure(fresh_dsn):
    """A constant swap_used_mb (28.2) was flagged against a range of 28.200001: the float32
    rounding of the rollups counted as a departure."""
    spec = FleetSpec(nodes=12, days=7.1, end=END, realistic=True, findings=False)
    with Store(fresh_dsn) as store:
        load_fleet(store, spec)
    with PerformanceAnalyzer(fresh_dsn) as a:
        found = a.detect_anomalies(hours=24, now=END - 8040)["anomalies"]
    assert [(x["node_name"], x["metric"], x["value"]) for x in found] == []
