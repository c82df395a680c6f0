"""Metrics summary against injected levels."""

from __future__ import annotations

import json

import pytest


def test_summary_reports_injected_levels(analyzer, fleet_db):
    fleet = fleet_db.fleet
    result = analyzer.export_metrics_summary(hours=10 / 60, now=fleet.end)
    json.dumps(result, allow_nan=False)
    nodes = {n["node_name"]: n for n in result["nodes"]}
    cpu = nodes[fleet.truth_for("cpu_saturation")["node"]]["metrics"]["cpu_total_pct"]
    assert cpu["avg"] == pytest.approx(97.0, abs=0.3)
    assert 96.7 <= cpu["p95"] <= cpu["max"] <= 97.3
    assert cpu["samples"] == 10
    temp = nodes[fleet.truth_for("overheating")["node"]]["metrics"]["temperature_c"]
    assert temp["avg"] == pytest.approx(88.0, abs=0.3)
    stale = fleet.truth_for("stale")["node"]
    assert stale not in nodes  # no samples in the last 10 minutes
    noisy = fleet.truth_for("noisy_neighbour")
    containers = {c["container_name"]: c for c in nodes[noisy["node"]]["containers"]}
    share = containers[noisy["container"]]["metrics"]["cpu_total_pct"]["avg"]
    node_cpu = nodes[noisy["node"]]["metrics"]["cpu_total_pct"]["avg"]
    assert share / node_cpu == pytest.approx(noisy["share_of_node_cpu"], abs=0.01)
    assert set(containers[noisy["container"]]["metrics"]) == {"cpu_total_pct", "c_rss_mb"}
    assert result["window"] == {"start": fleet.end - 600, "end": fleet.end, "hours": 10 / 60}
