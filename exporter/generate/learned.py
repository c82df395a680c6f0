"""Per-node alert rules from thresholds learned on each node's own history
(`generate_alert_config()`), in a file of their own so the static rules stay reviewable."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from ..exposition import shorten
from .alerts import PREFIX, SEVERITY, fmt

LEARNED_FILE = "perf-analyzer.learned.rules.yml"

# table column -> (exported expression in the column's unit, alert word)
EXPOSED = {
    "cpu_total_pct": ("perf_analyzer_cpu_usage_ratio{{node={node}}} * 100", "Cpu"),
    "cpu_iowait_pct": ("perf_analyzer_cpu_iowait_ratio{{node={node}}} * 100", "IoWait"),
    "load_1m": ("perf_analyzer_load1{{node={node}}}", "Load"),
    "temperature_c": ("perf_analyzer_temperature_celsius{{node={node}}}", "Temperature"),
    "mem_available_mb": ("perf_analyzer_memory_available_bytes{{node={node}}} / 1048576", "Memory"),
    "swap_used_mb": ("perf_analyzer_swap_used_bytes{{node={node}}} / 1048576", "Swap"),
}


def _quote(node: str) -> str:
    """A PromQL string literal of the node label as the exporter serves it (long names
    shortened): JSON's escapes (quotes, backslashes, newlines and every other control
    character) are also PromQL's, so any name gives a valid rule."""
    return json.dumps(shorten(node), ensure_ascii=False)


def learned_groups(config: dict[str, Any]) -> dict[str, Any]:
    """One alert per metric and priority, comparing each node with its own threshold."""
    by_rule: dict[tuple[str, str], list[str]] = defaultdict(list)
    for t in config["thresholds"]:
        if t["metric"] not in EXPOSED or t["threshold"] is None:
            continue
        template, _ = EXPOSED[t["metric"]]
        op = "<" if t.get("direction") == "below" else ">"
        series = template.format(node=_quote(t["node_name"]))
        by_rule[(t["metric"], t["priority"][:2])].append(f"{series} {op} {fmt(t['threshold'])}")
    rules = []
    for (metric, priority), parts in sorted(by_rule.items()):
        word = EXPOSED[metric][1]
        rules.append(
            {
                "alert": f"{PREFIX}Learned{word}{priority}",
                "expr": "\n or ".join(f"({p})" for p in parts),
                "for": "10m",
                "labels": {
                    "severity": SEVERITY[priority],
                    "priority": priority,
                    "metric": metric,
                },
                "annotations": {
                    "summary": f"{metric} beyond the node's learned {priority} threshold",
                    "description": "{{ $labels.node }}: " + metric + " is {{ $value }}, beyond "
                    f"the {priority} threshold learned from its own history "
                    f"({config['history']['days']:g} days).",
                },
            }
        )
    groups = [
        {"name": f"perf-analyzer-learned-{i // 20 + 1}", "rules": rules[i : i + 20]}
        for i in range(0, len(rules), 20)
    ]
    return {"groups": groups}
