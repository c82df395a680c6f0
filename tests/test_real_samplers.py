"""SLIs and freshness on the shapes real samplers write, built by hand here (not by the
simulator) so each expected answer is computed from the shape itself."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from exporter import PerformanceAnalyzer
from exporter.analyses import emergency as emergency_mod
from exporter.analyses import sli as sli_mod
from exporter.config import Config
from exporter.registry import render_text
from exporter.schema import init_table
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store

T0 = 1_780_000_000  # the first sample of every hand-built node
DAY = 86400
FIVE_MIN = 5 / 60


def insert(dsn: str, rows: list[tuple]) -> None:
    """rows: (sample_time, node, container or None, cpu %, mem available MiB)."""
    with Store(dsn) as store:
        init_table(store)
        with store.write() as cur:
            cur.executemany(
                f"INSERT INTO {store.table_name} (sample_time, node_name, container_name,"
                " node_flag, cpu_total_pct, mem_available_mb, mem_total_mb, load_1m)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (t, n, c, c is None, cpu, mem, None if mem is None else 16384.0,
                     None if cpu is None else 0.5)
                    for t, n, c, cpu, mem in rows
                ],
            )  # fmt: skip


def node_rows(name: str, times, cpu: float | None = 30.0) -> list[tuple]:
    mem = None if cpu is None else 8000.0
    return [(int(t), name, None, cpu, mem) for t in times]


def jittered(interval: int, seconds: int, seed: int, late_share: float = 0.3) -> np.ndarray:
    """Slots every `interval` s from T0, each stamped -3..+3 s off and a share 1 s later."""
    rng = np.random.default_rng(seed)
    slots = T0 + np.arange(seconds // interval + 1) * interval
    return slots + rng.integers(-3, 4, slots.size) + (rng.random(slots.size) < late_share)


@pytest.fixture(scope="module")
def db(dsn: str) -> str:
    rows = node_rows("slow", jittered(300, DAY, 1))  # a healthy 5-minute sampler
    rows += node_rows("jitter", jittered(60, DAY, 2))  # +-3 s and 30 % 1 s late
    silent = T0 + np.arange(0, 2 * DAY, 60)  # reports every minute for 2 days, then dies
    rows += node_rows("silent", silent)
    # the node sampler dies at T0 + 2 days; its containers keep writing
    rows += node_rows("zombie", silent)
    rows += [(int(t), "zombie", "app", 5.0, None) for t in T0 + np.arange(0, 3 * DAY, 60)]
    rows += node_rows("nulls", T0 + np.arange(0, 3 * DAY, 60), cpu=None)  # no value ever
    rows += node_rows("young", T0 + 3 * DAY - np.array([120, 60, 0]))  # 3 samples, 3 min old
    insert(dsn, rows)
    return dsn


def by_node(result) -> dict:
    return {n["node_name"]: n for n in result["nodes"]}


def checks(result, node: str) -> dict[str, int]:
    return {c["check"]: c["level"] for c in result["checks"] if c["node_name"] == node}


def test_five_minute_node_in_a_five_minute_window(db):
    """A healthy 5-minute sampler reads available at every phase of `now`, and is never
    stale (its stale levels are multiples of its own interval)."""
    with PerformanceAnalyzer(db) as a:
        for now in range(T0 + 12 * 3600, T0 + 12 * 3600 + 300, 5):  # 60 phases
            current = by_node(a.system_availability_check(hours=FIVE_MIN, now=now))["slow"]
            assert current["availability"] == 1.0, now
            # the median spacing of +-3 s jittered stamps, learned from complete hours
            assert current["interval_seconds"] == pytest.approx(300, abs=3)
            assert checks(a.emergency_health_check(now=now), "slow")["stale"] == 0, now


def test_jitter_does_not_depend_on_the_second(db):
    """+-3 s jitter and 30 % late stamps at 60 phases of `now`: availability is exactly 1
    over both the 24-hour and the 5-minute window."""
    seen = set()
    with PerformanceAnalyzer(db) as a:
        for now in range(T0 + DAY - 3600, T0 + DAY - 3600 + 60):
            for hours in (24, FIVE_MIN):
                seen.add(
                    by_node(a.system_availability_check(hours=hours, now=now))["jitter"][
                        "availability"
                    ]
                )
    assert seen == {1.0}


@pytest.mark.parametrize("silent_h", [1, 23, 25])
def test_a_silent_node_keeps_its_series(db, silent_h):
    """Silent for 1, 23 or 25 hours: still in every window, at availability 0 over 5 minutes
    and 1 - (silence - one interval) / 24 h over a day; stale P1 (grade CRITICAL) all along."""
    last = T0 + 2 * DAY - 60
    now = last + silent_h * 3600
    with PerformanceAnalyzer(db) as a:
        day = by_node(a.system_availability_check(hours=24, now=now))["silent"]
        five = by_node(a.system_availability_check(hours=FIVE_MIN, now=now))["silent"]
        e = a.emergency_health_check(now=now)
    assert five["availability"] == 0.0
    expected = max(0.0, 1 - (silent_h * 3600 - 60) / DAY)
    assert day["availability"] == pytest.approx(expected, abs=1e-6)
    assert day["grade"] == "CRITICAL"  # the stale P1 threat, never UNKNOWN or EXCELLENT
    assert checks(e, "silent")["stale"] == 3
    assert "silent" not in e["forgotten"]


def test_a_node_silent_for_8_days_is_forgotten_not_resolved(db):
    now = T0 + 2 * DAY - 60 + 8 * DAY
    with PerformanceAnalyzer(db) as a:
        e = a.emergency_health_check(now=now)
        s = a.system_availability_check(hours=24, now=now)
    assert "silent" in e["forgotten"] and "silent" not in by_node(s)
    assert "stale" not in checks(e, "silent")
    view = SimpleNamespace(config=Config(), results={})
    samples = {
        (x.metric, dict(x.labels).get("node")): x.value for x in emergency_mod.to_samples(e, view)
    }
    assert samples[("node_forgotten", "silent")] == 1
    assert "silent" in render_text("emergency", e, colour=False)


def test_freshness_counts_node_rows_only(db):
    """The node sampler died at 2 days while container rows kept coming: stale P1."""
    now = T0 + 3 * DAY - 30
    with PerformanceAnalyzer(db) as a:
        e = a.emergency_health_check(now=now)
        s = by_node(a.system_availability_check(hours=FIVE_MIN, now=now))
    assert checks(e, "zombie")["stale"] == 3
    (threat,) = [t for t in e["threats"] if t["node_name"] == "zombie"]
    assert threat["value"] == now - (T0 + 2 * DAY - 60)
    assert s["zombie"]["availability"] == 0.0
    view = SimpleNamespace(config=Config(), results={})
    forgotten = {
        dict(x.labels)["node"]: x.value
        for x in emergency_mod.to_samples(e, view)
        if x.metric == "node_forgotten"
    }
    assert forgotten["zombie"] == 0 and forgotten["silent"] == 0  # a day silent: remembered


def test_unknown_is_its_own_grade(db):
    """An all-NULL node and a 3-sample node are UNKNOWN in the API, the text and the
    metrics (no health score: unknown is not poor and not excellent)."""
    now = T0 + 3 * DAY
    with PerformanceAnalyzer(db) as a:
        s = a.system_availability_check(hours=24, now=now)
    nodes = by_node(s)
    for name in ("nulls", "young"):
        assert nodes[name]["grade"] == "UNKNOWN", name
        assert nodes[name]["data"] == "insufficient_data"
        assert nodes[name]["availability"] == 1.0
    assert nodes["nulls"]["performance"] is None and nodes["nulls"]["capacity"] is None
    assert nodes["young"]["samples"] == 3
    text = render_text("availability", s, colour=False)
    assert text.count("UNKNOWN") == 2
    view = SimpleNamespace(config=Config(), results={})
    samples = [(x.metric, dict(x.labels)) for x in sli_mod.to_samples(s, view)]
    scored = {labels["node"] for name, labels in samples if name == "health_score"}
    assert "nulls" not in scored and "young" not in scored and "jitter" in scored
    grades = {
        labels["node"]: labels["grade"]
        for (name, labels), x in zip(samples, sli_mod.to_samples(s, view), strict=True)
        if name == "health_grade" and x.value == 1
    }
    assert grades["nulls"] == grades["young"] == "unknown"


def test_empty_table_and_nothing_fresh(fresh_dsn):
    with Store(fresh_dsn) as store:
        init_table(store)
    with PerformanceAnalyzer(fresh_dsn) as a:
        e = a.emergency_health_check(now=T0)
    assert e["status"] == "NO_DATA" and e["nodes"] == 0
    assert "NO DATA" in render_text("emergency", e, colour=False)
    insert(fresh_dsn, node_rows("gone", T0 + np.arange(0, 3600, 60)))
    with PerformanceAnalyzer(fresh_dsn) as a:
        e = a.emergency_health_check(now=T0 + 7200)
    assert e["status"] == "CRITICAL" and e["fresh_nodes"] == 0
    assert "NO FRESH DATA" in render_text("emergency", e, colour=False)


@pytest.mark.slow
def test_quiet_realistic_fleet_raises_nothing(fresh_dsn):
    """12 healthy nodes with every sampler shape (15/60/300 s, jitter, late stamps, phases,
    container offsets, misses under load, AR noise), replayed every 10 minutes over the
    last 6 hours of 1.5 days (3 days is too slow on this machine): no P1 or P2, every
    day-long availability >= 0.99 and every grade EXCELLENT or GOOD."""
    spec = FleetSpec(nodes=12, days=1.5, end=1_790_000_000, realistic=True, findings=False)
    with Store(fresh_dsn) as store:
        fleet = load_fleet(store, spec)
    assert sorted({v["interval"] for v in fleet.truth["nodes"].values()}) == [15, 60, 300]
    levels, availability, grades = [], [], set()
    with PerformanceAnalyzer(fresh_dsn) as a:
        for now in range(fleet.end - 6 * 3600, fleet.end + 1, 600):
            e = a.emergency_health_check(now=now)
            levels += [t["level"] for t in e["threats"]]
            s = a.system_availability_check(hours=24, now=now)
            availability += [n["availability"] for n in s["nodes"]]
            grades |= {n["grade"] for n in s["nodes"]}
    assert len(availability) == 12 * 37
    assert max(levels, default=0) <= 1
    assert min(availability) >= 0.99
    assert grades <= {"EXCELLENT", "GOOD"}
