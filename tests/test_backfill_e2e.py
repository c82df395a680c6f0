"""`perf-analyzer backfill` end to end with the real programs: a simulated fleet in
PostgreSQL, the backfill command, `promtool tsdb create-blocks-from openmetrics`, and
Prometheus serving the blocks; then the shipped alert rules evaluated by `promtool test rules`
over the series Prometheus returns for the backfilled range (Prometheus evaluates rules only
from the moment it starts, and `create-blocks-from rules` skips alerting rules)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.embedded import free_port
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store
from tests.conftest import require_program
from tests.harness import Processes

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "alert_rules" / "perf-analyzer.rules.yml"
SCRAPE = 60


def recent_end() -> int:
    """A past moment on a half-hour boundary: within Prometheus's retention, and on the
    ticks of every step used here."""
    return (int(time.time()) - 3600) // 1800 * 1800


def run_backfill(dsn: str, out: Path, end: int, hours: float, *steps: str) -> str:
    args = [sys.executable, "-m", "exporter.cli", "backfill", "--dsn", dsn, "--out", str(out)]
    args += ["--days", str(hours / 24), "--end", str(end), "--scrape-interval", str(SCRAPE)]
    for step in steps:
        args += ["--step", step]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


@contextlib.contextmanager
def prometheus_over(openmetrics: Path, tmp_path: Path) -> Iterator[str]:
    """Prometheus serving the blocks `promtool` makes of `openmetrics`; yields its URL."""
    promtool = require_program("promtool")
    prometheus = require_program("prometheus")
    data = tmp_path / "prom-data"
    done = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(data)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {}\n", encoding="utf-8")
    port = free_port()
    procs = Processes(tmp_path)
    try:
        procs.start(
            "prometheus",
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            "--storage.tsdb.retention.time=3650d",
            f"--web.listen-address={HOST}:{port}",
        )
        url = f"http://{HOST}:{port}"
        procs.wait_ready("prometheus", f"{url}/-/ready")
        yield url
    finally:
        procs.stop_all()


def api(url: str, path: str, **params: Any) -> Any:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}{path}?{query}", timeout=30) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


def instant(url: str, query: str, at: int) -> dict[str, float]:
    """node -> value of `query` at `at`."""
    data = api(url, "/api/v1/query", query=query, time=at)
    return {r["metric"].get("node", ""): float(r["value"][1]) for r in data["result"]}


# --------------------------------------------------------------------------- a known finding


@pytest.mark.slow
def test_backfilled_finding_is_queryable_at_its_past_time(pg_server, tmp_path: Path) -> None:
    name = pg_server.create_database("backfill")
    try:
        dsn = pg_server.dsn_for(name)
        end = recent_end()
        with Store(dsn) as store:
            fleet = load_fleet(store, FleetSpec(nodes=3, containers=1, days=1, end=end))
        finding = next(f for f in fleet.truth["findings"] if f["kind"] == "cpu_saturation")
        saturated, healthy = finding["node"], fleet.truth["healthy_nodes"]
        assert end - finding["window"]["start"] < 3600, "saturated for less than the last hour"

        out = tmp_path / "history.om"
        printed = run_backfill(dsn, out, end, 2, "1800")
        text = out.read_text(encoding="utf-8")
        assert text.endswith("# EOF\n")
        types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
        assert len(types) == len(set(types)), "a family is written twice"
        assert "perf_analyzer_database_up" not in text and "analysis_duration" not in text
        assert f"{len(types)} metric families" in printed

        with prometheus_over(out, tmp_path) as url:
            query = 'perf_analyzer_emergency_threat{check="cpu"}'
            now = instant(url, query, end)
            before = instant(url, query, end - 3600)
        assert now[saturated] == 3
        assert before[saturated] < 3, "an hour earlier the node was not saturated yet"
        assert all(now[n] < 3 for n in healthy)
    finally:
        pg_server.drop_database(name)
