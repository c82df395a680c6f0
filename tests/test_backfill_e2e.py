"""`perf-analyzer backfill` end to end with the real programs: a simulated fleet in
PostgreSQL, the backfill command, `promtool tsdb create-blocks-from openmetrics`, and
Prometheus serving the blocks; then the shipped alert rules evaluated by `promtool test rules`
over the series Prometheus returns for the backfilled range (Prometheus evaluates rules only
from the moment it starts, and `create-blocks-from rules` skips alerting rules)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

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


# --------------------------------------------------------------------------- shipped alerts

# Analyses the alerts read run every 5 minutes; the long-window ones hourly (they change
# slowly, and each run costs a second).
ALERT_STEPS = ("3600", "emergency=300", "availability=300", "current=300")
EVERY = 10  # minutes between the moments checked


def rule_names() -> list[str]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [r["alert"] for g in data["groups"] for r in g["rules"] if "alert" in r]


def rule_labels() -> dict[str, dict[str, str]]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {
        r["alert"]: r.get("labels", {}) for g in data["groups"] for r in g["rules"] if "alert" in r
    }


def input_series(url: str, start: int, end: int) -> list[dict[str, str]]:
    """Every backfilled series, one value a minute from `start` ("_" where Prometheus has
    none), in promtool's notation."""
    data = api(
        url, "/api/v1/query_range", query='{__name__=~"perf_analyzer_.+"}',
        start=start, end=end, step=f"{SCRAPE}s",
    )  # fmt: skip
    # the exporter was up all along (its own metrics are not backfilled; `up` is Prometheus's)
    out = [
        {
            "series": 'up{instance="backfill",job="perf-analyzer"}',
            "values": f"1x{(end - start) // SCRAPE}",
        }
    ]
    for series in data["result"]:
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        by_time = {int(float(t)): v for t, v in series["values"]}
        values = " ".join(by_time.get(t, "_") for t in range(start, end + 1, SCRAPE))
        selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        out.append({"series": f"{name}{{{selector}}}", "values": values})
    return out


def promtool_rules_test(
    url: str,
    start: int,
    end: int,
    tmp_path: Path,
    expected: dict[tuple[str, int], list[dict] | None],
) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` of the shipped rules (annotations left out: they do not decide
    firing) over the backfilled series; `expected[(alert, minute)]` lists the labels of the
    alerts firing then (every other alert at every checked minute: none)."""
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in data["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    minutes = (end - start) // 60
    checks = {(a, m): [] for a in rule_names() for m in range(0, minutes + 1, EVERY)}
    checks.update(expected)  # None: not checked (a moment on the edge of a `for`)
    checks = {key: firing for key, firing in checks.items() if firing is not None}
    static = rule_labels()
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": input_series(url, start, end),
                "alert_rule_test": [
                    {
                        "eval_time": f"{m}m",
                        "alertname": alert,
                        "exp_alerts": [
                            {"exp_labels": {**static[alert], **labels}} for labels in firing
                        ],
                    }
                    for (alert, m), firing in sorted(checks.items(), key=lambda kv: kv[0][1])
                ],
            }
        ],
    }
    path = tmp_path / "backfill.tests.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
    promtool = require_program("promtool")
    return subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_healthy_realistic_fleet_fires_no_alert(pg_server, tmp_path: Path) -> None:
    name = pg_server.create_database("backfill_quiet")
    try:
        dsn = pg_server.dsn_for(name)
        end = recent_end()
        with Store(dsn) as store:
            spec = FleetSpec(nodes=3, containers=1, days=1, end=end, realistic=True)
            load_fleet(store, dataclasses.replace(spec, findings=False))
        hours = 6
        out = tmp_path / "history.om"
        run_backfill(dsn, out, end, hours, *ALERT_STEPS)
        start = end - hours * 3600
        with prometheus_over(out, tmp_path) as url:
            done = promtool_rules_test(url, start, end, tmp_path, {})
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    finally:
        pg_server.drop_database(name)


@pytest.mark.slow
def test_outage_fires_stale_and_burn_rate_until_the_node_returns(pg_server, tmp_path: Path) -> None:
    """A node of the healthy realistic fleet stops reporting for an hour in the middle of 6
    backfilled hours: its stale alerts fire within their `for` (after the stale levels'
    ages, seen at the next emergency run) and its fast burn-rate alert once an hour's error
    ratio passes 14.4 budgets; all stay firing until it returns, and then resolve."""
    name = pg_server.create_database("backfill_loud")
    try:
        dsn = pg_server.dsn_for(name)
        end = recent_end()
        hours = 6
        start = end - hours * 3600
        with Store(dsn) as store:
            spec = FleetSpec(nodes=3, containers=1, days=1, end=end, realistic=True)
            fleet = load_fleet(store, dataclasses.replace(spec, findings=False))
        node = next(n for n, t in fleet.truth["nodes"].items() if t["interval"] == 60)
        gone, back = start + 2 * 3600, start + 3 * 3600  # minutes 120 to 180
        with psycopg.connect(dsn, autocommit=True) as conn:
            deleted = conn.execute(
                "DELETE FROM monitor_samples_ring WHERE node_name = %s "
                "AND sample_time >= %s AND sample_time < %s",
                (node, gone, back),
            ).rowcount
        assert deleted >= 50, "the node lost its hour of rows"

        out = tmp_path / "history.om"
        run_backfill(dsn, out, end, hours, *ALERT_STEPS)
        m0, m1 = (gone - start) // 60, (back - start) // 60
        stale = {"node": node, "check": "stale"}
        expected: dict[tuple[str, int], list[dict] | None] = {}
        for m in range(m0, m1 + 11):
            # emergency runs every 5 minutes: level 2 (300 s) is seen at m0 + 5, level 3
            # (600 s) at m0 + 10; `for` is 5 and 1 minutes; the node is seen back at the first
            # emergency run after its first row (its phase puts that row up to a minute late).
            # One alert per event: the warning gives way to the critical alert once that
            # fires, so it is seen only in the minute between the two.
            expected[("PerfAnalyzerNodeStaleWarning", m)] = (
                None if m0 < m <= m0 + 13 or m1 <= m <= m1 + 6 else []
            )
            expected[("PerfAnalyzerNodeStaleCritical", m)] = (
                [stale] if m0 + 12 <= m < m1 else None if m0 + 9 <= m <= m1 + 6 else []
            )
            # the 5-minute availability is 0 from the first SLI run after m0; the hour's
            # error ratio passes 0.72 about 44 minutes later, plus `for: 2m`
            # the page names its cause: the node's stale check, the worst finding on it
            burn = [{"node": node, "sli": "availability", "cause": "stale"}]
            expected[("PerfAnalyzerSliBudgetBurnFast1h", m)] = (
                burn if m0 + 54 <= m < m1 else None if m0 + 40 <= m <= m1 + 10 else []
            )
        # With 6 hours of history the 1d and 3d error ratios average over those 6 hours, where
        # the hour out is a sixth (a day of history would make it 1/24, below both slow burns'
        # thresholds): whether they fire after the outage says nothing here.
        # The node's grade (POOR after the outage) is a consequence too, not asserted here.
        # The same holds for the 6-hour fast burn: 3 hours after the start its window holds
        # only those 3 hours of history, of which the hour out is a third (above its 6x).
        slow = (
            "PerfAnalyzerSliBudgetBurnFast6h",
            "PerfAnalyzerSliBudgetBurnSlow1d",
            "PerfAnalyzerSliBudgetBurnSlow3d",
        )
        for alert in (*slow, "PerfAnalyzerNodeGradePoor"):
            for m in range(m0, (end - start) // 60 + 1):
                expected[(alert, m)] = None
        with prometheus_over(out, tmp_path) as url:
            done = promtool_rules_test(url, start, end, tmp_path, expected)
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    finally:
        pg_server.drop_database(name)
