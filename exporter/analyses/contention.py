"""Resource contention: which container dominates a node's CPU or memory while the node is
under pressure, which one grew into it, and which ones were squeezed.

Method (over the window's de-duplicated rows, read once and computed on in numpy, so that
the exporter can keep them between runs and read only what changed: `ContentionState`):

- Pressure, per node sample of the window: CPU pressure when node CPU > `cpu_pct` or I/O
  wait > `iowait_pct` (stalled CPU counts as contended CPU); memory pressure when free
  memory < `mem_available_pct` % of total. `pressure_fraction` is the share of the window's
  node samples under pressure: a node's own pressure, with or without containers.
- Matching: samplers do not stamp a container row and its node row with the same second.
  Each container row belongs to the nearest node row of its node, if that row is within
  half the node's interval (the median gap between its node rows); rows further away are
  not attributed. Several container rows matched to one node row are averaged.
- Share of a container = its use / the node's use, summed over the pressure samples: CPU
  share = container cpu_total_pct / node cpu_total_pct (both percent of the node's CPU),
  memory share = c_rss_mb / (mem_total_mb - mem_available_mb). `share_of_capacity` is the
  same use over the node's capacity (100 % CPU, mem_total_mb).
- "Before" = the calm (no pressure) samples of the window and of the `baseline_hours`
  before it. Shares move when a neighbour grows even if a container's own use did not, so
  growth and loss are judged on absolute use: `use_change` = mean use under pressure / mean
  use before - 1. A container grew when its use_change >= `victim_drop`; a victim is a
  container whose use fell by at least `victim_drop` (or stopped: no use left) while
  another container grew. The top grower is the container whose mean use grew the most.
- contention_score = pressure_fraction x concentration, where concentration is the
  largest share of the node's use held by one container. Host processes are not a
  container: a node without containers has pressure but scores 0 (no contention between
  containers), and its pressure is served as `perf_analyzer_node_pressure_ratio`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
from psycopg import Cursor, sql
from psycopg.rows import tuple_row

from ..config import ContentionConfig
from ..metricdef import gauge
from ..render import Text, pct
from ..samples import Sample, sample
from .common import (
    CONTAINER_ROW,
    HOUR,
    NODE_ROW,
    Context,
    clean,
    round_float,
    window_rows,
    window_seconds,
)
from .hourly import HourRows
from .unit import Analysis, ResultView, Served, Window

RESOURCES = ("cpu", "memory")


class ContainerShare(TypedDict):
    container_name: str
    share: float | None  # of the node's use while under pressure
    share_before: float | None
    share_change: float | None
    share_of_capacity: float | None
    use: float | None  # mean use under pressure: CPU percent of the node, or RSS MiB
    use_before: float | None  # mean use in the calm samples
    use_change: float | None  # use / use_before - 1


class Contention(TypedDict):
    node_name: str
    resource: str  # cpu or memory
    contention_score: float  # between containers; 0 on a node without containers
    pressure_fraction: float | None  # the node's own pressure, containers or not
    concentration: float | None
    pressure_samples: int
    samples: int
    matched_rows: int  # container rows attributed to a node sample
    unmatched_rows: int  # container rows with no node row within half its interval
    top_consumer: str | None
    top_grower: str | None
    victims: list[str]
    unattributed_share: float | None
    containers: list[ContainerShare]
    window: dict[str, int]


class ContentionResult(TypedDict):
    window: dict[str, int]
    thresholds: dict[str, float]
    nodes: list[Contention]


# The rows of (start, now] contention reads: node rows with the node columns, container
# rows with theirs, each de-duplicated as every analysis reads rows, invalid values NULL.
# Columns a..d: node rows cpu, iowait, available, total; container rows cpu, rss.
_ROWS = sql.SQL(
    "SELECT node_name, NULL::text AS container_name, sample_time,"
    " {cpu} AS a, {iowait} AS b, {avail} AS c, {total} AS d FROM {nrows} r WHERE {node}"
    " UNION ALL SELECT node_name, container_name, sample_time, {ccpu}, {rss},"
    " NULL::float8, NULL::float8 FROM {crows} r WHERE {container}"
)


def _rows_sql(ctx: Context) -> sql.Composed:
    return _ROWS.format(
        cpu=clean("cpu_total_pct"),
        iowait=clean("cpu_iowait_pct"),
        avail=clean("mem_available_mb"),
        total=clean("mem_total_mb"),
        nrows=window_rows(ctx.store, _NODE_COLUMNS),
        node=NODE_ROW,
        ccpu=clean("cpu_total_pct"),
        rss=clean("c_rss_mb"),
        crows=window_rows(ctx.store, ("cpu_total_pct", "c_rss_mb")),
        container=CONTAINER_ROW,
    )


_NODE_COLUMNS = ("cpu_total_pct", "cpu_iowait_pct", "mem_available_mb", "mem_total_mb")
CHUNK = 20_000  # rows turned into columns at a time
SLACK = 10_000  # rows no hour keeps any more, beyond as many as are kept, before compacting
_FLOATS = ("a", "b", "c", "d")


@dataclass
class ContentionState:
    """The exporter's state between contention runs: the rows of the window and its
    baseline kept per hour (`HourRows` finds late and removed rows and reads only what
    changed), their columns in arrays indexed by the kept values. A run computes from the
    kept rows exactly what it computes from rows read from scratch: the rows are put in
    one order by name and time first, so even the sums add in the same order."""

    kept: HourRows = field(default_factory=HourRows)
    nodes: dict[str, int] = field(default_factory=dict)  # name -> id, never reused
    containers: dict[str, int] = field(default_factory=dict)
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # by kept value
    query: tuple[Any, sql.Composed | None] = (None, None)

    @property
    def reread(self) -> int:
        return self.kept.reread

    def rows(self, ctx: Context, start: int, now: int) -> dict[str, np.ndarray]:
        """Columns of the rows of (start, now]: node, container (-1: a node row), t, a..d."""
        if self.query[0] is not ctx.store:  # composed once: it is most of a small run
            self.query = (ctx.store, _rows_sql(ctx))
        query = self.query[1]
        assert query is not None

        def read(cur: Cursor[dict[str, Any]], lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
            # tuples, a chunk at a time, from a server-side cursor: a cold read is the 7 hours
            # of every node, which as dicts all at once were 190 MB of the process's memory
            with cur.connection.cursor("contention_rows", row_factory=tuple_row) as rows:
                rows.execute(query, {"start": lo, "now": hi})
                parts = []
                while chunk := rows.fetchmany(CHUNK):
                    parts.append(self._columns(chunk))
            new = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
            if not new:
                new = self._columns([])
            first = len(self.columns.get("t", ()))
            self.columns = (
                {k: np.concatenate([self.columns[k], v]) for k, v in new.items()}
                if self.columns
                else new
            )
            return new["t"], np.arange(first, first + len(new["t"]), dtype=np.int64)

        self.kept.refresh(
            ctx, (str(ctx.store.table), str(ctx.store.shard_filter)), start, now, read
        )
        live = self.kept.values(start)
        if len(self.columns.get("t", ())) > 2 * len(live) + SLACK:
            self._compact()
            live = self.kept.values(start)
        return {k: v[live] for k, v in self.columns.items()} if self.columns else {}

    def _columns(self, chunk: list[tuple[Any, ...]]) -> dict[str, np.ndarray]:
        """Rows of `_ROWS` as columns, names as ids."""
        nodes, containers = self.nodes, self.containers
        return {
            "node": np.array([nodes.setdefault(r[0], len(nodes)) for r in chunk], np.int32),
            "container": np.array(
                [
                    -1 if r[1] is None else containers.setdefault(r[1], len(containers))
                    for r in chunk
                ],
                np.int32,
            ),
            "t": np.array([r[2] for r in chunk], np.int64),
            **{k: np.array([r[3 + i] for r in chunk], np.float64) for i, k in enumerate(_FLOATS)},
        }

    def _compact(self) -> None:
        """Drop the columns of rows no hour keeps (rows gone from the window, hours read
        again)."""
        values = [h.value for h in self.kept.hours.values()]
        live = np.concatenate(values) if values else np.zeros(0, np.int64)
        moved = np.full(len(self.columns["t"]), -1, np.int64)
        moved[live] = np.arange(len(live))
        self.columns = {k: v[live] for k, v in self.columns.items()}
        for h in self.kept.hours.values():
            h.value = moved[h.value]


def resource_contention_analysis(
    ctx: Context, *, hours: float, now: int, state: ContentionState | None = None
) -> ContentionResult:
    """Contention per node and resource over the last `hours` before `now`; `state`: the
    rows kept from the previous run (`ContentionState`), the same answer for less work."""
    cfg = ctx.config.contention
    seconds = window_seconds(hours, HOUR, "hours")
    wstart = now - seconds
    start = wstart - int(cfg.baseline_hours * HOUR)
    state = state if state is not None else ContentionState()
    rows = state.rows(ctx, start, now)
    nodes, containers = _aggregate(rows, state, wstart, cfg) if rows else ([], [])
    by_node: dict[str, list[dict[str, Any]]] = {}
    for c in containers:
        by_node.setdefault(c["node_name"], []).append(c)
    window = {"start": wstart, "end": now, "baseline_start": start}
    out = [
        _entry(n, by_node.get(n["node_name"], []), resource, cfg.victim_drop, window)
        for n in sorted(nodes, key=lambda r: r["node_name"])
        if n["samples"]
        for resource in RESOURCES
    ]
    return {
        "window": window,
        "thresholds": {
            "cpu_pct": cfg.cpu_pct,
            "iowait_pct": cfg.iowait_pct,
            "mem_available_pct": cfg.mem_available_pct,
            "victim_drop": cfg.victim_drop,
        },
        "nodes": out,
    }


def _rank(names: dict[str, int]) -> np.ndarray:
    """id -> position of its name in sorted order."""
    rank = np.zeros(len(names), np.int64)
    for i, name in enumerate(sorted(names)):
        rank[names[name]] = i
    return rank


def _sum(groups: np.ndarray, values: np.ndarray, where: np.ndarray, n: int) -> list[Any]:
    """Per group: the sum of the non-NULL `values` where `where` holds; None without one
    (SQL's sum)."""
    use = where & ~np.isnan(values)
    sums = np.bincount(groups[use], weights=values[use], minlength=n)
    counts = np.bincount(groups[use], minlength=n)
    return [float(s) if c else None for s, c in zip(sums.tolist(), counts.tolist(), strict=True)]


def _avg(groups: np.ndarray, values: np.ndarray, where: np.ndarray, n: int) -> list[Any]:
    """Per group: the mean of the non-NULL `values` where `where` holds (SQL's avg)."""
    means = _means(groups, values, where, n)
    return [None if np.isnan(m) else m for m in means.tolist()]


def _means(groups: np.ndarray, values: np.ndarray, where: np.ndarray, n: int) -> np.ndarray:
    """`_avg` as an array, NaN for NULL."""
    use = where & ~np.isnan(values)
    sums = np.bincount(groups[use], weights=values[use], minlength=n)
    counts = np.bincount(groups[use], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _count(groups: np.ndarray, where: np.ndarray, n: int) -> list[int]:
    return np.bincount(groups[where], minlength=n).tolist()


def _starts(key: np.ndarray) -> np.ndarray:
    """Where each run of equal values of a sorted `key` starts."""
    return np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]])) if len(key) else key


def _runs(key: np.ndarray) -> np.ndarray:
    """The run of equal values of a sorted `key` each element is in, from 0."""
    if not len(key):
        return np.zeros(0, np.int64)
    return np.cumsum(np.concatenate([[0], key[1:] != key[:-1]]))


def _order(major: np.ndarray, minor: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The rows' order by (major, minor, t): one sort of one integer key when the three fit
    in 63 bits (a third of the cost of sorting by three keys), else by three."""
    if not len(t):
        return np.zeros(0, np.int64)
    span = int(t.max() - t.min()) + 1
    bits_t, bits_minor = span.bit_length(), int(minor.max()).bit_length()
    if bits_t + bits_minor + int(major.max()).bit_length() > 63:
        return np.lexsort((t, minor, major))
    key = (major.astype(np.int64) << (bits_t + bits_minor)) | (minor.astype(np.int64) << bits_t)
    return np.argsort(key | (t - t.min()))  # unique keys: the rows are de-duplicated


def _aggregate(
    rows: dict[str, np.ndarray], state: ContentionState, wstart: int, cfg: ContentionConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per node and per (node, container): the pressure counts, the sums of use under
    pressure and before, matched and unmatched rows (module doc)."""
    node_rank, container_rank = _rank(state.nodes), _rank(state.containers)
    node_names = sorted(state.nodes)
    with_node_rows = np.concatenate([container_rank, [-1]]) + 1  # node rows first, as 0
    order = _order(node_rank[rows["node"]], with_node_rows[rows["container"]], rows["t"])
    is_node = rows["container"][order] < 0
    n_at = order[is_node]
    c_at = order[~is_node]
    # node rows, by node and time
    node = node_rank[rows["node"][n_at]]
    t = rows["t"][n_at]
    cpu, iowait, avail, total = (rows[k][n_at] for k in _FLOATS)
    inw = t > wstart
    with np.errstate(invalid="ignore"):
        cpu_p = (cpu > cfg.cpu_pct) | (iowait > cfg.iowait_pct)
        mem_p = avail < total * cfg.mem_available_pct / 100.0
    used = total - avail
    node, present = _runs(node), node[_starts(node)]  # sorted: runs, not a sort
    k = len(present)
    if not k:  # no node row: no node to report
        return [], []
    samples = _count(node, inw, k)
    nodes = [
        {"node_name": node_names[r], "samples": samples[i]} for i, r in enumerate(present.tolist())
    ]
    columns = {
        "cpu_pressure": _count(node, inw & cpu_p, k),
        "mem_pressure": _count(node, inw & mem_p, k),
        "cpu_use_p": _sum(node, cpu, inw & cpu_p, k),
        "cpu_use_b": _sum(node, cpu, ~cpu_p, k),
        "cpu_n_p": _count(node, inw & cpu_p & ~np.isnan(cpu), k),
        "mem_use_p": _sum(node, used, inw & mem_p, k),
        "mem_use_b": _sum(node, used, ~mem_p, k),
        "mem_n_p": _count(node, inw & mem_p & ~np.isnan(used), k),
        "mem_total": _avg(node, total, inw, k),
    }
    for name, values in columns.items():
        for entry, v in zip(nodes, values, strict=True):
            entry[name] = v
    # half the median spacing of each node's rows
    step = np.diff(t)
    same = node[1:] == node[:-1]
    half = np.zeros(k)
    spacing = step[same & (step > 0)]
    owner = node[1:][same & (step > 0)]
    bounds = np.searchsorted(owner, np.arange(k + 1))
    for i in range(k):
        if bounds[i + 1] > bounds[i]:
            half[i] = float(np.median(spacing[bounds[i] : bounds[i + 1]])) / 2.0
    # each container row to its node's nearest node row (ties: the earlier)
    c_rank = node_rank[rows["node"][c_at]]
    c_t = rows["t"][c_at]
    c_node = np.searchsorted(present, c_rank)
    c_node[c_node >= k] = 0
    known = present[c_node] == c_rank
    base = int(min(t.min(), c_t.min() if len(c_t) else t.min())) - 1
    key = node.astype(np.int64) << 40 | (t - base)
    c_key = c_node.astype(np.int64) << 40 | (c_t - base)
    prev = np.searchsorted(key, c_key, "right") - 1
    after = np.searchsorted(key, c_key, "left")
    prev_at, after_at = np.clip(prev, 0, None), np.clip(after, 0, len(t) - 1)
    has_prev = known & (prev >= 0) & (node[prev_at] == c_node)
    has_next = known & (after < len(t)) & (node[after_at] == c_node)
    d_prev, d_next = c_t - t[prev_at], t[after_at] - c_t
    pick_prev = has_prev & (~has_next | (d_prev <= d_next))
    near = np.where(pick_prev, prev, after)
    dist = np.where(pick_prev, d_prev, d_next)
    ok = (pick_prev | has_next) & (dist <= half[c_node])
    # pairs (node, container), and groups of the rows one node row matched
    c_cont = rows["container"][c_at]
    pair_key = c_rank.astype(np.int64) << 32 | container_rank[c_cont]
    pair, pairs = _runs(pair_key), pair_key[_starts(pair_key)]  # sorted by pair, then time
    p = len(pairs)
    c_cpu, c_rss = rows["a"][c_at], rows["b"][c_at]
    # within a pair the nearest node row only moves forward: groups are runs too
    g_keys = pair[ok].astype(np.int64) << 40 | near[ok]
    group, g_keys = _runs(g_keys), g_keys[_starts(g_keys)]
    g = len(g_keys)
    g_pair = (g_keys >> 40).astype(np.int64)
    g_row = (g_keys & ((1 << 40) - 1)).astype(np.int64)
    everywhere = np.ones(int(ok.sum()), bool)
    g_cpu = _means(group, c_cpu[ok], everywhere, g)
    g_rss = _means(group, c_rss[ok], everywhere, g)
    f_inw, f_cpu_p, f_mem_p = inw[g_row], cpu_p[g_row], mem_p[g_row]
    f_cpu_ok, f_used_ok = ~np.isnan(cpu[g_row]), ~np.isnan(used[g_row])
    matched = _count(pair, ok, p)
    unmatched = _count(pair, ~ok, p)
    per_pair = {
        "cpu_use_p": _sum(g_pair, g_cpu, f_inw & f_cpu_p & f_cpu_ok, p),
        "cpu_use_b": _sum(g_pair, g_cpu, ~f_cpu_p & f_cpu_ok, p),
        "cpu_mean_p": _avg(g_pair, g_cpu, f_inw & f_cpu_p, p),
        "cpu_mean_b": _avg(g_pair, g_cpu, ~f_cpu_p, p),
        "mem_use_p": _sum(g_pair, g_rss, f_inw & f_mem_p & f_used_ok, p),
        "mem_use_b": _sum(g_pair, g_rss, ~f_mem_p & f_used_ok, p),
        "mem_mean_p": _avg(g_pair, g_rss, f_inw & f_mem_p, p),
        "mem_mean_b": _avg(g_pair, g_rss, ~f_mem_p, p),
    }
    container_names = sorted(state.containers)
    containers = []
    for i, key_ in enumerate(pairs.tolist()):
        row: dict[str, Any] = {
            "node_name": node_names[key_ >> 32],
            "container_name": container_names[key_ & 0xFFFFFFFF],
            "matched": matched[i] or None,
            "unmatched": unmatched[i] or None,
        }
        row.update((name, values[i]) for name, values in per_pair.items())
        containers.append(row)
    return nodes, containers


def _ratio(num: Any, den: Any) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return min(1.0, max(0.0, float(num) / float(den)))


def _change(after: Any, before: Any) -> float | None:
    """Relative change of a mean use; None without a positive use before."""
    if after is None or before is None or before <= 0:
        return None
    return float(after) / float(before) - 1.0


def victims_and_grower(
    changes: dict[str, float | None], grown: dict[str, float], drop: float
) -> tuple[list[str], str | None]:
    """Victims (use fell by `drop` or more while another container grew by `drop` or more)
    and the top grower (largest growth of mean use), from each container's relative
    `changes` and absolute growth `grown`. A container whose use did not move is neither."""
    growers = [n for n, c in changes.items() if c is not None and c >= drop and grown[n] > 0]
    top = max(growers, key=lambda n: (grown[n], n)) if growers else None
    victims = sorted(
        n
        for n, c in changes.items()
        if c is not None and c <= -drop and any(g != n for g in growers)
    )
    return victims, top


def _entry(
    node: dict[str, Any],
    containers: list[dict[str, Any]],
    resource: str,
    victim_drop: float,
    window: dict[str, int],
) -> Contention:
    """One node and resource: shares, aggressor, victims and the score (module doc)."""
    key = "cpu" if resource == "cpu" else "mem"
    pressure = node[f"{key}_pressure"] or 0
    samples = node["samples"]
    capacity = 100.0 if resource == "cpu" else node["mem_total"]
    n_p = node[f"{key}_n_p"] or 0
    rows: list[ContainerShare] = []
    for c in containers:
        if not c["matched"]:
            continue
        share = _ratio(c[f"{key}_use_p"], node[f"{key}_use_p"]) if pressure else None
        before = _ratio(c[f"{key}_use_b"], node[f"{key}_use_b"])
        change = share - before if share is not None and before is not None else None
        of_capacity = (
            _ratio(c[f"{key}_use_p"], capacity * n_p) if pressure and capacity and n_p else None
        )
        mean_p = c[f"{key}_mean_p"] if pressure else None
        if pressure and mean_p is None and c[f"{key}_mean_b"]:
            mean_p = 0.0  # present before, no use left under pressure: it stopped
        rows.append(
            {
                "container_name": c["container_name"],
                "share": round_float(share),
                "share_before": round_float(before),
                "share_change": round_float(change),
                "share_of_capacity": round_float(of_capacity),
                "use": round_float(mean_p),
                "use_before": round_float(c[f"{key}_mean_b"]),
                "use_change": round_float(_change(mean_p, c[f"{key}_mean_b"])),
            }
        )
    rows.sort(key=lambda r: (-(r["share"] or 0.0), r["container_name"]))
    attributed = sum(r["share"] or 0.0 for r in rows)
    unattributed = max(0.0, 1.0 - attributed) if pressure else None
    top = rows[0] if rows and rows[0]["share"] else None
    concentration = (top["share"] or 0.0) if top else 0.0
    fraction = pressure / samples if samples else 0.0
    victims, grower = victims_and_grower(
        {r["container_name"]: r["use_change"] for r in rows},
        {r["container_name"]: (r["use"] or 0.0) - (r["use_before"] or 0.0) for r in rows},
        victim_drop,
    )
    return {
        "node_name": node["node_name"],
        "resource": resource,
        "contention_score": round_float(fraction * concentration) or 0.0,
        "pressure_fraction": round_float(fraction),
        "concentration": round_float(concentration) if pressure else None,
        "pressure_samples": pressure,
        "samples": samples,
        "matched_rows": sum(int(c["matched"] or 0) for c in containers),
        "unmatched_rows": sum(int(c["unmatched"] or 0) for c in containers),
        "top_consumer": top["container_name"] if top else None,
        "top_grower": grower,
        "victims": victims,
        "unattributed_share": round_float(unattributed),
        "containers": rows,
        "window": window,
    }


# --------------------------------------------------------------------------- served

SCORE = gauge(
    "contention_score",
    "Resource contention between a node's containers, 0..1.",
    ("node", "resource"),
    unit="percentunit",
)


PRESSURE = gauge(
    "node_pressure_ratio",
    "Share of the contention window a node spent under pressure on the resource, 0..1,"
    " with or without containers.",
    ("node", "resource"),
    unit="percentunit",
)


def to_samples(result: ContentionResult, view: ResultView) -> Iterator[Sample]:
    for n in result["nodes"]:
        labels = {"node": n["node_name"], "resource": n["resource"]}
        yield sample("contention_score", n["contention_score"], **labels)
        yield sample("node_pressure_ratio", n["pressure_fraction"] or 0.0, **labels)


def render_text(r: ContentionResult, t: Text) -> None:
    t.title("⚔️  RESOURCE CONTENTION")
    t.table(
        ("node", "resource", "pressure", "score", "top consumer", "share", "victims"),
        (
            (
                n["node_name"],
                n["resource"],
                pct(n["pressure_fraction"]),
                n["contention_score"],
                n["top_consumer"],
                pct(
                    max(
                        (c["share"] for c in n.get("containers", []) if c["share"] is not None),
                        default=None,
                    )
                ),
                ", ".join(n["victims"]) or None,
            )
            for n in r["nodes"]
            if n["contention_score"] or n["pressure_samples"]
        ),
        lambda row: "red" if row[3] != "-" and float(row[3]) >= 0.5 else None,
    )


ANALYSIS = Analysis[ContentionResult](
    name="contention",
    title="which container dominates a node's CPU or memory while the node is under pressure",
    run=resource_contention_analysis,
    render_text=render_text,
    window=Window("hours", lambda c: 1, served=lambda c: c.contention.window_hours),
    serve=Served(refresh_seconds=60, metrics=(SCORE, PRESSURE), to_samples=to_samples),
    incremental=ContentionState,
)
