"""`perf-analyzer report` as a person and a pipe use it."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from exporter import registry
from tests.test_cli import run

REPORTS = [a.name for a in registry.reportable()]


def test_emergency_text_names_nodes_and_actions(fleet_db):
    result = run("report", "emergency", "--dsn", fleet_db.dsn, "--at", str(fleet_db.fleet.end))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "EMERGENCY HEALTH CHECK" in out and "IMMEDIATE ACTIONS REQUIRED" in out
    node = fleet_db.fleet.truth_for("overheating")["node"]
    assert f"{node}: Temperature 88" in out
    assert "\033[" not in out  # no colour when not on a terminal


def test_at_accepts_iso_time(fleet_db):
    from datetime import UTC, datetime

    at = datetime.fromtimestamp(fleet_db.fleet.end - 7200, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    result = run("report", "emergency", "--dsn", fleet_db.dsn, "--at", at, "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["window"]["end"] == fleet_db.fleet.end - 7200
    # two hours before the end only the filling disk (over 90 % for days) is a finding
    assert data["status"] == "WARNING"
    assert {(t["node_name"], t["check"]) for t in data["threats"]} == {("node-05", "disk")}


def test_bad_window_and_bad_config_are_one_line(fleet_db, tmp_path):
    result = run("report", "availability", "--dsn", fleet_db.dsn, "--hours", "-1")
    assert result.returncode == 1 and result.stderr.strip() == (
        "perf-analyzer: hours must be positive, got -1.0"
    )
    bad = tmp_path / "c.yml"
    bad.write_text("sli: {window_hours: soon}\n")
    result = run("report", "emergency", "--dsn", fleet_db.dsn, "--config", str(bad))
    assert result.returncode == 1 and "sli.window_hours must be a number" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REPORTS))
def test_every_report_renders_as_text_and_json(fleet_db, name):
    at = str(fleet_db.fleet.end)
    args = ("report", name, "--dsn", fleet_db.dsn, "--at", at)
    with ThreadPoolExecutor(2) as pool:  # two processes, one core each
        text, as_json = pool.map(lambda extra: run(*args, *extra), [(), ("--format", "json")])
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[1].startswith("====")
    assert as_json.returncode == 0, as_json.stderr
    assert isinstance(json.loads(as_json.stdout), dict)
