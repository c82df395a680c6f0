"""Prometheus alert and recording rules, their promtool unit tests, and the runbook, all
written from the alert catalogue (`alerts.py`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .alertmanager import ALERTMANAGER_FILE, alertmanager_yaml
from .alerts import DEFAULT_DASHBOARD_URL, DEFAULT_RUNBOOK_BASE, Alert, catalogue, recording_rules
from .yamlfile import dump

RULES_FILE = "perf-analyzer.rules.yml"
TESTS_FILE = "perf-analyzer.tests.yml"
RUNBOOK_FILE = "runbooks.md"
PROMETHEUSRULE_FILE = "perf-analyzer.prometheusrule.yml"
MAX_RULES_PER_GROUP = 20


def alert_annotations(alert: Alert, runbook_base: str, dashboard_url: str) -> dict[str, str]:
    """Summary, description and the runbook and dashboard links of one alert: the node
    dashboard for a node's finding, the exporter dashboard (same Grafana) for the others."""
    if "node" in alert.identity:
        dashboard = dashboard_url + "?var-node={{ $labels.node }}"
    else:
        dashboard = dashboard_url.replace("perf-analyzer-node", "perf-analyzer-exporter")
    return {
        "summary": alert.summary,
        "description": alert.description,
        "runbook_url": f"{runbook_base}#{alert.name.lower()}",
        "dashboard_url": dashboard,
    }


def rule_groups(
    alerts: list[Alert], runbook_base: str, dashboard_url: str, config: Any = None
) -> dict[str, Any]:
    recording = list(recording_rules(config))
    groups: dict[str, list[dict[str, Any]]] = {"perf-analyzer-recording": recording}
    for a in alerts:
        groups.setdefault(a.group, []).append(
            {
                "alert": a.name,
                "expr": a.expr,
                "for": a.for_,
                "labels": {"severity": a.severity, "priority": a.priority, **a.labels},
                "annotations": alert_annotations(a, runbook_base, dashboard_url),
            }
        )
    for name, rules in groups.items():
        if len(rules) > MAX_RULES_PER_GROUP:
            raise ValueError(f"group {name} has {len(rules)} rules, over {MAX_RULES_PER_GROUP}")
    return {"groups": [{"name": n, "rules": r} for n, r in groups.items()]}


# --------------------------------------------------------------------------- promtool tests


def go_value(value: float) -> str:
    """`{{ $value }}` as Go prints a float64 (%v: shortest, exponent from 1e+06)."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    shortest = repr(float(value))
    exponent = int(f"{value:e}".split("e")[1]) if value else 0
    if exponent < -4 or exponent >= 21 or (exponent >= 6 and value == int(value)):
        mantissa, exp = f"{value:e}".split("e")
        mantissa = repr(float(mantissa)).rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exp):+03d}"
    return shortest[:-2] if shortest.endswith(".0") else shortest


def humanize_duration(seconds: float) -> str:
    """Prometheus's humanizeDuration for values of a second or more."""
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m {secs}s"
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def humanize(value: float) -> str:
    """Prometheus's humanize for 0 and values from 1 to 1000 (no SI prefix)."""
    if value != 0 and not 1 <= abs(value) < 1000:
        raise ValueError(f"humanize of {value} needs an SI prefix")
    return go_g4(value)


def humanize_percentage(value: float) -> str:
    return go_g4(value * 100) + "%"


def go_g4(value: float) -> str:
    """Go's %.4g."""
    text = f"{value:.4g}"
    if "e" in text:
        mantissa, exp = text.split("e")
        return f"{mantissa}e{int(exp):+03d}"
    return text


def render(template: str, labels: dict[str, str], value: float) -> str:
    """The few template forms the catalogue uses, rendered as Prometheus renders them."""
    out = template
    container = labels.get("container", "")
    out = out.replace(
        "{{ with $labels.container }} (container {{ . }}){{ end }}",
        f" (container {container})" if container else "",
    )
    for key, val in labels.items():
        out = out.replace(f"{{{{ $labels.{key} }}}}", val)
    out = out.replace("{{ $value | humanizeDuration }}", humanize_duration(value))
    out = out.replace("{{ $value | humanizePercentage }}", humanize_percentage(value))
    if "{{ $value | humanize }}" in out:
        out = out.replace("{{ $value | humanize }}", humanize(value))
    out = out.replace("{{ $value }}", go_value(value))
    if "{{" in out:
        raise ValueError(f"unrendered template in {template!r}")
    return out


def _series_labels(series: str) -> dict[str, str]:
    inner = series[series.index("{") + 1 : series.rindex("}")]
    return dict(
        (k, v.strip('"')) for k, v in (part.split("=", 1) for part in inner.split(",") if part)
    )


def _fire_value(alert: Alert, minutes: int) -> float:
    """$value of the alert at eval time: the first series' value (what the catalogue's
    expressions return), except the burn-rate and staleness alerts."""
    if alert.fire.value is not None:
        return alert.fire.value
    if alert.name.endswith("AnalysisStale"):
        return minutes * 60.0
    first = next(iter(alert.fire.series.values()))
    head = float(first.split("x")[0].split("+")[0])
    return abs(head) if alert.expr.lstrip("(").startswith("abs(") else head


def eval_minutes(alert: Alert) -> int:
    if alert.name.endswith("AnalysisStale"):
        return 68  # true from 56 min (3 x 900 s + 600 s), then `for` 10 min
    return alert.for_minutes + 2


def expected_alert(a: Alert, at: int, runbook_base: str, dashboard_url: str) -> dict[str, Any]:
    """Labels and rendered annotations of the alert its own `fire` case makes at `at` min."""
    labels = {"severity": a.severity, "priority": a.priority, **a.labels}
    first = next(iter(a.fire.series))
    series_labels = {
        k: v
        for k, v in _series_labels(first).items()
        if k in a.identity
        or k in labels
        or k == "instance"
        or k == "job"
        or k in ("sli", "check", "resource", "metric", "container", "analysis")
    }
    if a.group == "perf-analyzer-slo":
        series_labels = {"node": "n1", "sli": "performance"}
    if a.cause:
        series_labels["cause"] = "unknown"  # the test feeds no analysis finding
    if a.name.endswith("SeriesDropped"):
        series_labels = {"instance": "pa:10610"}
    expected = {k: v for k, v in {**series_labels, **labels}.items() if v != ""}
    value = _fire_value(a, at)
    rendered = {
        k: render(v, expected, value)
        for k, v in alert_annotations(a, runbook_base, dashboard_url).items()
    }
    return {"exp_labels": expected, "exp_annotations": rendered}


def test_suite(alerts: list[Alert], runbook_base: str, dashboard_url: str) -> dict[str, Any]:
    tests = []
    for a in alerts:
        at = eval_minutes(a)
        checks = [
            {"eval_time": f"{at}m", "alertname": a.name,
             "exp_alerts": [expected_alert(a, at, runbook_base, dashboard_url)]},
        ]  # fmt: skip
        if a.for_minutes > 1 and not a.name.endswith("AnalysisStale"):
            checks.append(  # the condition holds, but not yet for long enough
                {"eval_time": f"{a.for_minutes - 1}m", "alertname": a.name, "exp_alerts": []}
            )
        tests.append(
            {
                "name": f"{a.name} fires",
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in a.fire.series.items()],
                "alert_rule_test": checks,
            }
        )
        tests.append(
            {
                "name": f"{a.name} stays quiet below its threshold",
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in a.calm.series.items()],
                "alert_rule_test": [{"eval_time": f"{at}m", "alertname": a.name, "exp_alerts": []}],
            }
        )
    tests += one_alert_per_event(alerts, runbook_base, dashboard_url)
    tests += cause_on_the_page(alerts, runbook_base, dashboard_url)
    return {"rule_files": [RULES_FILE], "evaluation_interval": "1m", "tests": tests}


def one_alert_per_event(
    alerts: list[Alert], runbook_base: str, dashboard_url: str
) -> list[dict[str, Any]]:
    """For each alert with stronger alerts of its kind: fed the strongest one's firing data
    (which crosses this alert's threshold too), it stays quiet once the strongest fires and
    for as long as this one's `for` would have needed."""
    by_name = {a.name: a for a in alerts}
    tests = []
    for a in alerts:
        if not a.stronger:
            continue
        strongest = by_name[a.stronger[0]]
        at = max(eval_minutes(a), eval_minutes(strongest))
        tests.append(
            {
                "name": f"{a.name} stays quiet while {strongest.name} fires",
                "interval": "1m",
                "input_series": [
                    {"series": s, "values": stretch(v, at)}
                    for s, v in strongest.fire.series.items()
                ],
                "alert_rule_test": [
                    {"eval_time": f"{at}m", "alertname": a.name, "exp_alerts": []},
                    {
                        "eval_time": f"{at}m",
                        "alertname": strongest.name,
                        "exp_alerts": [expected_alert(strongest, at, runbook_base, dashboard_url)],
                    },
                ],
            }
        )
    return tests


def stretch(values: str, minutes: int) -> str:
    """A constant input series (`AxN`) long enough to reach `minutes`."""
    head, _, count = values.rpartition("x")
    if " " in values or not count.isdigit() or "+" in head:
        raise ValueError(f"cannot stretch {values!r}")
    return f"{head}x{max(int(count), minutes + 1)}"


def cause_on_the_page(
    alerts: list[Alert], runbook_base: str, dashboard_url: str
) -> list[dict[str, Any]]:
    """A noisy neighbour (container contention on the node) while the node's performance SLI
    burns its budget: the page names `cause="contention"`, although the node's CPU is also
    at an emergency level and an anomaly scores high; the contention alert of the node is a
    P3 that the page would inhibit in Alertmanager, so the page itself has to name it."""
    (page,) = [a for a in alerts if a.name.endswith("SliBudgetBurnFast1h")]
    series = dict(page.fire.series)
    series.update(
        {
            'perf_analyzer_contention_score{node="n1",resource="cpu"}': "0.8x300",
            'perf_analyzer_emergency_threat{check="cpu",node="n1"}': "2x300",
            'perf_analyzer_anomaly_score{container="",metric="cpu_total_pct",node="n1"}': "12x300",
            'perf_analyzer_contention_score{node="n2",resource="cpu"}': "0.1x300",
            'perf_analyzer_emergency_threat{check="iowait",node="n2"}': "3x300",
            'perf_analyzer_sli_current_ratio{node="n2",sli="performance"}': series[
                next(iter(page.fire.series))
            ],
        }
    )
    at = eval_minutes(page)
    value = _fire_value(page, at)
    pages = []
    for node, cause in (("n1", "contention"), ("n2", "iowait")):
        labels = {"node": node, "sli": "performance", "cause": cause,
                  "severity": page.severity, "priority": page.priority, **page.labels}  # fmt: skip
        annotations = {
            k: render(v, labels, value)
            for k, v in alert_annotations(page, runbook_base, dashboard_url).items()
        }
        pages.append({"exp_labels": labels, "exp_annotations": annotations})
    return [
        {
            "name": f"{page.name} names the top cause the analyses found",
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "alert_rule_test": [
                {"eval_time": f"{at}m", "alertname": page.name, "exp_alerts": pages}
            ],
        }
    ]


# --------------------------------------------------------------------------- runbook


def runbook(alerts: list[Alert]) -> str:
    lines = [
        "<!-- Generated by `perf-analyzer rules`; do not edit. "
        "Change exporter/generate/alerts.py instead. -->",
        "# Runbooks",
        "",
        "One section per alert of `alert_rules/perf-analyzer.rules.yml`: what it means, what "
        "to do now, how to verify, how to silence. Priorities: P1 pages (severity critical), "
        "P2 opens a ticket (warning), P3 is advisory (info).",
        "",
    ]
    for a in alerts:
        matcher = " ".join(f'{k}="<{k}>"' for k in a.identity)
        lines += [
            f"## {a.name}",
            "",
            f"**{a.priority} / {a.severity}** — {a.summary}.",
            "",
            f"- **Means:** `{a.expr.replace(chr(10), ' ')}` for {a.for_}.",
            f"- **Do now:** {a.action}",
            f"- **Verify:** {a.verify}",
            f"- **Silence:** `amtool silence add alertname={a.name} {matcher} "
            '--duration=2h --comment="..."` while you work on it.',
            "",
        ]
    return "\n".join(lines)


def prometheus_rule(groups: dict[str, Any], name: str = "perf-analyzer") -> dict[str, Any]:
    """The same groups as a Prometheus Operator `PrometheusRule`, for clusters that load rules
    from the Kubernetes API rather than from files."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "perf-analyzer"}},
        "spec": groups,
    }


def write(
    output: Path,
    *,
    runbook_path: Path | None = None,
    runbook_base: str = DEFAULT_RUNBOOK_BASE,
    dashboard_url: str = DEFAULT_DASHBOARD_URL,
    job: str = "perf-analyzer",
    config: Any = None,
    fmt: str = "files",
) -> list[Path]:
    """Write the rules, their tests (and the runbook); returns the paths written.

    `fmt="prometheusrule"` writes the rules as one `PrometheusRule` manifest instead of the
    rules, tests and Alertmanager files. Every text is built before the first file is
    written, so a failure leaves no half-written set."""
    alerts = catalogue(config, job=job)
    groups = rule_groups(alerts, runbook_base, dashboard_url, config)
    if fmt == "prometheusrule":
        files = {output / PROMETHEUSRULE_FILE: dump(prometheus_rule(groups), "rules")}
    else:
        files = {
            output / RULES_FILE: dump(groups, "rules"),
            output / TESTS_FILE: dump(test_suite(alerts, runbook_base, dashboard_url), "rules"),
            output / ALERTMANAGER_FILE: alertmanager_yaml(),
        }
    if runbook_path is not None:
        files[runbook_path] = runbook(alerts)
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return list(files)
