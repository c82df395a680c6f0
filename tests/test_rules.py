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
    # only the generated tests that check the broken alert: the whole file takes promtool
    # many times longer and proves nothing more here
    tests = yaml.safe_load((generated / rules.TESTS_FILE).read_text())
    tests["tests"] = [
        t
        for t in tests["tests"]
        if any(c["alertname"] == "PerfAnalyzerCpuCritical" for c in t.get("alert_rule_test", []))
    ]
    assert tests["tests"]
    (tmp_path / rules.TESTS_FILE).write_text(yaml.safe_dump(tests))
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


def inhibited(config: dict, target: dict[str, str], sources: list[dict[str, str]]) -> bool:
    """Alertmanager's inhibition, written for the test from its documented semantics: a
    target is muted when some rule's target matchers match it and a source alert matching
    the rule's source matchers has equal values (absent = empty) for the `equal` labels."""

    def matches(matchers: list[str], labels: dict[str, str]) -> bool:
        for m in matchers:
            name, op, value = re.fullmatch(r'(\w+)(=~|!=|=)"(.*)"', m).groups()
            have = labels.get(name, "")
            ok = {"=": have == value, "!=": have != value,
                  "=~": re.fullmatch(value, have) is not None}[op]  # fmt: skip
            if not ok:
                return False
        return True

    return any(
        matches(rule["target_matchers"], target)
        and any(
            matches(rule["source_matchers"], s)
            and all(s.get(k, "") == target.get(k, "") for k in rule["equal"])
            for s in sources
        )
        for rule in config["inhibit_rules"]
    )


def test_alertmanager_inhibition_never_hides_the_only_alert_naming_the_cause(generated):
    config = yaml.safe_load((generated / ALERTMANAGER_FILE).read_text())
    cpu_page = {"alertname": "PerfAnalyzerCpuCritical", "priority": "P1", "node": "n1",
                "check": "cpu", "cause": "cpu"}  # fmt: skip
    burn_page = {"alertname": "PerfAnalyzerSliBudgetBurnFast1h", "priority": "P1",
                 "node": "n1", "sli": "performance", "cause": "contention"}  # fmt: skip
    contention = {"alertname": "PerfAnalyzerResourceContention", "priority": "P3",
                  "node": "n1", "resource": "cpu", "cause": "contention"}  # fmt: skip
    grade = {"alertname": "PerfAnalyzerNodeGradePoor", "priority": "P2", "node": "n1"}
    cpu_ticket = {"alertname": "PerfAnalyzerSliBudgetBurnSlow1d", "priority": "P2",
                  "node": "n1", "sli": "performance", "cause": "cpu"}  # fmt: skip
    # a P1 on the node mutes its lower alerts that name no cause, or the same cause
    assert inhibited(config, grade, [cpu_page])
    assert inhibited(config, cpu_ticket, [cpu_page])
    assert inhibited(config, contention, [burn_page])  # the page says contention itself
    # the CPU page does not say contention: the contention alert reaches the on-call
    assert not inhibited(config, contention, [cpu_page])
    # another node's P1, or a P2 source, mutes nothing
    assert not inhibited(config, grade, [{**cpu_page, "node": "n2"}])
    assert not inhibited(config, {**grade, "priority": "P3"}, [{**grade}])
    # a P1 is never muted
    assert not inhibited(config, burn_page, [cpu_page])


def test_one_alert_per_event_in_the_rules():
    """Every alert whose threshold is crossed whenever a stronger alert of its kind fires is
    quiet while that one fires (the promtool suite shows it on data)."""
    alerts = {a.name: a for a in catalogue()}
    kinds = [
        ("AnomalySevere", "AnomalySustained"),
        ("CapacityExhaustionImminent", "CapacityExhaustionSoon", "CapacityExhaustionForecast"),
        ("SliBudgetBurnFast1h", "SliBudgetBurnFast6h", "SliBudgetBurnSlow1d",
         "SliBudgetBurnSlow3d"),
        *((f"{w}Critical", f"{w}Warning") for w in ("Cpu", "Memory", "NodeStale", "IoWait")),
        *((f"Learned{w}P2", f"Learned{w}P3") for w in ("Cpu", "Memory", "Load")),
    ]  # fmt: skip
    for kind in kinds:
        names = [f"PerfAnalyzer{n}" for n in kind]
        for i, name in enumerate(names):
            assert alerts[name].stronger == tuple(names[:i]), name
            for stronger in names[:i]:
                assert stronger in alerts[name].expr
    tests = yaml.safe_load((ROOT / "alert_rules" / rules.TESTS_FILE).read_text())["tests"]
    quiet = {t["name"] for t in tests if " stays quiet while " in t["name"]}
    assert len(quiet) == sum(len(a.stronger) > 0 for a in alerts.values())


def test_every_alert_shows_its_value_and_a_dashboard(generated):
    data = yaml.safe_load((generated / rules.RULES_FILE).read_text())
    for group in data["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert "$value" in rule["annotations"]["description"], rule["alert"]
                assert rule["annotations"]["dashboard_url"].startswith("http"), rule["alert"]


def test_the_noisy_neighbour_reaches_the_page_as_contention(generated):
    tests = yaml.safe_load((generated / rules.TESTS_FILE).read_text())["tests"]
    (case,) = [t for t in tests if t["name"].endswith("names the top cause the analyses found")]
    (check,) = case["alert_rule_test"]
    causes = {a["exp_labels"]["node"]: a["exp_labels"]["cause"] for a in check["exp_alerts"]}
    assert causes == {"n1": "contention", "n2": "iowait"}
    assert "contention" in check["exp_alerts"][0]["exp_annotations"]["description"]


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
