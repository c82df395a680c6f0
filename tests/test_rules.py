"""Alert rules, their promtool tests, the Alertmanager example and the runbook: generated,
checked by the real promtool and amtool, and equal to what is committed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from exporter.generate import rules
from exporter.generate.alertmanager import ALERTMANAGER_FILE
from exporter.generate.alerts import catalogue
from tests.conftest import require_program

ROOT = Path(__file__).parents[1]
REGENERATE = "perf-analyzer rules --output alert_rules --runbooks docs/runbooks.md"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rules")
    rules.write(out, runbook_path=out / "runbooks.md")
    return out


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_committed_files_are_what_the_generator_writes(generated):
    for name in (rules.RULES_FILE, rules.TESTS_FILE, ALERTMANAGER_FILE):
        assert (ROOT / "alert_rules" / name).read_text() == (generated / name).read_text(), (
            f"alert_rules/{name} is stale: run `{REGENERATE}`"
        )
    runbook = (generated / "runbooks.md").read_text()
    assert (ROOT / "docs" / "runbooks.md").read_text() == runbook, (
        f"docs/runbooks.md is stale: run `{REGENERATE}`"
    )


def test_promtool_checks_the_rules(generated):
    promtool = require_program("promtool")
    help_text = (
        run(promtool, "check", "rules", "--help", cwd=generated).stdout
        + run(promtool, "check", "rules", "--help", cwd=generated).stderr
    )
    lint = ["--lint=all"] if "--lint" in help_text else []
    result = run(promtool, "check", "rules", *lint, rules.RULES_FILE, cwd=generated)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.slow
def test_promtool_unit_tests_pass(generated):
    promtool = require_program("promtool")
    result = run(promtool, "test", "rules", rules.TESTS_FILE, cwd=generated)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_promtool_unit_tests_can_fail(generated, tmp_path):
    """A broken rule fails its generated test (the tests are not vacuous)."""
    promtool = require_program("promtool")
    data = yaml.safe_load((generated / rules.RULES_FILE).read_text())
    for group in data["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "PerfAnalyzerCpuCritical":
                rule["expr"] = rule["expr"].replace(">= 3", ">= 4")
    (tmp_path / rules.RULES_FILE).write_text(yaml.safe_dump(data))
    (tmp_path / rules.TESTS_FILE).write_text((generated / rules.TESTS_FILE).read_text())
    result = run(promtool, "test", "rules", rules.TESTS_FILE, cwd=tmp_path)
    assert result.returncode != 0 and "PerfAnalyzerCpuCritical" in result.stdout + result.stderr


def test_every_alert_is_tested_and_every_test_names_an_alert(generated):
    alerts = {a.name for a in catalogue()}
    tests = yaml.safe_load((generated / rules.TESTS_FILE).read_text())["tests"]
    tested_firing = {
        check["alertname"] for t in tests for check in t["alert_rule_test"] if check["exp_alerts"]
    }
    tested_quiet = {
        check["alertname"]
        for t in tests
        for check in t["alert_rule_test"]
        if not check["exp_alerts"]
    }
    assert tested_firing == alerts  # promtool passes a misspelled alertname silently
    assert tested_quiet == alerts


def test_conventions(generated):
    data = yaml.safe_load((generated / rules.RULES_FILE).read_text())
    text = (generated / rules.RULES_FILE).read_text()
    assert not re.search(r"\d\.\d{7,}", text), "a threshold printed with float noise"
    runbook = (generated / "runbooks.md").read_text()
    for group in data["groups"]:
        assert len(group["rules"]) <= 20
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            name = rule["alert"]
            assert re.fullmatch(r"PerfAnalyzer[A-Z][A-Za-z0-9]+", name) and len(name) <= 40
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert rule["labels"]["priority"] in {"P1", "P2", "P3"}
            assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
            assert rule["annotations"]["runbook_url"].endswith(f"#{name.lower()}")
            assert f"## {name}\n" in runbook


def test_every_metric_the_rules_use_exists(generated):
    from exporter.metrics import BY_NAME

    text = (generated / rules.RULES_FILE).read_text()
    used = set(re.findall(r"\bperf_analyzer_[a-z0-9_]+", text))
    assert used and used <= set(BY_NAME)


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        ({"priority": "P1", "node": "n1"}, "pager"),
        ({"priority": "P2", "node": "n1"}, "ticket"),
        ({"priority": "P3", "node": "n1"}, "low-noise"),
        ({"node": "n1"}, "low-noise"),
    ],
)
def test_amtool_routes(generated, labels, receiver):
    amtool = require_program("amtool")
    check = run(amtool, "check-config", ALERTMANAGER_FILE, cwd=generated)
    assert check.returncode == 0, check.stdout + check.stderr
    args = [f"{k}={v}" for k, v in labels.items()]
    result = run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_FILE}",
                 f"--verify.receivers={receiver}", *args, cwd=generated)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_inhibits_lower_priorities_of_the_same_node(generated):
    config = yaml.safe_load((generated / ALERTMANAGER_FILE).read_text())
    (rule,) = config["inhibit_rules"]
    assert rule["source_matchers"] == ['priority="P1"']
    assert rule["target_matchers"] == ['priority=~"P2|P3"'] and rule["equal"] == ["node"]


def test_learned_rules_hold_no_node_constants():
    learned = [a for a in catalogue() if a.name.startswith("PerfAnalyzerLearned")]
    assert len(learned) == 10  # five metrics, P3 and P2
    for a in learned:
        assert "node=" not in a.expr and "perf_analyzer_dynamic_threshold" in a.expr


def test_a_node_added_after_the_rules_is_covered(generated, tmp_path):
    """The rules were written before `late-node` existed: its served threshold and live
    value are enough. A node without a learned threshold never fires."""
    promtool = require_program("promtool")
    for name in (rules.RULES_FILE,):
        (tmp_path / name).write_text((generated / name).read_text())
    gauge = 'perf_analyzer_dynamic_threshold{{level="p2",metric="mem_available_mb",node="{}"}}'
    (alert,) = [a for a in catalogue() if a.name == "PerfAnalyzerLearnedMemoryP2"]
    labels = {"node": "late-node", "metric": "mem_available_mb", "severity": "warning",
              "priority": "P2"}  # fmt: skip
    annotations = {
        k: rules.render(v, labels, 1e9)
        for k, v in rules.alert_annotations(
            alert, rules.DEFAULT_RUNBOOK_BASE, rules.DEFAULT_DASHBOARD_URL
        ).items()
    }
    suite = {
        "rule_files": [rules.RULES_FILE],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": gauge.format("late-node"), "values": "2e9x30"},
                    {
                        "series": 'perf_analyzer_memory_available_bytes{node="late-node"}',
                        "values": "1e9x30",
                    },
                    {
                        "series": 'perf_analyzer_memory_available_bytes{node="no-threshold"}',
                        "values": "1e3x30",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "12m",
                        "alertname": "PerfAnalyzerLearnedMemoryP2",
                        "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}],
                    }
                ],
            }
        ],
    }
    (tmp_path / "late.yml").write_text(yaml.safe_dump(suite))
    result = run(promtool, "test", "rules", "late.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
