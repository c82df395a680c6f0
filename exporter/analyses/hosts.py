"""Facts about each node that several analyses need: when it reported first and last, how
often it reports, and how many CPUs it has."""

from __future__ import annotations

import logging
import math
import multiprocessing
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from psycopg import sql

from ..config import Config
from ..partitions import read_layout
from ..schema import CPU_COUNT, has_column
from ..vocabulary import Check
from .common import DAY, Context, clean, snap_cpu_count

if TYPE_CHECKING:
    from psycopg import Cursor

log = logging.getLogger(__name__)

Spans = dict[str, tuple[int, int]]  # node: (first sample time, newest sample time)

# Loose index scan over (node_name, sample_time): one index probe per node instead of a
# scan of the table's history (see docs/performance.md). The shard filter
# applies to the nodes found, not inside the walk (there it would read the skipped nodes).
# {walk} bounds the walk: nothing on a plain table, where a time bound would make each probe
# read a node's old index entries; `sample_time >= floor` on a table partitioned by time,
# where it lets the planner drop the partitions before `floor` (otherwise every step of the
# walk probes every partition, and planning the per-node reads over every partition costs
# more than running them). {span} bounds those reads the same way.
_SPAN_SQL = """
WITH RECURSIVE nodes AS (
    (SELECT node_name FROM {t} WHERE node_name IS NOT NULL {walk}
      ORDER BY node_name LIMIT 1)
    UNION ALL
    SELECT (SELECT n.node_name FROM {t} n WHERE n.node_name > nodes.node_name {walk}
             ORDER BY n.node_name LIMIT 1)
      FROM nodes WHERE nodes.node_name IS NOT NULL
)
SELECT node_name,
       (SELECT min(sample_time) FROM {t} s
         WHERE s.node_name = nodes.node_name AND s.sample_time <= %(now)s {span})
           AS first_seen,
       (SELECT max(sample_time) FROM {t} s
         WHERE s.node_name = nodes.node_name AND s.sample_time <= %(now)s {span})
           AS last_seen
  FROM nodes WHERE node_name IS NOT NULL AND {shard}
"""
_WALK_FLOOR = "AND sample_time >= %(floor)s AND sample_time <= %(now)s"
_SPAN_FLOOR = "AND s.sample_time >= %(floor)s"


def _spans(cur: Cursor[dict[str, Any]], ctx: Context, now: int, floor: int | None) -> Spans:
    walk, span = ("", "") if floor is None else (_WALK_FLOOR, _SPAN_FLOOR)
    query = sql.SQL(_SPAN_SQL).format(
        t=ctx.store.table, shard=ctx.store.shard_predicate, walk=sql.SQL(walk), span=sql.SQL(span)
    )
    cur.execute(query, {"now": now, "floor": floor})
    return {
        r["node_name"]: (int(r["first_seen"]), int(r["last_seen"]))
        for r in cur.fetchall()
        if r["last_seen"] is not None
    }


def node_spans(ctx: Context, now: int, *, since: int | None = None) -> Spans:
    """{node: (first sample time, newest sample time)} over rows up to `now`, sorted by node,
    of the nodes the node guard keeps (`guard_nodes`).

    `since` is a promise that nodes silent since then matter less (the emergency check only
    lists them as forgotten): on a table partitioned by time the walk then reads only the
    partitions from the one holding `since` on; those nodes, and each node's first sample,
    come from a full walk cached per hour. The answer is the same; rows that arrive late
    and older than `since` count within the hour."""
    guard = ctx.store.node_guard
    spans = all_node_spans(ctx, now, since=since)
    with guard.lock:
        kept, key = guard.kept, guard.key
        if key is not None and key[2] != len(spans):
            guard.key = None  # the table's node count changed: choose again before the next run
    return spans if kept is None else {n: s for n, s in spans.items() if n in kept}


def all_node_spans(ctx: Context, now: int, *, since: int | None = None) -> Spans:
    """`node_spans` of every node of the shard, whatever the node guard keeps."""
    hour = now // 3600
    with ctx.store.read() as cur:
        if since is None:
            return _spans(cur, ctx, now, None)
        cached = ctx.caches.get("node_spans")
        if not cached or cached[0] != hour or cached[1] > now:
            layout = read_layout(cur, ctx.store.table)
            starts = [int(p.lo) for p in layout.ranges if math.isfinite(p.lo)]
            cached = (hour, now, starts if layout.by_time else None, _spans(cur, ctx, now, None))
            ctx.caches["node_spans"] = cached
            if cached[2] is None:
                return cached[3]
        if cached[2] is None:  # not partitioned by time: the unbounded walk is the fast one
            return _spans(cur, ctx, now, None)
        recent = _spans(cur, ctx, now, max((lo for lo in cached[2] if lo <= since), default=since))
    full = cached[3]
    spans = {n: s for n, s in full.items() if n not in recent and s[1] <= since}
    for node, (first, last) in recent.items():
        spans[node] = (min(first, full[node][0]) if node in full else first, last)
    return dict(sorted(spans.items()))


# The first and newest row, and the newest node row, of each node with a row in the
# window: one range read of the (sample_time) index (on a partitioned table, of the
# partitions the window touches) instead of three index probes per node.
_RECENT_SQL = """
SELECT node_name, min(sample_time) AS first, max(sample_time) AS last,
       max(sample_time) FILTER (WHERE node_flag IS TRUE) AS last_node,
       count(*) AS n, sum(sample_time) AS s
  FROM {t} WHERE sample_time > %(start)s AND sample_time <= %(now)s
   AND node_name IS NOT NULL AND {shard}
 GROUP BY node_name
"""

# The first row (of the nodes new since the walk) and the newest row (of those and the
# silent ones) of the nodes given: an index probe each. A silent node's newest is looked
# for from its newest known row on, so that on a partitioned table the executor skips the
# older partitions.
_PROBE_SQL = """
SELECT p.node_name,
       CASE WHEN p.new THEN (SELECT min(sample_time) FROM {t} s
         WHERE s.node_name = p.node_name AND s.sample_time <= %(now)s) END AS first,
       CASE WHEN p.new THEN (SELECT max(sample_time) FROM {t} s
         WHERE s.node_name = p.node_name AND s.sample_time <= %(now)s)
       ELSE (SELECT max(sample_time) FROM {t} s
         WHERE s.node_name = p.node_name AND s.sample_time <= %(now)s
           AND s.sample_time >= p.floor) END AS last
  FROM unnest(%(nodes)s::text[], %(new)s::boolean[], %(floors)s::bigint[])
       AS p(node_name, new, floor)
"""

# The newest node row of each node given: a backward walk of its index entries.
# `since` (NULL: none) lets the planner skip older partitions; nodes without a node row
# since then are asked again without it.
_LAST_NODE_SQL = """
SELECT p.node_name,
       (SELECT max(sample_time) FROM {t} s
         WHERE s.node_name = p.node_name AND s.node_flag IS TRUE
           AND (%(since)s::bigint IS NULL OR s.sample_time > %(since)s)
           AND s.sample_time <= %(now)s) AS last_node
  FROM unnest(%(nodes)s::text[]) AS p(node_name)
"""


def rendered(
    ctx: Context, cur: Cursor[dict[str, Any]], name: Any, compose: Callable[[], sql.Composable]
) -> bytes:
    """The query `compose()` as bytes, kept per `name` and node-guard choice (which
    `Store.shard_filter` renders): turning a composed query into bytes on every run cost
    more Python than running it."""
    kept = ctx.store.node_guard.kept
    cache: dict[Any, tuple[Any, bytes]] = ctx.cache("rendered_queries", dict)
    hit = cache.get(name)
    if hit is None or hit[0] is not kept:
        hit = cache[name] = (kept, compose().as_bytes(cur))
    return hit[1]


Newest = dict[str, tuple[int, int, int | None]]  # node: (first row, newest, newest node row)
Counts = dict[str, tuple[int, int]]  # node: (rows, sum of their stamps)


def read_recent(
    cur: Cursor[dict[str, Any]], ctx: Context, start: int, now: int
) -> tuple[dict[str, dict[str, Any]], Counts]:
    """The `_RECENT_SQL` rows of (start, now] by node, and each node's rows and sum of
    their stamps (kept for `window_counts` at the same window)."""
    query = rendered(
        ctx,
        cur,
        "recent",
        lambda: sql.SQL(_RECENT_SQL).format(t=ctx.store.table, shard=ctx.store.shard_filter),
    )
    cur.execute(query, {"start": start, "now": now})
    recent = {r["node_name"]: r for r in cur.fetchall()}
    counts = {n: (int(r["n"]), int(r["s"])) for n, r in recent.items()}
    ctx.caches["window_counts"] = (start, now, counts)
    return recent, counts


def window_counts(ctx: Context, start: int, now: int) -> Counts | None:
    """`read_recent`'s counts of (start, now] if it was the last window read."""
    cached = ctx.caches.get("window_counts")
    return cached[2] if cached and cached[:2] == (start, now) else None


def _last_node_rows(
    cur: Cursor[dict[str, Any]],
    ctx: Context,
    nodes: list[str],
    now: int,
    since: int,
    again: set[str] | None = None,
) -> dict[str, int | None]:
    """{node: its newest node row}, looked for after `since`, then without the bound for
    the nodes in `again` (None: all) that have none there."""
    if not nodes:
        return {}
    query = sql.SQL(_LAST_NODE_SQL).format(t=ctx.store.table)
    cur.execute(query, {"nodes": nodes, "now": now, "since": since})
    lasts = {r["node_name"]: r["last_node"] for r in cur.fetchall()}
    if older := sorted(n for n, t in lasts.items() if t is None and (again is None or n in again)):
        cur.execute(query, {"nodes": older, "now": now, "since": None})
        lasts.update((r["node_name"], r["last_node"]) for r in cur.fetchall())
    return {n: None if t is None else int(t) for n, t in lasts.items()}


def newest_rows(ctx: Context, now: int, *, window: int, since: int) -> Newest:
    """{node: (first row, newest row, newest node row or None)} up to `now`, of the nodes
    `node_spans` lists, sorted by node.

    Every node, its first row and the newest rows of the nodes silent since `since` come
    from a walk of the whole index cached per hour (`since` is a promise that those nodes
    matter less: they are forgotten); a warm run reads the rows of the last `window`
    seconds only, and probes the index for the few nodes that are not forgotten but have
    no row (or no node row) there. The answer is the same as a walk's, except that rows
    arriving late, older than `since` or than a node's first row, and a new node whose
    every row is older than the window, count from the next hour's walk."""
    hour = now // 3600
    table = ctx.store.table
    guard = ctx.store.node_guard
    with guard.lock:
        kept = guard.kept
    cached = ctx.caches.get("newest_walk")
    with ctx.store.read() as cur:
        if not cached or cached[0] != hour or cached[1] > now:
            spans = _spans(cur, ctx, now, None)
            lasts = _last_node_rows(cur, ctx, sorted(spans), now, since)
            walked = {n: (f, last, lasts.get(n)) for n, (f, last) in spans.items()}
            cached = ctx.caches["newest_walk"] = (hour, now, walked)
        walked = cached[2]
        count = len(walked)
        if kept is not None:
            walked = {n: w for n, w in walked.items() if n in kept}
        recent = read_recent(cur, ctx, now - window, now)[0]
        new = [n for n in recent if n not in walked]
        count += len(new)
        # nodes not forgotten without a row in the window: a late row may have come
        silent = [n for n, w in walked.items() if n not in recent and w[1] >= since]
        probed = {}
        if new or silent:
            cur.execute(
                sql.SQL(_PROBE_SQL).format(t=table),
                {
                    "nodes": new + silent,
                    "new": [True] * len(new) + [False] * len(silent),
                    "floors": [0] * len(new) + [walked[n][1] for n in silent],
                    "now": now,
                },
            )
            probed = {r["node_name"]: r for r in cur.fetchall()}
        answer: Newest = {}
        for node in sorted({*walked, *recent}):
            first, last, last_node = walked.get(node, (0, 0, None))
            if node in probed and probed[node]["last"] is not None:
                first = int(probed[node]["first"]) if node in recent else first
                last = int(probed[node]["last"])
            if (r := recent.get(node)) is not None:
                last = int(r["last"])
                if r["last_node"] is not None:
                    last_node = int(r["last_node"])
            answer[node] = (first, last, last_node)
        quiet = sorted(
            n
            for n, (_, last, _) in answer.items()
            if last >= since and (n not in recent or recent[n]["last_node"] is None)
        )
        # newer node rows than the walk's are after `since`; new nodes are looked for whole
        lasts = _last_node_rows(cur, ctx, quiet, now, since, again=set(new))
        for node, last_node in lasts.items():
            if last_node is not None or node not in walked:
                answer[node] = (*answer[node][:2], last_node)
    # known from now on as if walked (a new node is probed once silent, a silent node from
    # its newest row); the walk's `now` moves on with them, so a step back walks again
    cached[2].update(answer)
    latest = ctx.caches.get("newest_walk") or cached
    ctx.caches["newest_walk"] = (hour, max(now, latest[1]), cached[2])
    with guard.lock:
        if guard.key is not None and guard.key[2] != count:
            guard.key = None  # the table's node count changed: choose again before the next run
    return answer


# --------------------------------------------------------------------------- node guard
# A node the exporter serves costs at least one series per emergency check, its
# newest-sample time and its `node_forgotten` (docs/reliability.md, "The node guard"), so a
# fleet with more such nodes than max_series / NODE_MIN_SERIES can serve no more than that
# many whatever the analyses find: the others need not be read at all. Which nodes are
# kept must hold against a writer of junk names: nodes that reported in the last
# GUARD_RECENT seconds first, then the longest reporting (a sampler writing for days
# outranks a name with 3 rows), then by name so the choice is stable. It is made again
# every GUARD_SECONDS (one span walk, bounded to the recent partitions on a partitioned
# table) and whenever `exporter.max_nodes` or the table's node count changes.
NODE_MIN_SERIES = len(Check) + 2
GUARD_SECONDS = 600
GUARD_RECENT = 3600


def node_limit(config: Config) -> int:
    """`exporter.max_nodes`, else the most nodes `exporter.max_series` can serve."""
    explicit = config.exporter.max_nodes
    if explicit is not None:
        return int(explicit)
    return max(1, config.exporter.max_series // NODE_MIN_SERIES)


def rank_nodes(spans: Spans, now: int) -> list[str]:
    """Nodes in the order the guard keeps them (module notes above)."""

    def key(node: str) -> tuple[bool, int, str]:
        first, last = spans[node]
        return (last < now - GUARD_RECENT, first - last, node)

    return sorted(spans, key=key)


def guard_nodes(ctx: Context, now: int) -> None:
    """Choose the nodes the analyses read (`Store.node_guard`) if the choice is due; called
    before every analysis run."""
    guard = ctx.store.node_guard
    limit = node_limit(ctx.config)
    with guard.lock:
        if guard.key is not None and guard.key[:2] == (now // GUARD_SECONDS, limit):
            return
    # read without the lock: runs never queue behind a walk (or a database that is down,
    # which would hold every run, and a shutdown, for a connect timeout each); two runs
    # that both find the choice due make the same one
    spans = all_node_spans(ctx, now, since=now - GUARD_RECENT)
    key = (now // GUARD_SECONDS, limit, len(spans))
    if len(spans) <= limit:
        kept, ignored = None, 0
    else:
        kept, ignored = frozenset(rank_nodes(spans, now)[:limit]), len(spans) - limit
    with guard.lock:
        before = guard.ignored
        guard.set(kept, ignored, key)
    if ignored != before:
        log_nodes_ignored(ignored, len(spans), limit)


def log_nodes_ignored(ignored: int, nodes: int, limit: int) -> None:
    """One line per change of the count; a warning in the exporter's own process only (the
    worker process makes the same choice from the same table)."""
    level = logging.WARNING if multiprocessing.parent_process() is None else logging.DEBUG
    if ignored:
        log.log(
            level,
            "node guard (exporter.max_nodes %d): %d of %d nodes not analysed, those that "
            "reported least recently and for the shortest time first; raise --max-series "
            "or --max-nodes, shard the exporter, or remove the junk node names",
            limit,
            ignored,
            nodes,
        )
    else:
        log.log(level, "node guard: every node is analysed again (%d nodes)", nodes)


# --------------------------------------------------------------------------- CPU counts
# Facts first: the `cpu_count` column (written by `perf-analyzer sample`) holds what the
# host may use. Without it the count is estimated from load: on a Linux host that is neither
# saturated nor waiting on I/O, the 1-minute load is close to the number of busy CPUs, so
# load / (cpu% / 100) estimates the CPU count. That ratio counts the run queue on a
# saturated node and the I/O waiters on an I/O-bound one (both inflate it exactly when the
# load check matters), and is noise on an idle node, so only samples with CPU between
# EST_CPU_MIN and EST_CPU_MAX % and I/O wait below EST_IOWAIT_MAX % count. Their median,
# over the last day and from at least EST_MIN_SAMPLES samples, is snapped to the nearest
# common core count and capped at EST_CAP (larger machines need the column or
# --cpu-count); a node without such samples gets no estimate, and its load check is
# skipped rather than judged against a wrong count.
EST_CPU_MIN, EST_CPU_MAX, EST_IOWAIT_MAX = 20.0, 75.0, 5.0
EST_MIN_SAMPLES = 10
EST_CAP = 64

_CPU_EST_SQL = """
SELECT node_name, count(*) AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY {load} / ({cpu} / 100.0)) AS ratio
  FROM {t}
 WHERE node_flag IS TRUE AND sample_time > %(start)s AND sample_time <= %(now)s
   AND {cpu} BETWEEN %(cpu_min)s AND %(cpu_max)s AND coalesce({iowait}, 0) < %(iowait_max)s
   AND {load} IS NOT NULL AND {shard}
 GROUP BY node_name
"""

# The newest plausible count per node over the last day.
_CPU_COLUMN_SQL = """
SELECT DISTINCT ON (node_name) node_name, cpu_count
  FROM {t}
 WHERE node_flag IS TRUE AND sample_time > %(start)s AND sample_time <= %(now)s
   AND cpu_count BETWEEN 1 AND 65536 AND {shard}
 ORDER BY node_name, sample_time DESC
"""


def estimate_cpus(ratio: float | None, samples: int) -> int | None:
    """The snapped, capped estimate from the median load / busy ratio (module notes)."""
    if samples < EST_MIN_SAMPLES:
        return None
    n = snap_cpu_count(ratio)
    return None if n is None else min(n, EST_CAP)


def cpu_counts(ctx: Context, now: int) -> dict[str, tuple[int, str]]:
    """{node: (CPU count, "column" or "estimate")} (cached per hour); nodes with neither
    are absent. The `--cpu-count` override (`ctx.cpu_count`) is the caller's to apply."""
    key = now // 3600
    cached = ctx.caches.get("cpu_counts")
    if cached and cached[0] == key:
        return cached[1]
    fmt = {"t": ctx.store.table, "shard": ctx.store.shard_filter}
    params = {
        "start": now - DAY,
        "now": now,
        "cpu_min": EST_CPU_MIN,
        "cpu_max": EST_CPU_MAX,
        "iowait_max": EST_IOWAIT_MAX,
    }
    counts: dict[str, tuple[int, str]] = {}
    with ctx.store.read() as cur:
        query = sql.SQL(_CPU_EST_SQL).format(
            cpu=clean("cpu_total_pct"),
            iowait=clean("cpu_iowait_pct"),
            load=clean("load_1m"),
            **fmt,
        )
        cur.execute(query, params)
        for r in cur.fetchall():
            if (n := estimate_cpus(r["ratio"], r["n"])) is not None:
                counts[r["node_name"]] = (n, "estimate")
        if has_column(cur, ctx.store, CPU_COUNT.name):
            cur.execute(sql.SQL(_CPU_COLUMN_SQL).format(**fmt), params)
            for r in cur.fetchall():
                counts[r["node_name"]] = (int(r["cpu_count"]), "column")
    ctx.caches["cpu_counts"] = (key, counts)
    return counts


def cpu_count_of(ctx: Context, now: int) -> dict[str, int]:
    """{node: CPU count} from the column, else the estimate (`cpu_counts`). Callers prefer
    `ctx.cpu_count` when the user gave one."""
    return {node: n for node, (n, _) in cpu_counts(ctx, now).items()}


# --------------------------------------------------------------------------- node names


def name_clashes(names: Iterable[str]) -> list[list[str]]:
    """Groups of node names that differ only in case or surrounding whitespace
    (`Node-A`, `node-a`, `node-a `): most likely one host written by two samplers."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.strip().casefold(), []).append(name)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def describe_clash(group: list[str]) -> str:
    return ", ".join(repr(n) for n in group)
