"""Emergency health check: what is about to break right now, node by node.

One indexed query over the last few minutes of node rows (the window's median of each
metric, so one odd sample neither raises nor hides a threat) plus the newest node row of
every node (freshness first: a silent node is the worst threat of all).

Freshness is judged on node rows only (container rows still arriving do not prove the node
sampler alive) and in multiples of the node's own sampling interval, learned from its recent
history, with floors in seconds: a healthy node sampled every 5 minutes is never stale.
A node silent longer than `forget_after_hours` is not dropped silently: it is listed as
forgotten (its own metric), so "dead" never reads as "resolved".

Disk-full and inode-full are checked where the table has the optional host-fact columns
(the fullest filesystem's used share); on an older table those two checks stay at level 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, TypedDict

from psycopg import Cursor, sql

from ..config import EmergencyConfig, Levels
from ..metricdef import NODE, gauge
from ..render import PRIORITY_COLOUR, STATUS_COLOUR, Text, when
from ..samples import Sample, sample
from ..schema import DISK_USED, INODES_USED, present_columns
from ..vocabulary import Check as CheckName
from ..vocabulary import Priority
from .common import HOUR, NODE_ROW, Context, clean, round_float, window_rows
from .hosts import cpu_count_of, newest_rows
from .unit import Analysis, ResultView, Served

LEVEL = {None: 0, "P3-ADVISORY": 1, "P2-WARNING": 2, "P1-CRITICAL": 3}
CHECKS = tuple(c.value for c in CheckName)


class Threat(TypedDict):
    """One check of one node; a threat when its priority is not INFO."""

    node_name: str
    container_name: str | None
    check: str
    priority: str
    level: int  # 0 INFO .. 3 P1-CRITICAL
    value: float | None
    threshold: float | None
    unit: str
    samples: int
    message: str


class CheckLevel(TypedDict):
    node_name: str
    check: str
    level: int
    value: float | None
    samples: int


class EmergencyWindow(TypedDict):
    start: int
    end: int
    seconds: int


class EmergencyResult(TypedDict):
    status: str  # OK, WARNING, CRITICAL, or NO_DATA when the table holds no node
    window: EmergencyWindow
    nodes: int
    fresh_nodes: int  # nodes whose newest node row is not stale
    forgotten: list[str]  # nodes silent longer than forget_after_hours: no longer checked
    threats: list[Threat]
    immediate_actions: list[str]
    checks: list[CheckLevel]  # every node and check, threat or not


@dataclass(frozen=True)
class Check:
    name: str
    unit: str
    message: str  # formatted with value
    action: str

    def levels(self, config: EmergencyConfig, interval: float | None = None) -> Levels:
        """The check's levels; staleness scales with the node's sampling interval."""
        levels: Levels = getattr(config, _LEVEL_FIELD[self.name])
        if self.name != "stale" or interval is None:
            return levels
        k = config.stale_intervals
        return Levels(
            max(levels.p3, k.p3 * interval),
            max(levels.p2, k.p2 * interval),
            max(levels.p1, k.p1 * interval),
        )


_LEVEL_FIELD = {
    "cpu": "cpu_pct",
    "memory": "mem_available_pct",
    "temperature": "temperature_c",
    "load": "load_per_cpu",
    "swap": "swap_growth_mb_per_min",
    "iowait": "iowait_pct",
    "network_errors": "network_errors_per_s",
    "disk": "disk_used_ratio",
    "inodes": "inodes_used_ratio",
    "stale": "stale_seconds",
}

CATALOGUE = {
    c.name: c
    for c in (
        Check(
            "cpu",
            "%",
            "CPU usage {v:.1f}% - system unresponsive risk",
            "Kill or throttle the high-CPU processes immediately",
        ),
        Check(
            "memory",
            "% free",
            "Memory {v:.1f}% free - OOM risk",
            "Free memory immediately or restart the leaking services",
        ),
        Check(
            "temperature",
            "°C",
            "Temperature {v:.1f}°C - thermal throttling",
            "Check the cooling systems immediately",
        ),
        Check(
            "load",
            "per CPU",
            "Load {v:.2f} per CPU - run queue saturated",
            "Find runaway processes or move work off the node",
        ),
        Check(
            "swap",
            "MiB/min",
            "Swap growing {v:.1f} MiB/min while memory is low - thrashing",
            "Stop the memory consumer before the OOM killer does",
        ),
        Check(
            "iowait",
            "%",
            "I/O wait {v:.1f}% - storage saturated",
            "Find the process saturating the disk (iotop) and check the storage",
        ),
        Check(
            "network_errors",
            "/s",
            "Network errors and drops {v:.1f}/s - packet loss",
            "Check the NIC, cable and driver counters (ethtool -S)",
        ),
        Check(
            "disk",
            "used",
            "Fullest filesystem {v:.1%} used - disk full",
            "Free space on the fullest filesystem (df -h; du -xsh on it) or grow it",
        ),
        Check(
            "inodes",
            "used",
            "Fullest filesystem {v:.1%} of inodes used - no new files",
            "Delete the many small files on the fullest filesystem (df -i; find -xdev)",
        ),
        Check(
            "stale",
            "s",
            "No sample for {v:.0f} s - node down or sampler stopped",
            "Check that the node is up and its sampler is running",
        ),
    )
}

_NET = ("net_rx_errs_s", "net_tx_errs_s", "net_rx_drops_s", "net_tx_drops_s")


def _median(expr: sql.Composable) -> sql.Composable:
    return sql.SQL("percentile_cont(0.5) WITHIN GROUP (ORDER BY {})").format(expr)


# Optional columns (host facts) read when the table has them: check name -> column.
_FACTS = {"disk": DISK_USED.name, "inodes": INODES_USED.name}


def _query(ctx: Context, facts: tuple[str, ...] = ()) -> sql.Composed:
    """The window's medians per node; `facts` are the checks of optional columns present."""
    net_values = [clean(c) for c in _NET]
    net_sum = sql.SQL(" + ").join(sql.SQL("coalesce({}, 0)").format(v) for v in net_values)
    net_any = sql.SQL(" OR ").join(sql.SQL("{} IS NOT NULL").format(v) for v in net_values)
    return sql.SQL(
        "SELECT node_name, count(*) AS samples,"
        " {cpu} AS cpu, count({cpu_v}) AS cpu_n,"
        " {iowait} AS iowait, count({iowait_v}) AS iowait_n,"
        " {mem} AS memory, count({avail}) AS memory_n,"
        " {temp} AS temperature, count({temp_v}) AS temperature_n,"
        " {load} AS load, count({load_v}) AS load_n,"
        " regr_slope({swap}, sample_time / 60.0) AS swap, count({swap}) AS swap_n,"
        " {net} AS network_errors, count(*) FILTER (WHERE {net_any}) AS network_errors_n"
        "{facts} FROM {rows} w WHERE {node} GROUP BY node_name"
    ).format(
        cpu=_median(clean("cpu_total_pct")),
        cpu_v=clean("cpu_total_pct"),
        iowait=_median(clean("cpu_iowait_pct")),
        iowait_v=clean("cpu_iowait_pct"),
        mem=_median(
            sql.SQL("100.0 * {} / {}").format(clean("mem_available_mb"), clean("mem_total_mb"))
        ),
        avail=clean("mem_available_mb"),
        temp=_median(clean("temperature_c")),
        temp_v=clean("temperature_c"),
        load=_median(clean("load_1m")),
        load_v=clean("load_1m"),
        swap=clean("swap_used_mb"),
        net=sql.SQL("percentile_cont(0.5) WITHIN GROUP (ORDER BY {}) FILTER (WHERE {})").format(
            net_sum, net_any
        ),
        net_any=net_any,
        facts=sql.SQL("").join(
            sql.SQL(", {} AS {}, count({}) AS {}").format(
                _median(clean(_FACTS[f])),
                sql.Identifier(f),
                clean(_FACTS[f]),
                sql.Identifier(f"{f}_n"),
            )
            for f in facts
        ),
        rows=window_rows(ctx.store),
        node=NODE_ROW,
    )


DEFAULT_INTERVAL = 60  # seconds, for a node with fewer than two node rows in its history


class NodeFacts(NamedTuple):
    first: int  # first row of any kind
    last: int  # newest row of any kind
    last_node: int | None  # newest node row (None: the node sampler never reported)
    interval: float  # median spacing of its node rows (`node_facts` says which)


# The median spacing of a node's node rows in (last - history, last]: its own sampling
# interval, robust to jitter, late rows and missed samples. `node_facts` passes the start
# of the hour of its newest node row as `last`, so the estimate changes once an hour.
_INTERVAL_SQL = """
SELECT p.node_name,
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d.step)
          FROM (SELECT sample_time - lag(sample_time) OVER (ORDER BY sample_time) AS step
                  FROM (SELECT DISTINCT sample_time FROM {t} s
                         WHERE s.node_name = p.node_name AND s.node_flag IS TRUE
                           -- row comparisons: only the (node_name, sample_time) index
                           -- serves them, never a walk of every node's rows by time
                           AND (s.node_name, s.sample_time) > (p.node_name, p.last - %(history)s)
                           AND (s.node_name, s.sample_time) <= (p.node_name, p.last)) x) d
         WHERE d.step > 0) AS interval
  FROM unnest(%(nodes)s::text[], %(lasts)s::bigint[]) AS p(node_name, last)
"""


def _intervals(
    cur: Cursor[dict[str, Any]], ctx: Context, lasts: dict[str, int], history: int
) -> dict[str, float]:
    """{node: median spacing of its node rows in (last - history, last]}; 0 with fewer than
    two distinct stamps there."""
    if not lasts:
        return {}
    nodes = sorted(lasts)
    cur.execute(
        sql.SQL(_INTERVAL_SQL).format(t=ctx.store.table),
        {"nodes": nodes, "lasts": [lasts[n] for n in nodes], "history": history},
    )
    return {r["node_name"]: float(r["interval"] or 0) for r in cur.fetchall()}


def node_facts(ctx: Context, now: int) -> dict[str, NodeFacts]:
    """{node: facts} of every node with a row up to `now`.

    A node's interval is learned from the `interval_history_hours` of node rows before the
    hour of its newest node row, i.e. from complete hours, so it changes once an hour and
    is cached per node and hour: a warm run asks only for each node's newest rows. A node
    with fewer than two stamps before that hour (a new one) learns from the rows up to its
    newest, cached per newest row. A late row in hours already learned from is seen at the
    next hour's estimate (a run with an empty cache sees it at once)."""
    cfg = ctx.config.emergency
    since = int(now - cfg.forget_after_hours * HOUR)
    rows = newest_rows(ctx, now, window=cfg.window_seconds, since=since)
    if not rows:
        return {}
    history = int(ctx.config.sli.interval_history_hours * HOUR)
    cache: dict[tuple[str, int, int, bool], float] = ctx.cache("node_intervals", dict)
    with ctx.store.read() as cur:
        newest = {n: t for n, (_, _, t) in rows.items() if t is not None}
        hourly = {n: t // HOUR * HOUR for n, t in newest.items()}
        if len(cache) > 100_000:
            cache.clear()
        todo = {n: a for n, a in hourly.items() if (n, a, history, True) not in cache}
        for node, step in _intervals(cur, ctx, todo, history).items():
            cache[(node, todo[node], history, True)] = step
        young = {n: newest[n] for n, a in hourly.items() if cache[(n, a, history, True)] <= 0}
        todo = {n: t for n, t in young.items() if (n, t, history, False) not in cache}
        for node, step in _intervals(cur, ctx, todo, history).items():
            cache[(node, todo[node], history, False)] = step
    facts = {}
    for node, (first, last, last_node) in rows.items():
        step = 0.0
        if last_node is not None:
            step = cache[(node, hourly[node], history, True)]
            if step <= 0:
                step = cache[(node, last_node, history, False)]
        facts[node] = NodeFacts(first, last, last_node, step if step > 0 else DEFAULT_INTERVAL)
    return facts


def emergency_health_check(
    ctx: Context, *, now: int, facts: dict[str, NodeFacts] | None = None
) -> EmergencyResult:
    """Threats of the last `window_seconds` per node, most severe first; `facts`: every
    node's `node_facts` at `now` when the caller already has them."""
    cfg = ctx.config.emergency
    start = now - cfg.window_seconds
    facts = node_facts(ctx, now) if facts is None else facts
    forget = cfg.forget_after_hours * HOUR
    forgotten = sorted(n for n, f in facts.items() if now - f.last > forget)
    live = {n: f for n, f in facts.items() if now - f.last <= forget}
    with ctx.store.read() as cur:
        present = present_columns(cur, ctx.store, tuple(_FACTS.values()))
        host_facts = tuple(f for f, column in _FACTS.items() if column in present)
        queries: dict[tuple[str, ...], sql.Composed] = ctx.cache("emergency_queries", dict)
        if host_facts not in queries:  # composed once: a tenth of a warm check
            queries[host_facts] = _query(ctx, host_facts)
        cur.execute(queries[host_facts], {"start": start, "now": now})
        recent = {r["node_name"]: r for r in cur.fetchall()}
    cpus = cpu_count_of(ctx, now) if ctx.cpu_count is None else {}

    checks: list[Threat] = []
    grades: dict[tuple[str, float | None], Grading] = {}
    for node in sorted(live):
        f = live[node]
        values = _values(recent.get(node), cpus.get(node, ctx.cpu_count), cfg)
        # never a node row: as old as the node's first row of any kind
        values["stale"] = (now - (f.first if f.last_node is None else f.last_node), 1)
        for name in CHECKS:
            key = (name, f.interval if name == "stale" else None)
            if (grading := grades.get(key)) is None:
                grading = grades[key] = _grading(CATALOGUE[name].levels(cfg, f.interval))
            value, samples = values.get(name, (None, 0))
            checks.append(_evaluate(node, name, value, samples, cfg, grading))

    threats = sorted(
        (c for c in checks if c["priority"] != "INFO"),
        key=lambda c: (-c["level"], c["node_name"], CHECKS.index(c["check"])),
    )
    actions = [
        f"{t['node_name']}: {CATALOGUE[t['check']].action}"
        for t in threats
        if t["level"] >= LEVEL["P2-WARNING"]
    ]
    worst = max((t["level"] for t in threats), default=0)
    status = "CRITICAL" if worst == 3 else "WARNING" if worst == 2 else "OK"
    stale = {c["node_name"] for c in checks if c["check"] == "stale" and c["level"]}
    return {
        "status": status if live else "NO_DATA",
        "window": {"start": start, "end": now, "seconds": cfg.window_seconds},
        "nodes": len(live),
        "fresh_nodes": len(live) - len(stale),
        "forgotten": forgotten,
        "threats": threats,
        "immediate_actions": actions,
        "checks": [
            {
                "node_name": c["node_name"],
                "check": c["check"],
                "level": c["level"],
                "value": c["value"],
                "samples": c["samples"],
            }
            for c in checks
        ],
    }


def _values(
    row: dict[str, Any] | None, cpus: int | None, cfg: EmergencyConfig
) -> dict[str, tuple[float | None, int]]:
    """(value, samples) of each check from the window's row; None when unknown."""
    if row is None:
        return {}
    values = {
        name: (row[name], row[f"{name}_n"])
        for name in ("cpu", "iowait", "memory", "temperature", "network_errors", *_FACTS)
        if name in row
    }
    if cpus and row["load"] is not None:
        values["load"] = (row["load"] / cpus, row["load_n"])
    memory_low = row["memory"] is not None and cfg.mem_available_pct.priority(row["memory"])
    if memory_low and row["swap"] is not None:  # swap growth matters only while memory is low
        values["swap"] = (row["swap"], row["swap_n"])
    return values


# A check's levels as (priority, limit) pairs, most severe first, and whether higher is
# worse: grading two thousand checks a run through the configuration's objects was half
# of a warm check's Python.
Grading = tuple[tuple[tuple[Priority, float], ...], bool]


def _grading(levels: Levels) -> Grading:
    return tuple((p, levels.threshold(p)) for p in Priority), levels.higher_is_worse


def _evaluate(
    node: str,
    name: str,
    value: float | None,
    samples: int,
    cfg: EmergencyConfig,
    grading: Grading,
) -> Threat:
    """The check's threat; `Levels.priority` and `Levels.threshold` by `grading`."""
    check = CATALOGUE[name]
    # a threat must be sustained: a node's first sample or two never raise one (staleness
    # is the age of the newest sample, one value by nature)
    needed = 1 if name == "stale" else cfg.min_samples
    priority, threshold = None, None
    if samples >= needed and value is not None:
        limits, higher = grading
        for p, limit in limits:
            if (value >= limit) if higher else (value <= limit):
                priority, threshold = p, limit
                break
    return {
        "node_name": node,
        "container_name": None,
        "check": name,
        "priority": priority or "INFO",
        "level": LEVEL[priority],
        "value": round_float(value, 3),
        "threshold": threshold,
        "unit": check.unit,
        "samples": samples,
        "message": f"{node}: {check.message.format(v=value)}" if priority else "",
    }


# --------------------------------------------------------------------------- served


THREAT = gauge(
    "emergency_threat",
    "Emergency check level per node and check: 0 none, 1 P3-ADVISORY, 2 P2-WARNING, 3 P1-CRITICAL.",
    ("node", "check"),
)


FORGOTTEN = gauge(
    "node_forgotten",
    "1 for a node silent longer than emergency.forget_after_hours: no longer checked or "
    "graded, but not recovered either; 0 for the nodes still checked.",
    NODE,
)


def to_samples(result: EmergencyResult, view: ResultView) -> Iterator[Sample]:
    for c in result["checks"]:
        yield sample("emergency_threat", c["level"], node=c["node_name"], check=c["check"])
    for node in sorted({c["node_name"] for c in result["checks"]}):
        yield sample("node_forgotten", 0, node=node)
    for node in result["forgotten"]:
        yield sample("node_forgotten", 1, node=node)


def critical_nodes(result: EmergencyResult) -> set[str]:
    """Nodes with a P1 threat: their SLI grade is CRITICAL."""
    return {t["node_name"] for t in result["threats"] if t["priority"] == "P1-CRITICAL"}


def render_text(r: EmergencyResult, t: Text) -> None:
    minutes = r["window"]["seconds"] // 60
    t.title(f"🚨 EMERGENCY HEALTH CHECK - Last {minutes} minutes ({when(r['window']['end'])})")
    serious = [x for x in r["threats"] if x["priority"] != "P3-ADVISORY"]
    if r["status"] == "NO_DATA":
        t.line(t.paint("❔ NO DATA: the table holds no node to check", "yellow"))
    elif not r["fresh_nodes"]:
        t.line(t.paint(f"❔ NO FRESH DATA: none of the {r['nodes']} nodes is reporting", "red"))
    if not serious:
        if r["status"] != "NO_DATA" and r["fresh_nodes"]:
            t.line(t.paint(f"✅ OK: no immediate threats on {r['nodes']} nodes", "green"))
    else:
        t.line(
            t.paint(
                f"⚠️  {r['status']}: {len(serious)} immediate threats detected!",
                STATUS_COLOUR.get(r["status"]),
            )
        )
        for x in serious:
            t.line(
                t.paint(f"   • [{x['priority']}] {x['message']}", PRIORITY_COLOUR[x["priority"]])
            )
    if r["forgotten"]:
        t.line()
        names = ", ".join(r["forgotten"])
        t.line(f"🪦 {len(r['forgotten'])} nodes silent too long to check: {names}")
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


ANALYSIS = Analysis[EmergencyResult](
    name="emergency",
    title="what is about to break right now, node by node",
    run=emergency_health_check,
    render_text=render_text,
    serve=Served(refresh_seconds=10, metrics=(THREAT, FORGOTTEN), to_samples=to_samples),
)
