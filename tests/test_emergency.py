"""Emergency check and SLI grades against the simulator's injected truth."""

from __future__ import annotations

import pytest

from exporter import PerformanceAnalyzer
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store

HEALTHY = ("node-01", "node-14")


@pytest.fixture(scope="module")
def emergency(analyzer, fleet_db):
    return analyzer.emergency_health_check(now=fleet_db.fleet.end)


def threat(result, node, check):
    found = [t for t in result["threats"] if t["node_name"] == node and t["check"] == check]
    assert len(found) <= 1
    return found[0] if found else None


# the injected emergency findings: (kind, check, priority, value), sized by hand in the
# simulator's specification of each finding
INJECTED_THREATS = [
    ("cpu_saturation", "cpu", "P1-CRITICAL", 97.0),
    ("memory_exhausted", "memory", "P1-CRITICAL", 3.0),
    ("overheating", "temperature", "P1-CRITICAL", 88.0),
    ("iowait_high", "iowait", "P2-WARNING", 35.0),
    ("network_errors", "network_errors", "P1-CRITICAL", 70.0),
    ("noisy_neighbour", "cpu", "P2-WARNING", 92.0),
    ("disk_filling", "disk", "P2-WARNING", 0.92),  # 92 % used: at P2, short of disk-full P1
]


@pytest.mark.parametrize(("kind", "check", "priority", "value"), INJECTED_THREATS)
def test_injected_threats_found(emergency, fleet_db, kind, check, priority, value):
    node = fleet_db.fleet.truth_for(kind)["node"]
    found = threat(emergency, node, check)
    assert found is not None, f"{kind} on {node} not reported"
    assert found["priority"] == priority
    assert found["value"] == pytest.approx(value, abs=0.6)
    assert found["threshold"] is not None and node in found["message"]
    assert found["samples"] == 5
    assert any(a.startswith(f"{node}: ") for a in emergency["immediate_actions"])


def test_stale_node_is_p1_with_its_age(emergency, fleet_db):
    truth = fleet_db.fleet.truth_for("stale")
    found = threat(emergency, truth["node"], "stale")
    assert found["priority"] == "P1-CRITICAL"
    assert found["value"] == fleet_db.fleet.end - truth["last_sample_time"]


def test_healthy_nodes_have_no_threat_above_p3(emergency):
    for t in emergency["threats"]:
        if t["node_name"] in HEALTHY:
            assert t["priority"] == "P3-ADVISORY", t
    assert emergency["status"] == "CRITICAL"
    checks = {(c["node_name"], c["check"]) for c in emergency["checks"]}
    assert len(checks) == 14 * 10  # one level per node and check (disk and inodes too)


def test_replay_before_the_incidents(analyzer, fleet_db):
    """At now = end - 2 h nothing of the last 20-30 minutes has happened yet; only the disk
    that fills a point a day was already past its P2 level (91.9 % used)."""
    result = analyzer.emergency_health_check(now=fleet_db.fleet.end - 7200)
    disk = fleet_db.fleet.truth_for("disk_filling")["node"]
    above_p3 = [t for t in result["threats"] if t["priority"] != "P3-ADVISORY"]
    assert [(t["node_name"], t["check"], t["priority"]) for t in above_p3] == [
        (disk, "disk", "P2-WARNING")
    ]
    assert result["status"] == "WARNING"


def test_cpu_count_override_drives_the_load_check(fleet_db):
    with PerformanceAnalyzer(fleet_db.dsn, cpu_count=1) as one_cpu:
        result = one_cpu.emergency_health_check(now=fleet_db.fleet.end)
    node = fleet_db.fleet.truth_for("cpu_saturation")["node"]
    cpus = fleet_db.fleet.truth["nodes"][node]["cpu_count"]
    load = threat(result, node, "load")
    assert load is not None  # ~0.9 * cpus runnable on one CPU
    assert load["value"] == pytest.approx(0.97 * 0.9 * cpus, rel=0.15)


# --------------------------------------------------------------------------- SLIs


@pytest.fixture(scope="module")
def slis(analyzer, fleet_db):
    result = analyzer.system_availability_check(now=fleet_db.fleet.end)
    return {n["node_name"]: n for n in result["nodes"]}


def test_outage_availability(slis, fleet_db):
    truth = fleet_db.fleet.truth_for("outage_gap")
    assert slis[truth["node"]]["availability"] == pytest.approx(truth["availability_24h"], abs=1e-3)
    assert slis[truth["node"]]["grade"] == "POOR"


def test_stale_node_availability(slis, fleet_db):
    truth = fleet_db.fleet.truth_for("stale")
    missing = (fleet_db.fleet.end - truth["last_sample_time"]) / 60
    assert slis[truth["node"]]["availability"] == pytest.approx(1 - missing / 1440, abs=1e-3)


def test_grades(slis, fleet_db):
    for node in HEALTHY:
        assert slis[node] | {} and slis[node]["grade"] == "EXCELLENT"
        assert slis[node]["availability"] == slis[node]["performance"] == 1.0
    for kind in ("cpu_saturation", "memory_exhausted", "overheating", "network_errors", "stale"):
        assert slis[fleet_db.fleet.truth_for(kind)["node"]]["grade"] == "CRITICAL"
    noisy = slis[fleet_db.fleet.truth_for("noisy_neighbour")["node"]]
    assert noisy["performance"] == pytest.approx(1 - 60 / 1440, abs=1e-3)  # last hour > 90 %
    assert noisy["grade"] == "GOOD"


def test_cpu_count_estimate_matches_the_hardware(slis, fleet_db):
    for node, facts in fleet_db.fleet.truth["nodes"].items():
        assert slis[node]["cpu_count"] == facts["cpu_count"]


# --------------------------------------------------------------------------- bad rows


@pytest.fixture(scope="module")
def small(dsn):
    store = Store(dsn)
    fleet = load_fleet(store, FleetSpec(nodes=4, containers=1, days=2, end=1_790_000_040))
    store.close()
    return fleet


def _snapshot(dsn, now):
    with PerformanceAnalyzer(dsn) as a:
        e = a.emergency_health_check(now=now)
        s = a.system_availability_check(now=now)
    return (
        [(t["node_name"], t["check"], t["priority"], t["value"]) for t in e["threats"]],
        [
            (n["node_name"], n["availability"], n["performance"], n["capacity"], n["grade"])
            for n in s["nodes"]
        ],
    )


def test_bad_rows_change_nothing(dsn, small):
    """Duplicates, NaN, infinities, absurd values and future rows leave findings as they were."""
    now = small.end
    before = _snapshot(dsn, now)
    with Store(dsn) as store, store.write() as cur:
        t = store.table.as_string(cur)
        cur.execute(f"INSERT INTO {t} SELECT * FROM {t} WHERE sample_time > %s", (now - 3600,))
        for first in (now - 600, now - 570):  # colliding with good samples, and between them
            cur.execute(
                f"INSERT INTO {t} (sample_time, node_name, node_flag, cpu_total_pct,"
                " cpu_iowait_pct, mem_available_mb, mem_total_mb, temperature_c, load_1m,"
                " swap_used_mb, net_rx_errs_s)"
                " SELECT g, n, true, v, v, v, 'NaN', v, v, v, v"
                " FROM generate_series(%s, %s, 60) g,"
                " unnest(ARRAY['node-01', 'node-02']) n,"
                " unnest(ARRAY['NaN', 'Infinity', '-Infinity', '-5', '1e300']::float8[]) v",
                (first, now + 6000),
            )
        cur.execute(
            f"INSERT INTO {t} (sample_time, node_name, node_flag) VALUES (%s, NULL, true)", (now,)
        )
    after = _snapshot(dsn, now)
    assert after == before
    with PerformanceAnalyzer(dsn) as a:
        s = a.system_availability_check(now=now)
    assert s["nodes"][0]["invalid_values"]["cpu_total_pct"] > 0


def test_empty_table(fresh_dsn):
    from exporter.schema import init_table

    with Store(fresh_dsn) as store:
        init_table(store)
    with PerformanceAnalyzer(fresh_dsn) as a:
        assert a.emergency_health_check()["status"] == "NO_DATA"
        assert a.system_availability_check()["nodes"] == []


def test_a_late_sample_is_not_an_outage(dsn, small):
    """A sample up to half an interval late never lowers availability, even over the 5-minute
    window the burn-rate rules average; a missed one does, from the time it was due (the
    node's last sample plus one interval) to now: 70 of 300 s."""
    with PerformanceAnalyzer(dsn) as a:
        late = a.system_availability_check(hours=5 / 60, now=small.end + 70)
        missed = a.system_availability_check(hours=5 / 60, now=small.end + 130)
    untouched = ("node-03", "node-04")  # test_bad_rows_change_nothing adds rows to the others
    assert {n["availability"] for n in late["nodes"] if n["node_name"] in untouched} == {1.0}
    missed_ratio = {n["availability"] for n in missed["nodes"] if n["node_name"] in untouched}
    assert missed_ratio == {round(1 - 70 / 300, 6)}
