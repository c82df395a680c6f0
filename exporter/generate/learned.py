"""Alerts on the thresholds each node learned from its own seasonal history.

The rules hold no per-node constants: each compares the live series, relabelled with the
`metric` label of the learned threshold, with `perf_analyzer_dynamic_threshold{level}` of
the same node and metric. A node added later is covered as soon as the exporter serves its
thresholds, without regenerating the rules, so they live in the main catalogue.

Only P3 and P2 have learned alerts: a learned P1 is never below the static P1 (see
`analyses/thresholds.py`), so the static emergency rules already page before it.
"""

from __future__ import annotations

from typing import Any

GROUP = "perf-analyzer-learned"
# learned `metric` label -> (live series in base units, alert word, what, higher is worse)
EXPOSED = {
    "cpu_total_pct": ("perf_analyzer_cpu_usage_ratio", "Cpu", "CPU busy", True),
    "cpu_iowait_pct": ("perf_analyzer_cpu_iowait_ratio", "IoWait", "I/O wait", True),
    "load_1m": ("perf_analyzer_load1", "Load", "1-minute load", True),
    "temperature_c": ("perf_analyzer_temperature_celsius", "Temperature", "temperature", True),
    "mem_available_mb": (
        "perf_analyzer_memory_available_bytes",
        "Memory",
        "available memory",
        False,
    ),
}
# P3, P2: `for` and promtool values (live, threshold, calm live) in base units per metric
FOR = {"P3": "15m", "P2": "10m"}
TEST_VALUES = {
    "cpu_total_pct": (0.9, 0.8, 0.7),
    "cpu_iowait_pct": (0.3, 0.2, 0.1),
    "load_1m": (12.0, 10.0, 8.0),
    "temperature_c": (70.0, 60.0, 55.0),
    "mem_available_mb": (1e9, 2e9, 3e9),
}


def learned_expr(metric: str, level: str) -> str:
    """The live series beyond the node's learned threshold of `level` (p3 or p2)."""
    series, _, _, worse_up = EXPOSED[metric]
    live = f'label_replace({series}, "metric", "{metric}", "", "")'
    op, pick = (">", "max") if worse_up else ("<", "min")
    threshold = f'{pick} by (node, metric) (perf_analyzer_dynamic_threshold{{level="{level}"}})'
    return f"{live}\n  {op} on (node, metric) group_left ()\n  {threshold}"


def learned_alerts(prefix: str) -> list[dict[str, Any]]:
    """One alert per metric and level P3, P2, as the keyword arguments of `alerts.Alert`
    (whose module builds them: this one stays free of imports from it)."""
    alerts = []
    for metric, (series, word, what, worse_up) in EXPOSED.items():
        for priority in ("P2", "P3"):  # the stronger first: see `alerts.chain`
            level = priority.lower()
            live, threshold, calm = TEST_VALUES[metric]
            labels = f'level="{level}",metric="{metric}",node="n1"'
            gauge = f"perf_analyzer_dynamic_threshold{{{labels}}}"
            side = "above" if worse_up else "below"
            alerts.append(
                dict(
                    name=f"{prefix}Learned{word}{priority}",
                    group=GROUP,
                    expr=learned_expr(metric, level),
                    for_=FOR[priority],
                    priority=priority,
                    summary=f"{what[0].upper()}{what[1:]} {side} the node's learned {priority} "
                    "threshold for this hour",
                    description="{{ $labels.node }}: "
                    + what
                    + " is {{ $value }}, "
                    + side
                    + f" the {priority} threshold learned from the node's own history for "
                    "this hour of the day (or week).",
                    action=f"Compare {what} with the node's usual level at this hour on the "
                    "node dashboard: a new workload, a runaway process or a failing part. "
                    "Static rules still page at the fixed levels.",
                    verify="`perf-analyzer report alert-config` shows the node's profile per "
                    "hour and what held each level; `perf_analyzer_dynamic_threshold` is "
                    "the value now.",
                    fire={
                        f'{series}{{node="n1"}}': f"{live}x70",
                        gauge: f"{threshold}x70",
                        # at P2 the live value is beyond the P3 threshold too: the P3 alert
                        # must stay quiet while the P2 fires
                        **({gauge.replace('"p2"', '"p3"'): f"{calm}x70"} if level == "p2" else {}),
                    },
                    calm={f'{series}{{node="n1"}}': f"{calm}x70", gauge: f"{threshold}x70"},
                    labels={"metric": metric},
                    identity=("node", "metric"),
                )
            )
    return alerts
