"""The registry is the one place that lists analyses: a new analysis (one module, one
registry line) is served, reported and configurable with no other change, and a result
its samples cannot be built from is counted, not only logged."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

from exporter import PerformanceAnalyzer, registry
from exporter.cli import main
from exporter.config import Config, ConfigError, ExporterConfig, from_dict
from exporter.sampler import write_rows
from exporter.schema import init_table
from exporter.store import Store
from tests import toy_analysis
from tests.test_exporter import Running, scrape, value

NOW = 1_790_000_040
JITTER = (3, -2, 0, 1, -3, 2)  # seconds off the minute, as a real sampler's ticks drift


@pytest.fixture
def with_toy(monkeypatch):
    """The one line that registers an analysis."""
    monkeypatch.setattr(registry, "ANALYSES", (*registry.ANALYSES, toy_analysis.ANALYSIS))


@pytest.fixture
def toy_db(fresh_dsn):
    """node-a sampled every 60 s for the last 30 minutes, node-b every 300 s, both with a
    few seconds of jitter; rows up to `now` of the wall clock so the exporter sees them."""
    import time

    now = int(time.time())
    rows = []
    for node, step in (("node-a", 60), ("node-b", 300)):
        for i, t in enumerate(range(now - 1800 + step, now + 1, step)):
            rows.append(_row(node, t - abs(JITTER[i % len(JITTER)])))
    with Store(fresh_dsn) as store:
        init_table(store)
        write_rows(store, rows)
    return fresh_dsn


def _row(node: str, t: int) -> dict:
    return {
        "sample_time": t,
        "node_name": node,
        "container_name": None,
        "node_flag": True,
        "cpu_total_pct": 20.0,
        "mem_available_mb": 8000.0,
        "mem_total_mb": 16000.0,
    }


def test_a_registered_analysis_is_served_with_its_configured_interval(with_toy, toy_db):
    config = Config(exporter=ExporterConfig(refresh={"toy": 123}))
    running = Running(toy_db, config=config)
    try:
        samples = scrape(running.url, timeout_header=60)
    finally:
        running.close()
    # 30 rows of node-a (every 60 s over 30 minutes), 6 of node-b (every 300 s) in the
    # toy's 1-hour window
    assert value(samples, "toy_rows", node="node-a") == 30
    assert value(samples, "toy_rows", node="node-b") == 6
    assert value(samples, "analysis_refresh_interval_seconds", analysis="toy") == 123
    assert value(samples, "exposition_errors_total", analysis="toy") == 0


def test_a_registered_analysis_is_a_report(with_toy, toy_db):
    result = CliRunner().invoke(
        main, ["report", "toy", "--dsn", toy_db, "--format", "json", "--hours", "0.5"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "nodes": [{"node_name": "node-a", "rows": 30}, {"node_name": "node-b", "rows": 6}]
    }
    text = CliRunner().invoke(main, ["report", "toy", "--dsn", toy_db, "--no-color"])
    assert text.exit_code == 0, text.output
    assert "TOY ROWS" in text.output and "node-b" in text.output


def test_a_renamed_result_field_is_counted_in_a_metric(with_toy, toy_db, monkeypatch):
    def renamed(result, view):  # reads a field the analysis no longer writes
        for n in result["nodes"]:
            yield toy_analysis.sample("toy_rows", n["row_count"], node=n["node_name"])

    toy = toy_analysis.ANALYSIS
    assert toy.serve is not None
    broken = dataclasses.replace(toy, serve=dataclasses.replace(toy.serve, to_samples=renamed))
    monkeypatch.setattr(registry, "ANALYSES", (*registry.ANALYSES[:-1], broken))
    running = Running(toy_db)
    try:
        samples = scrape(running.url, timeout_header=60)
    finally:
        running.close()
    assert value(samples, "exposition_errors_total", analysis="toy") >= 1
    assert not [name for name, _ in samples if name == "perf_analyzer_toy_rows"]
    # the other analyses are still served
    assert value(samples, "health_score", node="node-a") >= 0


def test_refresh_keys_name_served_analyses_or_their_earlier_names():
    registry.check_refresh(from_dict({"exporter": {"refresh": {"sli": 5, "alert-config": 60}}}))
    with pytest.raises(ConfigError, match=r"exporter\.refresh\.toy names no analysis"):
        registry.check_refresh(from_dict({"exporter": {"refresh": {"toy": 5}}}))
    config = from_dict({"exporter": {"refresh": {"thresholds": 7}}})
    assert registry.refresh_seconds(registry.get("alert-config"), config) == 7


def test_every_api_method_runs_its_registered_analysis(fleet_db):
    with PerformanceAnalyzer(fleet_db.dsn) as a:
        end = fleet_db.fleet.end
        assert a.emergency_health_check(now=end) == a.run("emergency", now=end)
        assert a.resource_contention_analysis(2, now=end) == a.run("contention", 2, now=end)


def test_one_name_per_analysis_everywhere():
    names = [n for a in registry.ANALYSES for n in (a.name, *a.aliases)]
    assert len(names) == len(set(names))
    served = {a.name for a in registry.served()}
    from exporter.metrics import METRICS

    assert {m.analysis for m in METRICS} - {"self"} == served
