"""The demo's live appends keep its findings current, and add nothing else."""

from __future__ import annotations

import psycopg

from exporter import PerformanceAnalyzer
from exporter.demo import LiveAppender
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store

END = 1_790_000_040


def threats(dsn: str, now: int) -> set[tuple[str, str, str]]:
    with PerformanceAnalyzer(dsn) as a:
        e = a.emergency_health_check(now=now)
    return {(t["node_name"], t["check"], t["priority"]) for t in e["threats"]}


def test_live_appends_keep_the_findings_and_nothing_else(fresh_dsn):
    """A realistic demo fleet shows the same emergency threats at load and after 3 hours of
    live appends; frozen (no appends), everything would be stale by then."""
    spec = FleetSpec(nodes=14, containers=1, days=1, end=END, realistic=True)
    with Store(fresh_dsn) as store:
        fleet = load_fleet(store, spec)
        at_load = threats(fresh_dsn, END)
        injected = {f["node"] for f in fleet.truth["findings"]}
        assert {node for node, _, _ in at_load} <= injected
        assert len(at_load) >= 6  # the emergency findings (cpu, memory, heat, ...)
        disk = fleet.truth_for("disk_filling")["node"]
        assert (disk, "disk", "P2-WARNING") in at_load  # the live rows carry host facts too
        frozen = threats(fresh_dsn, END + 3 * 3600)
        assert sum(check == "stale" for _, check, _ in frozen) == 14
        appender = LiveAppender(store, spec, fleet.end)
        for now in range(END + 600, END + 3 * 3600 + 1, 600):
            assert appender.append(now) > 0
    later = threats(fresh_dsn, END + 3 * 3600)
    assert later == at_load
    # ... and each incident lasts its window at most, not the 3 hours since the start
    for kind, column, level, window in (
        ("noisy_neighbour", "cpu_total_pct", 90, 60),
        ("iowait_high", "cpu_iowait_pct", 30, 20),
    ):
        node = fleet.truth_for(kind)["node"]
        with psycopg.connect(fresh_dsn) as conn:
            (high,) = conn.execute(
                f"SELECT count(*) FROM monitor_samples_ring WHERE node_name = %s AND node_flag"
                f" AND sample_time > %s AND {column} >= %s",
                (node, END, level),
            ).fetchone()
        assert 5 <= high <= window, (kind, high)
