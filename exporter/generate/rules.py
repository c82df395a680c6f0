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
    """Summary, description and the runbook and dashboard links of one alert."""
    out = {
        "summary": alert.summary,
        "description": alert.description,
        "runbook_url": f"{runbook_base}#{alert.name.lower()}",
    }
    if "node" in alert.identity:
        out["dashboard_url"] = dashboard_url + "?var-node={{ $labels.node }}"
    return out


def rule_groups(alerts: list[Alert], runbook_base: str, dashboard_url: str) -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = {"perf-analyzer-recording": list(recording_rules())}
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
    if alert.group == "perf-analyzer-slo":
        return 1.0  # every sample bad: the error ratio is 1
    if alert.name.endswith("AnalysisStale"):
        return minutes * 60.0
    first = next(iter(alert.fire.series.values()))
    head = float(first.split("x")[0].split("+")[0])
    return abs(head) if alert.expr.startswith("abs(") else head


def eval_minutes(alert: Alert) -> int:
    if alert.name.endswith("AnalysisStale"):
        return 68  # true from 56 min (3 x 900 s + 600 s), then `for` 10 min
    return alert.for_minutes + 2


def test_suite(alerts: list[Alert], runbook_base: str, dashboard_url: str) -> dict[str, Any]:
    tests = []
    for a in alerts:
        at = eval_minutes(a)
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
        if a.name.endswith("SeriesDropped"):
            series_labels = {"instance": "pa:10610"}
        expected = {k: v for k, v in {**series_labels, **labels}.items() if v != ""}
        value = _fire_value(a, at)
        rendered = {
            k: render(v, expected, value)
            for k, v in alert_annotations(a, runbook_base, dashboard_url).items()
        }
        checks = [
            {"eval_time": f"{at}m", "alertname": a.name,
             "exp_alerts": [{"exp_labels": expected, "exp_annotations": rendered}]},
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
    return {"rule_files": [RULES_FILE], "evaluation_interval": "1m", "tests": tests}


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
    groups = rule_groups(alerts, runbook_base, dashboard_url)
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
