"""Reports for people (aligned text, colour only on a terminal) and for pipes (JSON)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

RULE = "=" * 64
COLOURS = {"red": "31", "yellow": "33", "green": "32", "blue": "34", "bold": "1", "dim": "2"}
PRIORITY_COLOUR = {"P1-CRITICAL": "red", "P2-WARNING": "yellow", "P3-ADVISORY": "blue"}
GRADE_COLOUR = {
    "CRITICAL": "red",
    "POOR": "red",
    "ACCEPTABLE": "yellow",
    "GOOD": "green",
    "EXCELLENT": "green",
}
STATUS_COLOUR = {"CRITICAL": "red", "WARNING": "yellow", "OK": "green"}


def to_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, sort_keys=False, allow_nan=False)


class Text:
    """A text report under construction; `paint` is a no-op without colour."""

    def __init__(self, colour: bool) -> None:
        self.colour = colour
        self.lines: list[str] = []

    def paint(self, text: str, colour: str | None) -> str:
        if not self.colour or colour is None:
            return text
        return f"\033[{COLOURS[colour]}m{text}\033[0m"

    def title(self, text: str) -> None:
        self.lines += [self.paint(text, "bold"), RULE]

    def line(self, text: str = "") -> None:
        self.lines.append(text)

    def table(
        self,
        headers: Sequence[str],
        rows: Iterable[Sequence[Any]],
        colour_of: Callable[[Sequence[Any]], str | None] = lambda r: None,
    ) -> None:
        rows = [[_cell(v) for v in r] for r in rows]
        if not rows:
            self.line("   (none)")
            return
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        fmt = "   " + "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
        self.line(self.paint(fmt.format(*headers), "dim"))
        for r in rows:
            self.line(self.paint(fmt.format(*r), colour_of(r)))

    def __str__(self) -> str:
        return "\n".join(self.lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:.3g}"
    return str(value)


def when(ts: int | float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{100 * ratio:.2f}%"


# --------------------------------------------------------------------------- per report


def emergency(r: dict[str, Any], t: Text) -> None:
    minutes = r["window"]["seconds"] // 60
    t.title(f"🚨 EMERGENCY HEALTH CHECK - Last {minutes} minutes ({when(r['window']['end'])})")
    serious = [x for x in r["threats"] if x["priority"] != "P3-ADVISORY"]
    if not serious:
        t.line(t.paint(f"✅ OK: no immediate threats on {r['nodes']} nodes", "green"))
    else:
        t.line(
            t.paint(
                f"⚠️  {r['status']}: {len(serious)} immediate threats detected!",
                STATUS_COLOUR[r["status"]],
            )
        )
        for x in serious:
            t.line(
                t.paint(f"   • [{x['priority']}] {x['message']}", PRIORITY_COLOUR[x["priority"]])
            )
    advisories = [x for x in r["threats"] if x["priority"] == "P3-ADVISORY"]
    if advisories:
        t.line()
        t.line(f"ℹ️  {len(advisories)} advisories:")
        for x in advisories:
            t.line(t.paint(f"   • {x['message']}", "blue"))
    if r["immediate_actions"]:
        t.line()
        t.line("🔧 IMMEDIATE ACTIONS REQUIRED:")
        for action in r["immediate_actions"]:
            t.line(f"   → {action}")


def availability(r: dict[str, Any], t: Text) -> None:
    t.title(f"📊 SLI COMPLIANCE - last {r['window']['hours']:g} h ({when(r['window']['end'])})")
    _sli_table(r["nodes"], t)


def _sli_table(nodes: list[dict[str, Any]], t: Text) -> None:
    t.table(
        ("node", "availability", "performance", "capacity", "grade"),
        (
            (
                n["node_name"],
                pct(n["availability"]),
                pct(n["performance"]),
                pct(n["capacity"]),
                n["grade"],
            )
            for n in nodes
        ),
        lambda row: GRADE_COLOUR.get(row[4]),
    )


def anomalies(r: dict[str, Any], t: Text) -> None:
    t.title(f"🔍 ANOMALIES - {when(r['window']['start'])} to {when(r['window']['end'])}")
    t.table(
        ("node", "container", "metric", "value", "baseline", "score", "priority", "at"),
        (
            (
                a["node_name"],
                a.get("container_name"),
                a["metric"],
                a["value"],
                a["baseline"],
                a["score"],
                a["priority"],
                when(a["sample_time"]),
            )
            for a in r["anomalies"]
        ),
        lambda row: PRIORITY_COLOUR.get(row[6]),
    )


def contention(r: dict[str, Any], t: Text) -> None:
    t.title("⚔️  RESOURCE CONTENTION")
    t.table(
        ("node", "resource", "score", "top consumer", "share"),
        (
            (
                n["node_name"],
                n["resource"],
                n["contention_score"],
                n["top_consumer"],
                pct(
                    max(
                        (c["share"] for c in n.get("containers", []) if c["share"] is not None),
                        default=None,
                    )
                ),
            )
            for n in r["nodes"]
            if n["contention_score"]
        ),
        lambda row: "red" if row[2] != "-" and float(row[2]) >= 0.5 else None,
    )


def correlation(r: dict[str, Any], t: Text) -> None:
    t.title("🔗 STRONG CORRELATIONS")
    t.table(
        ("node", "metric a", "metric b", "pearson", "deseasonalised", "lag min"),
        (
            (
                c["node_name"],
                c["metric_a"],
                c["metric_b"],
                c["coefficient"],
                c.get("deseasonalised_coefficient"),
                c.get("lag_minutes"),
            )
            for c in r["correlations"]
        ),
    )


def capacity(r: dict[str, Any], t: Text) -> None:
    t.title("📈 CAPACITY PLANNING ANALYSIS")
    units = {"cpu": "%", "memory": " MiB", "swap": " MiB"}
    by_node: dict[str, list[dict[str, Any]]] = {}
    for f in r["forecasts"]:
        by_node.setdefault(f["node_name"], []).append(f)
    for node, forecasts in sorted(by_node.items()):
        t.line(f"📊 {node}:")
        for f in forecasts:
            unit = units.get(f["resource_type"], "")
            peak, trend = f["current_peak"], f["trend_per_day"]
            line = f"   {f['resource_type']:<7} peak {_cell(peak)}{unit}"
            if trend is not None:
                line += f" (trend: {trend:+.2f}{unit}/day)"
            status = f["status"]
            if status == "exhaustion":
                line += t.paint(f"  ⚠️ exhaustion in ~{f['days_to_exhaustion']:.0f} days", "red")
            elif status == "already_exhausted":
                line += t.paint("  ⛔ already exhausted", "red")
            else:
                line += f"  {status.replace('_', ' ')}"
            t.line(line)
            if f.get("recommendation"):
                t.line(t.paint(f"      💡 {f['recommendation']}", "dim"))


def patterns(r: dict[str, Any], t: Text) -> None:
    t.title("🕐 WORKLOAD PATTERNS")
    t.table(
        ("node", "pattern", "peak hour (UTC)", "daily", "weekly"),
        (
            (
                n["node_name"],
                n["pattern"],
                n["peak_hour_utc"],
                n["daily_seasonality"],
                n["weekly_seasonality"],
            )
            for n in r["nodes"]
        ),
    )


def alert_config(r: dict[str, Any], t: Text) -> None:
    h = r["history"]
    t.title(f"🔔 LEARNED ALERT THRESHOLDS - history {when(h['start'])} to {when(h['end'])}")
    t.table(
        ("node", "metric", "priority", "threshold"),
        ((x["node_name"], x["metric"], x["priority"], x["threshold"]) for x in r["thresholds"]),
    )


def summary(r: dict[str, Any], t: Text) -> None:
    t.title(f"📋 METRICS SUMMARY - last {r['window']['hours']:g} h")
    for n in r["nodes"]:
        t.line(f"{n['node_name']} ({n['samples']} samples)")
        t.table(
            ("metric", "avg", "max", "p95"),
            ((m, s["avg"], s["max"], s["p95"]) for m, s in n["metrics"].items()),
        )


def daily(r: dict[str, Any], t: Text) -> None:
    t.title(f"📅 DAILY HEALTH REPORT - {when(r['window']['end'])}")
    t.line(t.paint(r["summary"]["text"], STATUS_COLOUR.get(r["status"])))
    t.line()
    availability({"window": r["window"], "nodes": r["nodes"]}, t)
    t.line()
    if r["threats"]:
        t.line("Threats now:")
        for x in r["threats"]:
            t.line(
                t.paint(f"   • [{x['priority']}] {x['message']}", PRIORITY_COLOUR[x["priority"]])
            )
        t.line()
    anomalies({"window": r["window"], "anomalies": r["anomalies"]}, t)
    t.line()
    capacity({"forecasts": r["capacity_warnings"]}, t)


def weekly(r: dict[str, Any], t: Text) -> None:
    t.title(f"🗓️  WEEKLY PERFORMANCE SUMMARY - week to {when(r['window']['end'])}")
    t.line("Week over week (mean CPU %, change):")
    t.table(
        ("node", "cpu this week", "last week", "change", "peak hour"),
        (
            (
                n["node_name"],
                n["metrics"]["cpu_total_pct"]["this_week"]["mean"],
                n["metrics"]["cpu_total_pct"]["last_week"]["mean"],
                n["metrics"]["cpu_total_pct"]["change"],
                n["metrics"]["cpu_total_pct"]["this_week"]["peak_hour_mean"],
            )
            for n in r["nodes"]
        ),
    )
    t.line()
    t.line("Worst nodes:")
    _sli_table(r["worst_nodes"], t)
    t.line()
    patterns({"nodes": r["patterns"]}, t)
    t.line()
    capacity({"forecasts": r["capacity_warnings"]}, t)


RENDERERS: dict[str, Callable[[dict[str, Any], Text], None]] = {
    "emergency": emergency,
    "availability": availability,
    "anomalies": anomalies,
    "contention": contention,
    "correlation": correlation,
    "capacity": capacity,
    "patterns": patterns,
    "daily": daily,
    "weekly": weekly,
    "alert-config": alert_config,
    "summary": summary,
}


def to_text(name: str, result: dict[str, Any], *, colour: bool) -> str:
    text = Text(colour)
    RENDERERS[name](result, text)
    return str(text)
