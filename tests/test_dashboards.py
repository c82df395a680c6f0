"""The generated Grafana dashboards: structural checks ported from grafana's dashboard-linter
and mixtool, every query parsed by promtool and naming only exported metrics, every query
answered by a real Prometheus scraping the exporter on a simulated fleet, and the committed
files equal to what the generator writes."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.embedded import free_port
from exporter.generate import dashboards
from exporter.metrics import BY_NAME, GRADES
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store
from tests.conftest import require_program
from tests.harness import Processes

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "alert_rules" / "perf-analyzer.rules.yml"
HOST = "127.0.0.1"
SAMPLE_VALUES = {"node": "node-01", "job": "perf-analyzer", "__rate_interval": "1m"}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__range_s", "__from", "__to"}
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
METRIC = re.compile(r"\b(perf_analyzer[_:][\w:]*)(\{[^}]*\})?")
RATE = re.compile(r"\b(?:rate|irate|increase)\(((?:[^()]|\([^()]*\))*)\)")
LABEL_VALUES = re.compile(r"^label_values\((.*),\s*\w+\)$")
# (dashboard uid, panel title) -> why the query may return nothing end to end
ALLOWED_EMPTY = {
    ("perf-analyzer-fleet", "Emergency threats now"): (
        "$node is node-01, a healthy node: it has no check above 0"
    ),
    # patterns need patterns.min_hours (48) complete hours: the 2-day fleet has 47 or 48,
    # depending on where in the hour the test runs
    ("perf-analyzer-node", "CPU peak hour"): "a 2-day fleet is at the patterns' 48-hour edge",
    ("perf-analyzer-node", "Seasonality"): "a 2-day fleet is at the patterns' 48-hour edge",
}

BOARDS = {name: build(None) for name, build in dashboards.DASHBOARDS.items()}


def all_panels() -> list[tuple[str, dict[str, Any]]]:
    return [(b["uid"], p) for b in BOARDS.values() for p in dashboards.panels(b)]


def queries() -> list[tuple[str, dict[str, Any], str, str]]:
    """(dashboard uid, panel, refId, expr) of every panel query."""
    return [
        (uid, panel, target["refId"], target["expr"])
        for uid, panel in all_panels()
        for target in panel["targets"]
    ]


def variable_queries() -> list[tuple[str, str]]:
    """(dashboard uid, PromQL inside label_values) of every query variable."""
    out = []
    for board in BOARDS.values():
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                match = LABEL_VALUES.match(var["query"])
                assert match, var["query"]
                out.append((board["uid"], match.group(1)))
    return out


def substitute(expr: str) -> str:
    """The query as Grafana sends it with sample variable values."""
    expr = expr.replace("${datasource}", "")
    return VARIABLE.sub(lambda m: SAMPLE_VALUES[m.group(1) or m.group(2)], expr)


def recording_rules() -> set[str]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {r["record"] for g in data["groups"] for r in g["rules"] if "record" in r}


# --------------------------------------------------------------------------- structure


def test_uids_are_short_stable_and_unique() -> None:
    uids = [b["uid"] for b in BOARDS.values()]
    assert len(set(uids)) == len(uids)
    for name, board in BOARDS.items():
        assert 0 < len(board["uid"]) <= 40
        assert name == f"{board['uid']}.json"
        assert "id" in board and board["id"] is None
        assert board["tags"] == ["perf-analyzer"]
        assert board["title"] and board["description"]
    # the alert rules' dashboard_url annotation points at the node dashboard
    assert "/d/perf-analyzer-node/" in RULES.read_text(encoding="utf-8")


def test_panel_ids_unique_and_grid_positions_do_not_overlap() -> None:
    for board in BOARDS.values():
        ids = [p["id"] for p in board["panels"]]
        assert len(set(ids)) == len(ids), board["uid"]
        cells: dict[tuple[int, int], int] = {}
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["w"] > 0 and pos["h"] > 0
            assert pos["x"] + pos["w"] <= 24, (board["uid"], panel["title"])
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    other = cells.setdefault((x, y), panel["id"])
                    assert other == panel["id"], (board["uid"], panel["title"], other)


def test_every_panel_has_title_description_unit_and_datasource() -> None:
    for uid, panel in all_panels():
        where = (uid, panel.get("title"))
        assert panel.get("title"), where
        assert panel.get("description"), where
        assert panel["fieldConfig"]["defaults"].get("unit"), where
        assert panel["targets"], where
        for target in [panel, *panel["targets"]]:
            ref = target.get("datasource")
            if ref is not None or target is not panel:
                assert ref == {"type": "prometheus", "uid": "${datasource}"}, where


def test_no_ds_prometheus_input() -> None:
    for name, board in BOARDS.items():
        text = json.dumps(board)
        assert "DS_PROMETHEUS" not in text, name
        assert "__inputs" not in board, name


def test_datasource_and_label_variables_follow_conventions() -> None:
    for board in BOARDS.values():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        ds = variables["datasource"]
        assert ds["type"] == "datasource"
        assert ds["query"] == "prometheus"
        assert ds["label"] == "Data source"
        for name in ("job", "node"):
            var = variables[name]
            assert var["type"] == "query", name
            assert var["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert var["query"].startswith("label_values(")
            assert var["query"].endswith(f", {name})")
            assert var["refresh"] == 2, name  # on time range change
            assert var["multi"] is True and var["includeAll"] is True
            assert var["allValue"] == ".+"
        assert 'job=~"$job"' in variables["node"]["query"]  # node depends on job


def test_links_keep_time_and_variables() -> None:
    for board in BOARDS.values():
        (link,) = board["links"]
        assert link["type"] == "dashboards"
        assert link["tags"] == ["perf-analyzer"]
        assert link["keepTime"] is True and link["includeVars"] is True


def test_every_variable_used_is_defined() -> None:
    for board in BOARDS.values():
        defined = {v["name"] for v in board["templating"]["list"]} | GRAFANA_BUILTINS
        texts = [t["expr"] for p in dashboards.panels(board) for t in p["targets"]]
        texts += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
        for text in texts:
            used = {a or b for a, b in VARIABLE.findall(text)}
            assert used <= defined, (board["uid"], text, used - defined)


def test_rates_use_rate_interval() -> None:
    found = 0
    for uid, panel, _, expr in queries():
        for inner in RATE.findall(expr):
            found += 1
            assert inner.endswith("[$__rate_interval]"), (uid, panel["title"], expr)
    assert found, "no rate() at all: the check checks nothing"


def test_selectors_filter_by_job_and_node() -> None:
    for uid, panel, _, expr in queries():
        for metric, matchers in METRIC.findall(expr):
            where = (uid, panel["title"], expr)
            assert 'job=~"$job"' in matchers, where
            labels = BY_NAME[metric].labels if metric in BY_NAME else ("node",)
            if "node" in labels:
                assert 'node=~"$node"' in matchers, where


def test_units_follow_the_metric_catalogue() -> None:
    bare = re.compile(r"^(perf_analyzer_\w+)\{[^}]*\}$")
    checked = 0
    for uid, panel, ref, expr in queries():
        unit = panel["fieldConfig"]["defaults"]["unit"]
        match = bare.match(expr)
        catalogue_unit = BY_NAME[match.group(1)].unit if match else None
        if ref == "A" and catalogue_unit in ("percentunit", "bytes", "celsius"):
            checked += 1
            assert unit == catalogue_unit, (uid, panel["title"])
        if "perf_analyzer_time_to_exhaustion_seconds" in expr:
            assert unit == ("d" if "/ 86400" in expr else "s"), (uid, panel["title"])
        if re.search(r"perf_analyzer_\w+_ratio\b", expr) and "/" not in expr:
            assert unit == "percentunit", (uid, panel["title"])
    assert checked >= 10


def test_learned_thresholds_are_in_the_panel_unit() -> None:
    """Thresholds are served in base units (ratios, bytes), the panels' units: no factor."""
    exprs = {
        p["title"]: t["expr"] for _, p in all_panels() for t in p["targets"] if t["refId"] == "B"
    }
    assert exprs["CPU"].endswith('metric="cpu_total_pct"}')
    assert exprs["Memory available"].endswith('metric="mem_available_mb"}')


def test_health_score_panels_map_grades() -> None:
    found = 0
    for uid, panel, _, expr in queries():
        if "perf_analyzer_health_score" not in expr:
            continue
        found += 1
        (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
        assert mapping["type"] == "value"
        options = mapping["options"]
        assert [options[str(i)]["text"].lower() for i in range(5)] == list(GRADES), uid
        assert all(options[str(i)].get("color") for i in range(5)), uid
    assert found >= 2


def test_sli_tables_colour_at_grade_boundaries() -> None:
    (panel,) = [p for u, p in all_panels() if p["title"] == "SLI compliance per node"]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 0.90, 0.95, 0.99]


# --------------------------------------------------------------------------- PromQL


def test_every_query_parses_and_names_exported_metrics(tmp_path: Path) -> None:
    promtool = require_program("promtool")
    rules = []
    known = set(BY_NAME) | recording_rules()
    for uid, panel, ref, expr in queries():
        record = f"dashboard:{uid.replace('-', '_')}:panel_{panel['id']}_{ref}"
        rules.append({"record": record, "expr": substitute(expr)})
        for metric, _ in METRIC.findall(expr):
            assert metric in known, (uid, panel["title"], metric)
    for n, (uid, expr) in enumerate(variable_queries()):
        rules.append(
            {"record": f"dashboard:{uid.replace('-', '_')}:var_{n}", "expr": substitute(expr)}
        )
        for metric, _ in METRIC.findall(expr):
            assert metric in known, (uid, metric)
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


# --------------------------------------------------------------------------- committed files


def test_committed_dashboards_equal_the_generator(tmp_path: Path) -> None:
    written = dashboards.write(tmp_path)
    assert {p.name for p in written} == set(dashboards.render())
    committed = ROOT / "dashboards"
    assert sorted(p.name for p in committed.iterdir()) == sorted(p.name for p in written)
    for path in written:
        assert (committed / path.name).read_text(encoding="utf-8") == path.read_text(
            encoding="utf-8"
        ), f"dashboards/{path.name} is stale: run `perf-analyzer dashboards --output dashboards`"
    provisioning = yaml.safe_load((committed / "provisioning.yml").read_text(encoding="utf-8"))
    (provider,) = provisioning["providers"]
    assert provisioning["apiVersion"] == 1 and provider["type"] == "file"


# --------------------------------------------------------------------------- end to end


def instant(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.mark.slow
def test_every_query_returns_data_from_a_real_prometheus(pg_server, tmp_path: Path) -> None:
    prometheus = require_program("prometheus")
    with contextlib.ExitStack() as stack:
        name = pg_server.create_database("dashboards")
        stack.callback(pg_server.drop_database, name)
        dsn = pg_server.dsn_for(name)
        with Store(dsn) as store:
            load_fleet(store, FleetSpec(nodes=14, containers=2, days=2, end=int(time.time()) + 150))

        procs = Processes(tmp_path)
        stack.callback(procs.stop_all)
        try:
            port = free_port()
            procs.start(
                "exporter",
                sys.executable, "-m", "exporter.cli", "serve", "--dsn", dsn,
                "--web.listen-address", f"{HOST}:{port}",
            )  # fmt: skip
            procs.wait_ready("exporter", f"http://{HOST}:{port}/-/healthy")
            # warm up: every analysis has a result before Prometheus's 1.9 s scrapes
            with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=60) as response:
                assert b"perf_analyzer_health_score" in response.read()

            config = {
                "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": "perf-analyzer",
                        "scrape_timeout": "1900ms",
                        "static_configs": [{"targets": [f"{HOST}:{port}"]}],
                    }
                ],
            }
            (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
            prom_port = free_port()
            base = f"http://{HOST}:{prom_port}"
            procs.start(
                "prometheus",
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                f"--web.listen-address={HOST}:{prom_port}",
            )
            procs.wait_ready("prometheus", f"{base}/-/ready")

            # a few scrapes: rate() has two samples and the rules have been evaluated
            deadline = time.monotonic() + 40
            ready = 'count_over_time(up{job="perf-analyzer"}[1m]) >= 4'
            while time.monotonic() < deadline:
                if instant(base, ready) and instant(base, "ALERTS"):
                    break
                time.sleep(0.5)
            assert instant(base, 'up{job="perf-analyzer"} == 1'), procs.logs()

            empty, answered = [], 0
            for uid, panel, ref, expr in queries():
                if instant(base, substitute(expr)):
                    answered += 1
                else:
                    empty.append((uid, panel["title"], ref, substitute(expr)))
            for uid, expr in variable_queries():
                assert instant(base, substitute(expr)), (uid, expr)
            print(f"{answered} of {len(queries())} panel queries returned data")
            for item in empty:
                print("  empty:", item, ALLOWED_EMPTY.get(item[:2], "NOT ALLOWED"))
            unexpected = [e for e in empty if e[:2] not in ALLOWED_EMPTY]
            assert not unexpected, f"queries without data: {unexpected}"
        except BaseException:
            print(procs.logs())
            raise
