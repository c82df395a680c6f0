"""Emergency health check: what is about to break right now, node by node.

The window's median of each metric over the last few minutes of node rows (so one odd
sample neither raises nor hides a threat) plus the newest node row of every node
(freshness first: a silent node is the worst threat of all). The exporter keeps the
window's rows between its runs and reads only the new ones ("kept rows" below).

Freshness is judged on node rows only (container rows still arriving do not prove the node
sampler alive) and in multiples of the node's own sampling interval, learned from its recent
history, with floors in seconds: a healthy node sampled every 5 minutes is never stale.
A node silent longer than `forget_after_hours` is not dropped silently: it is listed as
forgotten (its own metric), so "dead" never reads as "resolved".

Disk-full and inode-full are checked where the table has the optional host-fact columns
(the fullest filesystem's used share); on an older table those two checks stay at level 0.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypedDict

import numpy as np
from psycopg import Cursor, sql
from psycopg.rows import tuple_row

from ..config import EmergencyConfig, Levels
from ..metricdef import NODE, gauge
from ..render import PRIORITY_COLOUR, STATUS_COLOUR, Text, when
from ..samples import Sample, sample
from ..schema import DISK_USED, INODES_USED, present_columns
from ..vocabulary import Check as CheckName
from ..vocabulary import Priority
from .common import HOUR, VALID_RANGES, Context, clean, round_float
from .hosts import cpu_count_of, newest_rows, read_recent, rendered, window_counts
from .unit import Analysis, ResultView, Served

LEVEL = {None: 0, "P3-ADVISORY": 1, "P2-WARNING": 2, "P1-CRITICAL": 3}
CHECKS = tuple(c.value for c in CheckName)
# the checks of the window's figures; a node's checks are these, then "stale"
FIGURES = tuple(c for c in CHECKS if c != "stale")


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


# Optional columns (host facts) read when the table has them: check name -> column.
_FACTS = {"disk": DISK_USED.name, "inodes": INODES_USED.name}


# --------------------------------------------------------------------------- kept rows
# A warm run reads only the rows stamped after the previous run (less a margin for rows
# written a little late) and keeps the window's rows between runs. Rows that arrive later
# than that, or vanish, are found by the newest-rows read of the same window, which counts
# each node's rows and adds up their stamps: a node whose count or sum differs from the
# kept rows' is read again whole. Rows changed in place (UPDATE) are not seen.
LATE_MARGIN = 15  # seconds

# The rows of (lo, now], one per (node, container, sample_time) as `window_rows` keeps them
# (of duplicates, the copy with the most valid values), with their count of copies.
_KEPT_SQL = """
SELECT node_name, container_name, sample_time, node_flag, copies, {values}
  FROM (SELECT DISTINCT ON (node_name, container_name, sample_time) *,
               count(*) OVER (PARTITION BY node_name, container_name, sample_time) AS copies
          FROM {t}
         WHERE sample_time > %(lo)s AND sample_time <= %(now)s AND node_name IS NOT NULL
           AND {shard} AND (%(nodes)s::text[] IS NULL OR node_name = ANY(%(nodes)s))
         ORDER BY node_name, container_name, sample_time, {quality} DESC) w
"""


def _kept_query(ctx: Context, columns: tuple[str, ...]) -> sql.Composed:
    return sql.SQL(_KEPT_SQL).format(
        values=sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(clean(c), sql.Identifier(c)) for c in columns
        ),
        t=ctx.store.table,
        shard=ctx.store.shard_filter,
        quality=sql.SQL("num_nonnulls({})").format(
            sql.SQL(", ").join(clean(c) for c in VALID_RANGES)
        ),
    )


_EMPTY_TEXT = np.zeros(0, object)


@dataclass
class KeptRows:
    """The rows of a moving window, kept between runs (notes above); `values` holds each
    row's `columns` as `clean` reads them, NaN for NULL."""

    key: Any = None
    last: int | None = None  # the previous run's now
    node: np.ndarray = field(default_factory=lambda: _EMPTY_TEXT)
    container: np.ndarray = field(default_factory=lambda: _EMPTY_TEXT)
    t: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    is_node: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # node_flag TRUE
    is_other: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # FALSE
    copies: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    values: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    reread: int = 0  # nodes read again whole (for tests)
    changed: set[str] | None = None  # nodes whose rows the last refresh changed (None: all)

    def refresh(
        self,
        cur: Cursor[dict[str, Any]],
        ctx: Context,
        columns: tuple[str, ...],
        start: int,
        now: int,
    ) -> None:
        """Bring the rows of (start, now] up to date; `changed` then names the nodes whose
        rows changed (None: all may have)."""
        key = (ctx.store.table, columns)
        if key != self.key:
            self.key, self.last = key, None
        changed: set[str] | None = set()
        if self.last is None or self.last > now or self.last - LATE_MARGIN < start:
            self._keep(np.zeros(len(self.t), bool))
            lo, changed, margin = start, None, set()
        else:
            lo = self.last - LATE_MARGIN
            leaving = self.t <= start
            margin = self._rows(self.t > lo)
            changed = set(self.node[leaving].tolist())
            self._keep((self.t > start) & (self.t <= lo))
        rows = self._read(cur, ctx, lo, now, None)
        if changed is not None:
            last = self.last or lo
            changed.update(r[0] for r in rows if r[2] > last)
            again = {_row(r) for r in rows if r[2] <= last}
            changed.update(r[0] for r in again ^ margin)  # the margin's rows, read again
        self._add(rows)
        check = _window_counts(cur, ctx, start, now)
        names, inverse = np.unique(self.node.astype(str), return_inverse=True)
        n = np.bincount(inverse, self.copies, len(names))
        s = np.bincount(inverse, self.copies * self.t, len(names))
        sums = zip(n.astype(np.int64).tolist(), s.astype(np.int64).tolist(), strict=True)
        kept = dict(zip(names.tolist(), sums, strict=True))
        wrong = (
            []
            if kept == check
            else sorted(x for x in {*check, *kept} if check.get(x) != kept.get(x))
        )
        if wrong:
            self.reread += len(wrong)
            self._keep(~np.isin(self.node, wrong))
            self._add(self._read(cur, ctx, start, now, wrong))
            if changed is not None:
                changed.update(wrong)
        self.last, self.changed = now, changed

    def _rows(self, mask: np.ndarray) -> set[tuple[Any, ...]]:
        """The rows under `mask` as `_row` makes them from a read: a late row, or a better
        copy of one, changes its node's set (a row changed in place is not seen)."""
        return set(
            zip(
                self.node[mask].tolist(),
                self.container[mask].tolist(),
                self.t[mask].tolist(),
                self.copies[mask].tolist(),
                strict=True,
            )
        )

    def _read(
        self,
        cur: Cursor[dict[str, Any]],
        ctx: Context,
        lo: int,
        now: int,
        nodes: list[str] | None,
    ) -> list[tuple[Any, ...]]:
        """The rows of (lo, now] (of `nodes`; None: all), as tuples: building a dict per
        row was a fifth of a warm check."""
        columns = self.key[1]
        query = rendered(ctx, cur, ("kept", columns), lambda: _kept_query(ctx, columns))
        with cur.connection.cursor(row_factory=tuple_row) as rows:
            rows.execute(query, {"lo": lo, "now": now, "nodes": nodes})
            return rows.fetchall()

    def _keep(self, mask: np.ndarray) -> None:
        self.node, self.container, self.t = self.node[mask], self.container[mask], self.t[mask]
        self.is_node, self.is_other = self.is_node[mask], self.is_other[mask]
        self.copies = self.copies[mask]
        self.values = self.values[mask] if len(self.values) else self.values

    def _add(self, rows: list[tuple[Any, ...]]) -> None:
        """Rows as `_KEPT_SQL` returns them: node, container, time, node flag, copies, then
        the values."""
        if not rows:
            return
        node, container, t, flags, copies = list(zip(*rows, strict=True))[:5]
        self.node = np.concatenate([self.node, np.array(node, object)])
        self.container = np.concatenate([self.container, np.array(container, object)])
        self.t = np.concatenate([self.t, np.array(t, np.int64)])
        self.is_node = np.concatenate([self.is_node, np.array([f is True for f in flags])])
        self.is_other = np.concatenate([self.is_other, np.array([f is False for f in flags])])
        self.copies = np.concatenate([self.copies, np.array(copies, np.int64)])
        new = np.array([r[5:] for r in rows], np.float64).reshape(-1, len(self.key[1]))
        self.values = np.concatenate([self.values, new]) if len(self.values) else new


def _row(r: tuple[Any, ...]) -> tuple[Any, ...]:
    return r[0], r[1], r[2], r[4]  # node, container, time, copies


def _window_counts(
    cur: Cursor[dict[str, Any]], ctx: Context, start: int, now: int
) -> dict[str, tuple[int, int]]:
    """{node: (rows, sum of their stamps)} in (start, now], from the newest-rows read of
    the same window when `node_facts` made it."""
    counts = window_counts(ctx, start, now)
    if counts is None:
        counts = read_recent(cur, ctx, start, now)[1]
    return counts


def medians(codes: np.ndarray, groups: int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(median, count of values) per group and column, NaN (and 0) where a group has no
    value: `percentile_cont(0.5)` of the values that are not NaN."""
    size = np.bincount(codes, minlength=groups)
    order = np.argsort(codes, kind="stable")
    codes, values = codes[order], values[order]
    position = np.arange(len(codes)) - (np.cumsum(size) - size)[codes]
    table = np.full((groups, max(int(size.max(initial=0)), 1), values.shape[1]), np.nan)
    table[codes, position] = values
    table.sort(axis=1)  # NaN last
    n = (~np.isnan(table)).sum(axis=1)
    rank = 0.5 * np.maximum(n - 1, 0)
    lo, hi = np.floor(rank).astype(np.int64), np.ceil(rank).astype(np.int64)
    a = np.take_along_axis(table, lo[:, None, :], axis=1)[:, 0, :]
    b = np.take_along_axis(table, hi[:, None, :], axis=1)[:, 0, :]
    return np.where(n > 0, a + (b - a) * (rank - lo), np.nan), n


def slopes(codes: np.ndarray, groups: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """`regr_slope(y, x)` per group over the rows where y is not NaN (NaN: fewer than two
    distinct x)."""
    ok = ~np.isnan(y)
    codes, x, y = codes[ok], x[ok], y[ok]
    n = np.bincount(codes, minlength=groups).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.bincount(codes, x, groups) / n
        my = np.bincount(codes, y, groups) / n
        dx, dy = x - mx[codes], y - my[codes]
        sxx = np.bincount(codes, dx * dx, groups)
        sxy = np.bincount(codes, dx * dy, groups)
        return np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1), np.nan)


def _number(x: float) -> float | None:
    return None if x != x else x  # NaN: unknown


# The columns a check reads; network errors and drops are summed, memory is a ratio.
_CHECK_COLUMNS = (
    "cpu_total_pct",
    "cpu_iowait_pct",
    "mem_available_mb",
    "mem_total_mb",
    "temperature_c",
    "load_1m",
    "swap_used_mb",
    *_NET,
)


def _window_values(
    kept: KeptRows, facts: tuple[str, ...], only: set[str] | None = None
) -> dict[str, dict[str, Any]]:
    """The window's figures per node from the kept node rows, as the check reads them:
    {node: {"samples", "cpu", "cpu_n", ...}} (None where unknown); of the nodes `only`
    names (None: all)."""
    mask = kept.is_node
    if only is not None:
        mask = mask & np.isin(kept.node, list(only))
    if not mask.any():
        return {}
    names, codes = np.unique(kept.node[mask].astype(str), return_inverse=True)
    columns = kept.key[1]
    v = kept.values[mask]

    def col(name: str) -> np.ndarray:
        return v[:, columns.index(name)]

    total = col("mem_total_mb")
    with np.errstate(invalid="ignore", divide="ignore"):
        memory = np.where(total > 0, 100.0 * col("mem_available_mb") / total, np.nan)
    nets = [col(c) for c in _NET]
    net_any = ~np.all(np.isnan(np.stack(nets)), axis=0)
    net = np.nan_to_num(nets[0])
    for x in nets[1:]:
        net = net + np.nan_to_num(x)
    median_of = {
        "cpu": col("cpu_total_pct"),
        "iowait": col("cpu_iowait_pct"),
        "memory": memory,
        "temperature": col("temperature_c"),
        "load": col("load_1m"),
        "network_errors": np.where(net_any, net, np.nan),
        **{f: col(_FACTS[f]) for f in facts},
    }
    counted = {
        "cpu": col("cpu_total_pct"),
        "iowait": col("cpu_iowait_pct"),
        "memory": col("mem_available_mb"),
        "temperature": col("temperature_c"),
        "load": col("load_1m"),
        "network_errors": np.where(net_any, 0.0, np.nan),
        "swap": col("swap_used_mb"),
        **{f: col(_FACTS[f]) for f in facts},
    }
    groups = len(names)
    med, _ = medians(codes, groups, np.stack(list(median_of.values()), axis=1))
    counts = np.stack(
        [np.bincount(codes, ~np.isnan(x), groups) for x in counted.values()], axis=1
    ).astype(np.int64)
    swap = slopes(codes, groups, kept.t[mask] / 60.0, col("swap_used_mb"))
    samples = np.bincount(codes, minlength=groups)
    out: dict[str, dict[str, Any]] = {}
    med_rows, count_rows = med.tolist(), counts.tolist()
    swaps, sample_counts = swap.tolist(), samples.tolist()
    median_names, count_names = list(median_of), [f"{name}_n" for name in counted]
    for i, node in enumerate(names.tolist()):
        row: dict[str, Any] = {"samples": sample_counts[i], "swap": _number(swaps[i])}
        row.update(zip(median_names, map(_number, med_rows[i]), strict=True))
        row.update(zip(count_names, count_rows[i], strict=True))
        out[node] = row
    return out


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
    newest = {n: t for n, (_, _, t) in rows.items() if t is not None}
    hourly = {n: t // HOUR * HOUR for n, t in newest.items()}
    if len(cache) > 100_000:
        cache.clear()
    todo = {n: a for n, a in hourly.items() if (n, a, history, True) not in cache}
    if todo:  # once an hour: a warm run opens no transaction here
        with ctx.store.read() as cur:
            for node, step in _intervals(cur, ctx, todo, history).items():
                cache[(node, todo[node], history, True)] = step
    young = {n: newest[n] for n, a in hourly.items() if cache[(n, a, history, True)] <= 0}
    todo = {n: t for n, t in young.items() if (n, t, history, False) not in cache}
    if todo:
        with ctx.store.read() as cur:
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


@dataclass
class EmergencyState:
    """The exporter's state between runs: the window's rows, and each node's checks with
    the figures they were graded from (the results share them: nothing changes a result)."""

    kept: KeptRows = field(default_factory=KeptRows)
    figures: tuple[Any, dict[str, dict[str, Any]]] = (None, {})  # each node's, by `_values`
    config: EmergencyConfig | None = None
    checks: dict[str, tuple[Any, list[Threat], list[CheckLevel]]] = field(default_factory=dict)


def emergency_health_check(
    ctx: Context,
    *,
    now: int,
    facts: dict[str, NodeFacts] | None = None,
    state: EmergencyState | None = None,
) -> EmergencyResult:
    """Threats of the last `window_seconds` per node, most severe first; `facts`: every
    node's `node_facts` at `now` when the caller already has them; `state`: the exporter's,
    kept between its runs (the same answer, reading only the new rows). Without one, the
    context's own state is used when no other thread is using it (a library's repeated
    checks, the SLI's each minute), else a new one."""
    if state is None:
        lock, shared = ctx.cache("emergency_state", lambda: (threading.Lock(), EmergencyState()))
        if lock.acquire(blocking=False):
            try:
                return _check(ctx, now, facts, shared)
            finally:
                lock.release()
    return _check(ctx, now, facts, state or EmergencyState())


def _check(
    ctx: Context, now: int, facts: dict[str, NodeFacts] | None, state: EmergencyState
) -> EmergencyResult:
    cfg = ctx.config.emergency
    start = now - cfg.window_seconds
    facts = node_facts(ctx, now) if facts is None else facts
    forget = cfg.forget_after_hours * HOUR
    forgotten = sorted(n for n, f in facts.items() if now - f.last > forget)
    live = {n: f for n, f in facts.items() if now - f.last <= forget}
    kept = KeptRows() if state is None else state.kept
    with ctx.store.read() as cur:
        present = present_columns(cur, ctx.store, tuple(_FACTS.values()))
        host_facts = tuple(f for f, column in _FACTS.items() if column in present)
        columns = (*_CHECK_COLUMNS, *(_FACTS[f] for f in host_facts))
        kept.refresh(cur, ctx, columns, start, now)
    if state is None:
        recent = _window_values(kept, host_facts)
    else:  # the figures of the nodes whose rows changed, computed again
        changed = None if state.figures[0] != (kept.key, host_facts) else kept.changed
        recent = state.figures[1] if changed is not None else {}
        if changed is None or changed:
            for node in changed or ():
                recent.pop(node, None)
            recent.update(_window_values(kept, host_facts, changed))
        state.figures = ((kept.key, host_facts), recent)
    cpus = cpu_count_of(ctx, now) if ctx.cpu_count is None else {}

    checks: list[Threat] = []
    levels: list[CheckLevel] = []
    grades: dict[tuple[str, float | None], Grading] = {}
    memo = {} if state is None or state.config is not cfg else state.checks
    graded: dict[str, tuple[Any, list[Threat], list[CheckLevel]]] = {}
    for node in sorted(live):
        f = live[node]
        row, count = recent.get(node), cpus.get(node, ctx.cpu_count)
        # the same figures (kept between runs, the same object) grade the same
        hit = memo.get(node)
        if hit is None or hit[0][0] is not row or hit[0][1:] != (count, f.interval):
            values = _values(row, count, cfg)
            mine = []
            for name in FIGURES:
                if (grading := grades.get((name, None))) is None:
                    grading = grades[name, None] = _grading(CATALOGUE[name].levels(cfg))
                mine.append(_evaluate(node, name, *values.get(name, (None, 0)), cfg, grading))
            hit = ((row, count, f.interval), mine, [_level(c) for c in mine])
        graded[node] = hit
        if (grading := grades.get(("stale", f.interval))) is None:
            levels_of = CATALOGUE["stale"].levels(cfg, f.interval)
            grading = grades["stale", f.interval] = _grading(levels_of)
        # never a node row: as old as the node's first row of any kind
        age = now - (f.first if f.last_node is None else f.last_node)
        newest = _evaluate(node, "stale", age, 1, cfg, grading)
        checks.extend(hit[1])
        checks.append(newest)
        levels.extend(hit[2])
        levels.append(_level(newest))
    if state is not None:  # a node's checks are built again only when its figures change
        state.config, state.checks = cfg, graded

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
    stale = {c["node_name"] for c in checks[len(FIGURES) :: len(FIGURES) + 1] if c["level"]}
    return {
        "status": status if live else "NO_DATA",
        "window": {"start": start, "end": now, "seconds": cfg.window_seconds},
        "nodes": len(live),
        "fresh_nodes": len(live) - len(stale),
        "forgotten": forgotten,
        "threats": threats,
        "immediate_actions": actions,
        "checks": levels,
    }


def _level(c: Threat) -> CheckLevel:
    return {
        "node_name": c["node_name"],
        "check": c["check"],
        "level": c["level"],
        "value": c["value"],
        "samples": c["samples"],
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
    low = cfg.mem_available_pct  # any priority at all: the P3 level reached (levels worsen)
    memory = row["memory"]
    memory_low = memory is not None and (
        memory >= low.p3 if low.higher_is_worse else memory <= low.p3
    )
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
    incremental=EmergencyState,
)
