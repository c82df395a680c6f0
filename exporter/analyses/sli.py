"""SLI compliance and health grades per node, as the README defines them.

- availability: the share of the window the node's sampler was up. Each node's sampling
  interval is learned from its own history (the median spacing of its node rows over the
  hours before its newest one, so a window holding one sample still knows the interval). A
  gap between consecutive node rows longer than `gap_intervals` intervals is an outage from
  one interval after the earlier row to the later one; the end of the window counts as a
  row, so a silent node reads 0 in every window while it is remembered. The rule compares
  gaps, not slots anchored at `now`, so the answer does not depend on the second it is
  evaluated, and jitter or late stamps of a few seconds never count. A node younger than
  the window is judged from its first row. Only node rows count: container rows still
  arriving do not prove the node sampler alive;
- performance: the share of samples with CPU, I/O wait and load per CPU below their
  thresholds; capacity: the share with free memory and swap inside theirs. An unknown value
  never makes a sample bad; invalid values are skipped and counted in `data_quality`;
- grade: EXCELLENT when all three > 99 %, GOOD > 95 %, ACCEPTABLE > 90 %, else POOR;
  CRITICAL while the emergency check has a P1 threat on the node; UNKNOWN when fewer
  samples carry values than `min_sample_share` of the expected ones (or `min_samples`),
  unless availability alone is already POOR: absence is evidence, silence about CPU is not.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
from psycopg import Cursor, sql

from ..config import SliConfig
from ..metricdef import NODE, gauge
from ..render import GRADE_COLOUR, Text, pct, when
from ..samples import Sample, sample
from ..schema import NODE_METRICS
from ..vocabulary import Grade
from .common import (
    HOUR,
    NODE_ROW,
    Context,
    clean,
    invalid_count,
    round_float,
    window_rows,
    window_seconds,
)
from .emergency import (
    EmergencyResult,
    NodeFacts,
    Threat,
    critical_nodes,
    emergency_health_check,
    node_facts,
)
from .hosts import cpu_count_of
from .hourly import HourRows, _Hour
from .unit import Analysis, ResultView, Served, Window

GRADES = tuple(g.label for g in Grade if g.score is not None)  # index = health_score
UNKNOWN = Grade.UNKNOWN.value


class SliRow(TypedDict):
    """What a table of grades shows of a node."""

    node_name: str
    availability: float | None
    performance: float | None
    capacity: float | None
    grade: str


class NodeSli(TypedDict):
    node_name: str
    availability: float | None
    performance: float | None
    capacity: float | None
    grade: str
    samples: int
    expected_samples: int
    interval_seconds: float
    data: str  # "ok" or "insufficient_data" (then the grade is UNKNOWN unless POOR)
    cpu_count: int | None
    critical_threats: list[str]  # checks at P1 now
    invalid_values: dict[str, int]  # column -> values skipped as invalid


class SliWindow(TypedDict):
    start: int
    end: int
    hours: float


class SliResult(TypedDict):
    window: SliWindow
    thresholds: dict[str, dict[str, float]]
    nodes: list[NodeSli]


# Nodes per statement: keeps every statement, even the weekly report's week, well inside the
# statement timeout at any fleet size (timings in docs/performance.md).
NODES_PER_QUERY = 50

_SQL = """
WITH p AS (
    SELECT * FROM unnest(%(nodes)s::text[], %(cpus)s::float8[], %(intervals)s::float8[],
                         %(since)s::float8[]) AS p(node_name, cpus, iv, since)
), w AS (
    SELECT * FROM {rows} r WHERE {node_row} AND r.node_name = ANY(%(nodes)s::text[])
), times AS (
    SELECT DISTINCT node_name, sample_time::float8 AS t FROM w
    UNION  -- the newest node row before the window, else the node's first row of any kind
    SELECT p.node_name, coalesce(a.t, p.since)
      FROM p CROSS JOIN LATERAL (SELECT max(sample_time)::float8 AS t FROM {table} s
                                  WHERE s.node_name = p.node_name AND s.node_flag IS TRUE
                                    AND s.sample_time <= %(start)s) a
    UNION  -- the end of the window closes the last gap
    SELECT node_name, %(now)s::float8 FROM p
), gaps AS (
    SELECT node_name, t AS b, lag(t) OVER (PARTITION BY node_name ORDER BY t) AS a FROM times
), missing AS (
    SELECT g.node_name,
           sum(greatest(0, g.b - greatest(g.a + p.iv, p.since))) AS missing
      FROM gaps g JOIN p USING (node_name)
     WHERE g.b - g.a > %(gap)s * p.iv
     GROUP BY g.node_name
), stats AS (
    SELECT w.node_name,
           count(*) AS samples,
           count(*) FILTER (WHERE {perf_known}) AS perf_n,
           count(*) FILTER (WHERE {perf_known} AND {perf_good}) AS perf_good,
           count(*) FILTER (WHERE {cap_known}) AS cap_n,
           count(*) FILTER (WHERE {cap_known} AND {cap_good}) AS cap_good,
           {invalid}
      FROM w JOIN p cpus USING (node_name)
     GROUP BY w.node_name
)
SELECT * FROM p LEFT JOIN missing USING (node_name) LEFT JOIN stats USING (node_name)
"""


def _parts(ctx: Context) -> dict[str, sql.Composable]:
    """The SLI query's per-row conditions, shared by the run from scratch and the
    incremental one (which keeps each row's conditions as bits)."""
    c = ctx.config.sli
    cpu, iowait = clean("cpu_total_pct"), clean("cpu_iowait_pct")
    load = sql.SQL("{} / cpus.cpus").format(clean("load_1m"))
    mem = sql.SQL("100.0 * {} / {}").format(clean("mem_available_mb"), clean("mem_total_mb"))
    swap = clean("swap_used_mb")

    def ok(expr: sql.Composable, op: str, limit: float) -> sql.Composable:
        return sql.SQL("coalesce({} {} {}, true)").format(expr, sql.SQL(op), sql.Literal(limit))

    def known(*exprs: sql.Composable) -> sql.Composable:
        return sql.SQL("({})").format(
            sql.SQL(" OR ").join(sql.SQL("{} IS NOT NULL").format(e) for e in exprs)
        )

    perf_good = [ok(cpu, "<", c.cpu_pct), ok(iowait, "<", c.iowait_pct)]
    perf_good.append(ok(load, "<", c.load_per_cpu))
    cap_good = [ok(mem, ">=", c.mem_available_pct), ok(swap, "<=", c.swap_used_mb)]
    return {
        "perf_known": known(cpu, iowait, clean("load_1m")),
        "perf_good": sql.SQL(" AND ").join(perf_good),
        "cap_known": known(mem, swap),
        "cap_good": sql.SQL(" AND ").join(cap_good),
    }


def _query(ctx: Context) -> sql.Composed:
    invalid = [
        sql.SQL("{} AS {}").format(invalid_count(m), sql.Identifier(f"invalid:{m}"))
        for m in NODE_METRICS
    ]
    return sql.SQL(_SQL).format(
        rows=window_rows(ctx.store),
        table=ctx.store.table,
        node_row=NODE_ROW,
        invalid=sql.SQL(", ").join(invalid),
        **_parts(ctx),
    )


def _scratch_rows(
    ctx: Context,
    nodes: list[str],
    cpus: list[float | None],
    facts: dict[str, NodeFacts],
    since: dict[str, float],
    start: int,
    now: int,
) -> dict[str, dict[str, Any]]:
    """{node: missing seconds and sample counts}, from the raw rows of the window."""
    rows = {}
    for first in range(0, len(nodes), NODES_PER_QUERY):  # bounded statements, any fleet
        batch = slice(first, first + NODES_PER_QUERY)
        with ctx.store.read() as cur:
            cur.execute(
                _query(ctx),
                {
                    "start": start,
                    "now": now,
                    "nodes": nodes[batch],
                    "cpus": cpus[batch],
                    "intervals": [float(facts[n].interval) for n in nodes[batch]],
                    "since": [since[n] for n in nodes[batch]],
                    "gap": ctx.config.sli.gap_intervals,
                },
            )
            rows.update({r["node_name"]: r for r in cur.fetchall()})
    return rows


# --------------------------------------------------------------------------- incremental


# The window's node rows in (start, now], as the run from scratch reads them, each reduced
# to its time and bits.
_ROWS_SQL = """
WITH p AS (
    SELECT * FROM unnest(%(nodes)s::text[], %(cpus)s::float8[]) AS p(node_name, cpus)
)
SELECT w.node_name, w.sample_time, {bits} AS bits
  FROM {rows} w JOIN p cpus USING (node_name)
 WHERE {node_row}
"""

# The newest node row at or before the window's start, per node.
_BEFORE_SQL = """
SELECT p.node_name, a.t
  FROM unnest(%(nodes)s::text[]) AS p(node_name)
 CROSS JOIN LATERAL (SELECT max(sample_time)::float8 AS t FROM {table} s
                      WHERE s.node_name = p.node_name AND s.node_flag IS TRUE
                        AND s.sample_time <= %(start)s) a
"""


def _before(
    cur: Cursor[dict[str, Any]], ctx: Context, nodes: list[str], start: int
) -> dict[str, float]:
    """The newest node row at or before `start` per node (the table's, not only the
    window's): the gap that crosses the window's start."""
    query = sql.SQL(_BEFORE_SQL).format(table=ctx.store.table)
    cur.execute(query, {"nodes": nodes, "start": start})
    return {r["node_name"]: r["t"] for r in cur.fetchall() if r["t"] is not None}


def _rows_query(ctx: Context) -> sql.Composed:
    parts = _parts(ctx)
    conds = [
        parts["perf_known"],
        sql.SQL("{} AND {}").format(parts["perf_known"], parts["perf_good"]),
        parts["cap_known"],
        sql.SQL("{} AND {}").format(parts["cap_known"], parts["cap_good"]),
        *(
            sql.SQL("{} IS NOT NULL AND {} IS NULL").format(sql.Identifier(m), clean(m))
            for m in NODE_METRICS
        ),
    ]
    bits = sql.SQL(" | ").join(
        sql.SQL("(CASE WHEN {} THEN {} ELSE 0 END)").format(c, sql.Literal(1 << k))
        for k, c in enumerate(conds)
    )
    return sql.SQL(_ROWS_SQL).format(rows=window_rows(ctx.store), bits=bits, node_row=NODE_ROW)


# What the SLI query counts per node, in the order of a row's bits.
_COUNTED = ("perf_n", "perf_good", "cap_n", "cap_good", *(f"invalid:{m}" for m in NODE_METRICS))
_NODE_SHIFT = 32  # a kept row's value: node index << 32 | bits


def _by_node(hours: list[_Hour], n: int, after: int | None = None) -> tuple[np.ndarray, ...]:
    """The times of the hours' kept rows (after `after`) sorted by node and time, and
    where each of the `n` nodes' rows begin."""
    empty = np.zeros(0, np.int64)
    t = np.concatenate([h.t for h in hours] or [empty])
    node = np.concatenate([h.value for h in hours] or [empty]) >> _NODE_SHIFT
    if after is not None:
        node, t = node[t > after], t[t > after]
    order = np.lexsort((t, node))
    return t[order], np.searchsorted(node[order], np.arange(n + 1))


def _sums(value: np.ndarray, n: int) -> np.ndarray:
    """(node, counted) sums of kept rows' bits."""
    k = np.arange(len(_COUNTED))
    flags = (value[:, None] >> k) & 1
    index = ((value >> _NODE_SHIFT)[:, None] * len(_COUNTED) + k).ravel()
    sums = np.bincount(index, weights=flags.ravel(), minlength=n * len(_COUNTED))
    return sums.reshape(n, len(_COUNTED)).astype(np.int64)


@dataclass
class SliState:
    """The availability job's state between runs: the window's node rows kept per hour
    (`HourRows`), each reduced to its node, its time and the bits the SLI query counts, with
    per-node sums of whole hours; gaps and counts are computed from them: the same numbers
    as from scratch."""

    kept: HourRows = field(default_factory=HourRows)
    query: tuple[Any, sql.Composed] = (None, sql.Composed([]))  # the rows query, its key
    block: tuple[Any, tuple[np.ndarray, ...]] = (None, ())  # `_count`'s sorted middle hours

    @property
    def reread(self) -> int:
        return self.kept.reread

    def rows(
        self,
        ctx: Context,
        nodes: list[str],
        cpus: list[float | None],
        facts: dict[str, NodeFacts],
        since: dict[str, float],
        start: int,
        now: int,
    ) -> dict[str, dict[str, Any]]:
        index = {n: i for i, n in enumerate(nodes)}
        if self.query[0] != (ctx.store, ctx.config.sli):  # composing it costs a run's tenth
            self.query = ((ctx.store, ctx.config.sli), _rows_query(ctx))
        query = self.query[1]

        def read(cur: Cursor[dict[str, Any]], lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
            t: list[int] = []
            value: list[int] = []
            for first in range(0, len(nodes), NODES_PER_QUERY):
                batch = slice(first, first + NODES_PER_QUERY)
                params = {"start": lo, "now": hi, "nodes": nodes[batch], "cpus": cpus[batch]}
                cur.execute(query, params)
                for r in cur:
                    t.append(r["sample_time"])
                    value.append(index[r["node_name"]] << _NODE_SHIFT | r["bits"])
            return np.array(t, np.int64), np.array(value, np.int64)

        # the bits depend on the nodes, their CPU counts and the thresholds
        self.kept.refresh(ctx, (tuple(nodes), tuple(cpus), ctx.config.sli), start, now, read)
        before = self._before(nodes, start)
        if others := [n for n in nodes if n not in before]:
            with ctx.store.read() as cur:
                before |= _before(cur, ctx, others, start)
        return self._count(ctx, nodes, facts, since, start, now, before)

    def _before(self, nodes: list[str], start: int) -> dict[str, float]:
        """The newest node row at or before `start` of the nodes with one kept: the hour
        the window starts in is kept whole."""
        h = self.kept.hours.get(start // HOUR + 1)
        if h is None:
            return {}
        inside = h.t <= start
        t, node = h.t[inside], h.value[inside] >> _NODE_SHIFT
        newest = np.full(len(nodes), -1, np.int64)
        np.maximum.at(newest, node, t)
        return {nodes[i]: float(x) for i, x in enumerate(newest.tolist()) if x >= 0}

    def _count(
        self,
        ctx: Context,
        nodes: list[str],
        facts: dict[str, NodeFacts],
        since: dict[str, float],
        start: int,
        now: int,
        before: dict[str, float],
    ) -> dict[str, dict[str, Any]]:
        """What the SLI query returns per node, from the rows kept."""
        hours = self.kept.hours
        first = start // HOUR + 1
        newest = max(hours, default=first)
        # rows by node and time: the hours between the first and the newest sorted once
        # (their token goes when their rows change), those two every run
        middle = [hours[b] for b in sorted(hours) if first < b < newest]
        tokens = (self.kept.key, tuple(h.derived.setdefault("token", object()) for h in middle))
        if self.block[0] != tokens:
            self.block = (tokens, _by_node(middle, len(nodes)))
        t_mid, b_mid = self.block[1]
        edges = [hours[b] for b in {first, newest} if b in hours]
        t_edge, b_edge = _by_node(edges, len(nodes), after=start)
        # counts: whole hours' sums kept, the hour the window starts in row by row
        counted = np.zeros((len(nodes), len(_COUNTED)), np.int64)
        for bucket, h in hours.items():
            if bucket == first:
                counted += _sums(h.value[h.t > start], len(nodes))
            else:
                if "sums" not in h.derived:
                    h.derived["sums"] = _sums(h.value, len(nodes))
                counted += h.derived["sums"]
        per_node = counted.tolist()
        gap = float(ctx.config.sli.gap_intervals)
        out: dict[str, dict[str, Any]] = {}
        for i, name in enumerate(nodes):
            mine = np.concatenate(
                [t_edge[b_edge[i] : b_edge[i + 1]], t_mid[b_mid[i] : b_mid[i + 1]]]
            )
            lo, hi = 0, len(mine)
            iv, floor = float(facts[name].interval), since[name]
            prior = before.get(name)
            ends = [floor if prior is None else prior, now]
            times = np.unique(np.concatenate([mine.astype(np.float64), ends]))
            a, b = times[:-1], times[1:]
            gaps = b - a > gap * iv
            row: dict[str, Any] = {"node_name": name}
            if gaps.any():
                row["missing"] = float(np.maximum(0.0, b - np.maximum(a + iv, floor))[gaps].sum())
            if hi > lo:
                row["samples"] = int(hi - lo)
                row.update(zip(_COUNTED, per_node[i], strict=True))
            out[name] = row
        return out


def grade(
    availability: float,
    performance: float | None,
    capacity: float | None,
    critical: bool,
    cfg: SliConfig,
    enough: bool = True,
) -> str:
    """The contract's grade of three ratios (CRITICAL while a P1 threat is active; UNKNOWN
    without enough samples, unless availability alone is already POOR)."""
    if critical:
        return "CRITICAL"
    if availability <= cfg.acceptable:
        return "POOR"
    if not enough or performance is None or capacity is None:
        return UNKNOWN
    worst = min(availability, performance, capacity)
    if worst > cfg.excellent:
        return "EXCELLENT"
    if worst > cfg.good:
        return "GOOD"
    if worst > cfg.acceptable:
        return "ACCEPTABLE"
    return "POOR"


def system_availability_check(
    ctx: Context,
    *,
    hours: float,
    now: int,
    threats: list[Threat] | None = None,
    state: SliState | None = None,
    facts: dict[str, NodeFacts] | None = None,
) -> SliResult:
    """Availability, performance and capacity ratios and a grade per node remembered (seen
    within the emergency check's `forget_after_hours`); `threats` are the emergency check's
    and `facts` every node's `node_facts`, at the same `now`, when the caller already has
    them; `state`: the exporter's, kept between its runs (the same answer, reading only
    what changed)."""
    cfg = ctx.config.sli
    seconds = window_seconds(hours, HOUR, "hours")
    start = now - seconds
    forget = ctx.config.emergency.forget_after_hours * HOUR
    every = node_facts(ctx, now) if facts is None else facts
    facts = {n: f for n, f in every.items() if now - f.last <= forget}
    cpus = {} if ctx.cpu_count else cpu_count_of(ctx, now)
    nodes = sorted(facts)
    counts = [float(ctx.cpu_count or cpus.get(n) or "nan") for n in nodes]
    since = {n: float(max(start, facts[n].first)) for n in nodes}
    cpu_list = [None if math.isnan(c) else c for c in counts]
    if state is not None:
        rows = state.rows(ctx, nodes, cpu_list, facts, since, start, now)
    else:
        rows = _scratch_rows(ctx, nodes, cpu_list, facts, since, start, now)
    if threats is None:
        threats = emergency_health_check(ctx, now=now, facts=every)["threats"]
    critical = {t["node_name"] for t in threats if t["priority"] == "P1-CRITICAL"}

    result: list[NodeSli] = []
    for node in nodes:
        row = rows.get(node) or {}
        interval = facts[node].interval
        judged = now - since[node]
        missing = float(row.get("missing") or 0)
        availability = min(1.0, max(0.0, 1.0 - missing / judged)) if judged > 0 else 1.0
        expected = judged / interval
        performance = _ratio(row, "perf")
        capacity = _ratio(row, "cap")
        known = min(row.get("perf_n") or 0, row.get("cap_n") or 0)
        enough = known >= max(cfg.min_samples, cfg.min_sample_share * expected)
        result.append(
            {
                "node_name": node,
                "availability": round_float(availability),
                "performance": round_float(performance),
                "capacity": round_float(capacity),
                "grade": grade(availability, performance, capacity, node in critical, cfg, enough),
                "samples": row.get("samples") or 0,
                "expected_samples": int(expected),
                "interval_seconds": round(interval, 3),
                "data": "ok" if enough else "insufficient_data",
                "cpu_count": ctx.cpu_count or cpus.get(node),
                "critical_threats": [
                    t["check"]
                    for t in threats
                    if t["node_name"] == node and t["priority"] == "P1-CRITICAL"
                ],
                "invalid_values": {
                    k.split(":", 1)[1]: v for k, v in row.items() if k.startswith("invalid:") and v
                },
            }
        )
    return {
        "window": {"start": start, "end": now, "hours": hours},
        "thresholds": {
            "performance": {
                "cpu_pct": cfg.cpu_pct,
                "iowait_pct": cfg.iowait_pct,
                "load_per_cpu": cfg.load_per_cpu,
            },
            "capacity": {
                "mem_available_pct": cfg.mem_available_pct,
                "swap_used_mb": cfg.swap_used_mb,
            },
        },
        "nodes": result,
    }


def _ratio(row: dict[str, Any], prefix: str) -> float | None:
    """Good samples over known samples; None when nothing is known (unknown is not good)."""
    if not row.get(f"{prefix}_n"):
        return None
    return float(row[f"{prefix}_good"]) / row[f"{prefix}_n"]


# --------------------------------------------------------------------------- served

COMPLIANCE = gauge(
    "sli_compliance_ratio",
    "Share of the SLI window (default 24 h) in compliance, 0..1, per node and SLI.",
    ("node", "sli"),
    unit="percentunit",
)
HEALTH_GRADE = gauge(
    "health_grade", "1 for the node's current health grade, 0 for the others.", ("node", "grade")
)
HEALTH_SCORE = gauge(
    "health_score",
    "Health grade as a number: 4 excellent, 3 good, 2 acceptable, 1 poor, 0 critical; "
    "absent while the grade is unknown (too few samples).",
    NODE,
)


def ratios(n: SliRow) -> tuple[tuple[str, float | None], ...]:
    """(SLI name, ratio) of a node: the `sli` label values and what they measure."""
    return (
        ("availability", n["availability"]),
        ("performance", n["performance"]),
        ("capacity", n["capacity"]),
    )


def current_grade(n: NodeSli, critical: set[str] | None, cfg: SliConfig) -> str:
    """The node's grade as of the latest emergency check (CRITICAL follows the P1 threats of
    that check, not those of the SLI run)."""
    if critical is None:
        return n["grade"]
    availability = 1.0 if n["availability"] is None else n["availability"]
    enough = n["data"] == "ok"
    return grade(
        availability, n["performance"], n["capacity"], n["node_name"] in critical, cfg, enough
    )


def to_samples(result: SliResult, view: ResultView) -> Iterator[Sample]:
    emergency: EmergencyResult | None = view.results.get("emergency")
    critical = None if emergency is None else critical_nodes(emergency)
    for n in result["nodes"]:
        node = n["node_name"]
        for name, ratio in ratios(n):
            yield sample("sli_compliance_ratio", ratio, node=node, sli=name)
        grade_now = current_grade(n, critical, view.config.sli).lower()
        for g in (*GRADES, UNKNOWN.lower()):
            yield sample("health_grade", 1 if g == grade_now else 0, node=node, grade=g)
        if grade_now in GRADES:  # an unknown grade has no score: no series, never "poor"
            yield sample("health_score", GRADES.index(grade_now), node=node)


def render_text(r: SliResult, t: Text) -> None:
    t.title(f"📊 SLI COMPLIANCE - last {r['window']['hours']:g} h ({when(r['window']['end'])})")
    sli_table(r["nodes"], t)


def sli_table(nodes: Sequence[SliRow], t: Text) -> None:
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


ANALYSIS = Analysis[SliResult](
    name="availability",
    title="SLI compliance (availability, performance, capacity) and a grade per node",
    run=system_availability_check,
    render_text=render_text,
    window=Window("hours", lambda c: c.sli.window_hours),
    serve=Served(
        refresh_seconds=60,
        metrics=(COMPLIANCE, HEALTH_GRADE, HEALTH_SCORE),
        to_samples=to_samples,
        depends_on=("emergency",),
    ),
    aliases=("sli",),
    incremental=SliState,
)
