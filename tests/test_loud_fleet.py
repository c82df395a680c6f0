"""Every injected finding, found on a fleet written the way real samplers write.

The same checks as the clean fleet's tests (test_emergency, test_anomalies, test_capacity,
test_contention, test_correlation), on `FleetSpec(realistic=True)`: the healthy nodes sample
at 15 and 60 s with their own phases, +-3 s jitter, late stamps, container offsets, misses
under load, AR(1) noise and NULL temperatures beside the finding nodes. Expected answers come
from the simulator's truth or from SQL written here, never from the analyses' constants.
"""

from __future__ import annotations

import json

import psycopg
import pytest

from exporter import PerformanceAnalyzer
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store
from tests.test_anomalies import EMERGENCY_ANOMALIES
from tests.test_emergency import INJECTED_THREATS

pytestmark = pytest.mark.slow

DAY = 86400
END = 1_790_000_040  # a Monday afternoon, aligned to 60 s
# 22 days: the hour-of-week anomaly baseline needs 21 days of history and the capacity
# trends need three weeks of daily peaks to be significant.
DAYS = 22
HEALTHY = ("node-01", "node-14")


@pytest.fixture(scope="module")
def loud(dsn):
    spec = FleetSpec(nodes=14, containers=2, days=DAYS, end=END, realistic=True)
    with Store(dsn) as store:
        fleet = load_fleet(store, spec)
    shapes = {n: (v["interval"], v["phase"]) for n, v in fleet.truth["nodes"].items()}
    assert shapes["node-01"][0] == 15 and shapes["node-14"][1] != 0  # the shapes are on
    with PerformanceAnalyzer(dsn) as a:
        results = {
            "emergency": a.emergency_health_check(now=END),
            "sli": a.system_availability_check(now=END),
            "anomalies": a.detect_anomalies(hours=24, now=END),
            "contention": a.resource_contention_analysis(1, now=END),
            "correlation": a.correlation_analysis(24, now=END),
            "capacity": a.capacity_planning_analysis(days=DAYS, now=END),
        }
    json.dumps(results, allow_nan=False)
    return fleet, results


def truth(loud, kind: str) -> dict:
    found = loud[0].truth_for(kind)
    assert found is not None, f"the fleet is too small for {kind}"
    return found


def threat(loud, node: str, check: str) -> dict | None:
    found = [
        t for t in loud[1]["emergency"]["threats"] if t["node_name"] == node and t["check"] == check
    ]
    assert len(found) <= 1
    return found[0] if found else None


def anomalies(loud, node: str, metric: str | None = None) -> list[dict]:
    return [
        a
        for a in loud[1]["anomalies"]["anomalies"]
        if a["node_name"] == node and (metric is None or a["metric"] == metric)
    ]


def slis(loud) -> dict:
    return {n["node_name"]: n for n in loud[1]["sli"]["nodes"]}


@pytest.mark.parametrize(("kind", "check", "priority", "value"), INJECTED_THREATS)
def test_emergency_threats(loud, kind, check, priority, value):
    node = truth(loud, kind)["node"]
    found = threat(loud, node, check)
    assert found is not None, f"{kind} on {node} not reported"
    assert found["priority"] == priority
    assert found["value"] == pytest.approx(value, abs=0.6)
    assert found["samples"] == 5


def test_stale_node_is_p1_with_its_age(loud):
    t = truth(loud, "stale")
    found = threat(loud, t["node"], "stale")
    assert found is not None and found["priority"] == "P1-CRITICAL"
    assert found["value"] == END - t["last_sample_time"]


def test_healthy_shaped_nodes_raise_no_threat_above_p3(loud):
    for t in loud[1]["emergency"]["threats"]:
        if t["node_name"] in HEALTHY:
            assert t["priority"] == "P3-ADVISORY", t
    assert loud[1]["emergency"]["status"] == "CRITICAL"


def test_outage_in_the_slis(loud):
    t = truth(loud, "outage_gap")
    node = slis(loud)[t["node"]]
    # down from one interval after the last row before the gap to the first row after it
    down = t["gap_end"] - (t["gap_start"] + 60)
    assert node["availability"] == pytest.approx(1 - down / DAY, abs=1e-3)
    assert node["availability"] == pytest.approx(t["availability_24h"], abs=1e-3)
    assert node["grade"] == "POOR"


def test_stale_node_availability(loud):
    t = truth(loud, "stale")
    missing = END - t["last_sample_time"] - 60
    assert slis(loud)[t["node"]]["availability"] == pytest.approx(1 - missing / DAY, abs=1e-3)


def test_grades(loud):
    s = slis(loud)
    for kind in ("cpu_saturation", "memory_exhausted", "overheating", "network_errors", "stale"):
        assert s[truth(loud, kind)["node"]]["grade"] == "CRITICAL", kind
    noisy = s[truth(loud, "noisy_neighbour")["node"]]
    assert noisy["performance"] == pytest.approx(1 - 60 / 1440, abs=1e-3)  # last hour > 90 %
    assert noisy["grade"] == "GOOD"
    for node in HEALTHY:
        assert s[node]["grade"] == "EXCELLENT", s[node]
        assert s[node]["availability"] >= 0.99


def test_healthy_availability_counts_only_real_misses(dsn, loud):
    """A shaped node's availability is its missed samples' time over the day: gaps longer
    than 1.5 intervals, counted here in SQL from the node's own rows."""
    for node in HEALTHY:
        interval = loud[0].truth["nodes"][node]["interval"]
        with psycopg.connect(dsn) as conn:
            (down,) = conn.execute(
                "SELECT coalesce(sum(least(t, %(e)s) - greatest(prev + %(i)s, %(e)s - 86400)), 0)"
                "::float8 FROM ("
                " SELECT sample_time AS t, lag(sample_time) OVER (ORDER BY sample_time) AS prev"
                " FROM (SELECT DISTINCT sample_time FROM monitor_samples_ring"
                "  WHERE node_name = %(n)s AND node_flag AND sample_time > %(e)s - 90000"
                "  AND sample_time <= %(e)s) d) g"
                " WHERE t - prev > 1.5 * %(i)s AND t > %(e)s - 86400",
                {"n": node, "i": interval, "e": END},
            ).fetchone()
        assert slis(loud)[node]["availability"] == pytest.approx(1 - down / DAY, abs=2e-4)


def test_disk_write_spike(loud):
    t = truth(loud, "anomaly_spike")
    hits = anomalies(loud, t["node"], "disk_write_mb_s")
    assert len(hits) == 1, hits
    a = hits[0]
    assert a["score"] > 4 and a["priority"] == "P1-CRITICAL"
    assert a["window"]["start"] <= t["window"]["end"] and a["window"]["end"] >= t["start"]
    assert t["start"] <= a["sample_time"] <= t["end"]
    assert a["value"] == pytest.approx(t["baseline"] + t["size"], abs=6)
    assert a["baseline"] == pytest.approx(t["baseline"], abs=2)
    assert a["baseline_kind"] == "hour_of_week"


def newest_stamp(dsn: str, node: str) -> int:
    """The node's newest row at END: its stamp, a few seconds before the END slot (the
    finding nodes are stamped ahead of their slots, with jitter)."""
    with psycopg.connect(dsn) as conn:
        (newest,) = conn.execute(
            "SELECT max(sample_time) FROM monitor_samples_ring"
            " WHERE node_name = %s AND node_flag AND sample_time <= %s",
            (node, END),
        ).fetchone()
    assert END - 60 < newest < END
    return int(newest)


@pytest.mark.parametrize(("kind", "metric", "sign"), EMERGENCY_ANOMALIES)
def test_emergency_findings_are_anomalies(dsn, loud, kind, metric, sign):
    t = truth(loud, kind)
    hits = anomalies(loud, t["node"], metric)
    assert len(hits) == 1, hits
    a = hits[0]
    assert a["score"] * sign > 4 and a["priority"] == "P1-CRITICAL"
    assert a["window"]["start"] <= t["window"]["end"]
    assert a["window"]["end"] == newest_stamp(dsn, t["node"])
    expected = t.get("value", t.get("metrics", {}).get(metric))
    assert a["value"] == pytest.approx(expected, abs=t.get("tolerance", 0) + 1e-6)


def test_healthy_shaped_nodes_have_no_anomaly_above_p3(loud):
    for node in HEALTHY:
        assert [a for a in anomalies(loud, node) if a["priority"] != "P3-ADVISORY"] == []


def test_noisy_neighbour(loud):
    t = truth(loud, "noisy_neighbour")
    cpu = next(
        n
        for n in loud[1]["contention"]["nodes"]
        if n["node_name"] == t["node"] and n["resource"] == "cpu"
    )
    assert cpu["top_consumer"] == cpu["top_grower"] == t["container"]
    share = next(c for c in cpu["containers"] if c["container_name"] == t["container"])
    assert share["share"] == pytest.approx(t["share_of_node_cpu"], abs=0.05)
    assert cpu["contention_score"] > 0.5
    assert cpu["pressure_samples"] == t["window"]["samples"]
    assert cpu["victims"] == []


def test_healthy_shaped_nodes_have_no_contention(loud):
    for n in loud[1]["contention"]["nodes"]:
        if n["node_name"] in HEALTHY:
            assert n["contention_score"] == 0.0 and n["pressure_samples"] == 0, n


def forecast(loud, node: str, resource: str) -> dict:
    (f,) = [
        f
        for f in loud[1]["capacity"]["forecasts"]
        if f["node_name"] == node and f["resource_type"] == resource
    ]
    return f


def test_memory_leak_forecast(loud):
    t = truth(loud, "memory_leak")
    f = forecast(loud, t["node"], "memory")
    assert f["status"] == "exhaustion"
    days_to_p1 = (t["available_at_end_mb"] - 0.05 * t["mem_total_mb"]) / t["slope_mb_per_day"]
    assert f["days_to_exhaustion"] == pytest.approx(days_to_p1, rel=0.10)
    assert f["trend_per_day"] == pytest.approx(t["slope_mb_per_day"], rel=0.10)
    lo, hi = f["days_to_exhaustion_interval"]
    assert 0 <= lo <= f["days_to_exhaustion"] <= hi


def test_filling_disk_forecast_and_threat(loud):
    """The disk fills 1 point a day to 92 %: the forecast finds the rate and the 3 days to
    the 95 % limit within 2 %, and the emergency check raises disk at P2 now."""
    t = truth(loud, "disk_filling")
    f = forecast(loud, t["node"], "disk")
    assert f["status"] == "exhaustion"
    assert f["trend_per_day"] == pytest.approx(100 * t["rate_per_day"], rel=0.02)
    assert f["days_to_exhaustion"] == pytest.approx(
        (0.95 - t["value"]) / t["rate_per_day"], rel=0.02
    )
    found = threat(loud, t["node"], "disk")
    assert found is not None and found["priority"] == "P2-WARNING"
    assert found["value"] == pytest.approx(t["value"], abs=t["tolerance"])


def test_cpu_growth_forecast(loud):
    t = truth(loud, "cpu_growth")
    f = forecast(loud, t["node"], "cpu")
    assert f["status"] == "exhaustion"
    assert f["trend_per_day"] == pytest.approx(t["rate_pct_per_day"], rel=0.10)
    assert f["current_peak"] == pytest.approx(t["peak_at_end_pct"], abs=3)
    # The truth projects the last 24 h's noiseless peak (a Sunday evening and a Monday
    # morning); the forecast follows the busiest weekday's measured peak, so it may come
    # early, never late. Over 22 days it comes 10.5 % early on the clean fleet; here the
    # node's AR(1) noise makes the daily peaks vary more, the slope comes out 8 % steep and
    # the forecast 19 % early (20.3 days for 25.0).
    days_to_p1 = (95.0 - t["peak_at_end_pct"]) / t["rate_pct_per_day"]
    assert 0.80 * days_to_p1 <= f["days_to_exhaustion"] <= days_to_p1


def test_no_other_forecast_exhausts(loud):
    found = {
        (f["node_name"], f["resource_type"])
        for f in loud[1]["capacity"]["forecasts"]
        if f["status"] == "exhaustion"
    }
    expected = {
        (truth(loud, "memory_leak")["node"], "memory"),
        (truth(loud, "cpu_growth")["node"], "cpu"),
        (truth(loud, "disk_filling")["node"], "disk"),
    }
    assert found == expected


def test_correlated_pair(dsn, loud):
    t = truth(loud, "correlated_metrics")
    (pair,) = [
        c
        for c in loud[1]["correlation"]["correlations"]
        if c["node_name"] == t["node"]
        and {c["metric_a"], c["metric_b"]}
        == {
            t["metric_a"],
            t["metric_b"],
        }
    ]
    with psycopg.connect(dsn) as conn:
        (r24,) = conn.execute(
            "SELECT corr(cpu_total_pct, net_rx_mb_s) FROM monitor_samples_ring"
            " WHERE node_name = %s AND node_flag AND sample_time > %s AND sample_time <= %s",
            (t["node"], END - DAY, END),
        ).fetchone()
    assert r24 > 0.7
    assert pair["coefficient"] == pytest.approx(r24, abs=0.01)
    assert pair["interpretation"] == "direct_coupling" and pair["exported"] is True
    assert pair["lag_minutes"] is None


def test_healthy_shaped_nodes_have_no_cpu_network_coupling(loud):
    for c in loud[1]["correlation"]["correlations"]:
        if c["node_name"] in HEALTHY and {c["metric_a"], c["metric_b"]} == {
            "cpu_total_pct",
            "net_rx_mb_s",
        }:
            assert c["interpretation"] == "shared_daily_cycle", c
