"""Hourly aggregates of every series, kept in this process and brought up to date
incrementally, so long-window analyses read a few thousand hourly rows instead of millions
of samples.

The exporter may only have SELECT on the table, so the rollups live here, not in the
database. Complete hours are read once and kept; the hour in progress (and any hour
younger than `SETTLE_SECONDS`, to let late samples land) is read fresh on every call.
Asking for an earlier `now` (a replay) reuses the stored hours before it, reads only the
partial hour as of `now`, and so sees exactly what it would have seen at that moment.

A cold start reads a month, which takes a while at a few hundred nodes. A run inside
`reading(budget)` spends at most `budget` seconds reading (the newest day is always read),
answers from the history read so far and says how much that was (`Reading.history`), so a
first result comes before the month is read; the collector then runs it again with the
whole history.

Duplicate rows are not removed here (de-duplicating a month costs 3x the aggregation
itself, measured in docs/performance.md): an exact duplicate leaves min and max unchanged
and moves an hourly mean by a sixtieth of its distance from it. Bounded-window analyses
(emergency, SLI, contention, correlation) do remove them.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from psycopg import sql
from psycopg.rows import tuple_row

from .analyses.common import CONTAINER_ROW, HOUR, NODE_ROW, Context, clean
from .config import Config
from .schema import CONTAINER_METRICS, DISK_USED, INODES_USED, NODE_METRICS, present_columns
from .store import Store

# Optional node columns rolled up when the table has them (probed once, at the first view).
OPTIONAL_NODE_METRICS = (DISK_USED.name, INODES_USED.name)
STATS = ("count", "mean", "sd", "min", "max")  # per metric, over the hour's valid values
SETTLE_SECONDS = 300
FETCH_SECONDS = 86400  # rows of at most one day per query
_GENERATIONS = itertools.count(1)  # a new number each time some stored rows change
# For the rollup query's transaction only: a day's hourly groups (about 5,000 at 200 nodes,
# 17 MB of aggregate states) are hashed in memory. The planner overestimates the number of
# groups and would sort the day's rows instead (spilling to disk at the default work_mem),
# which costs more than the aggregation itself (docs/performance.md).
PLAN_SETTINGS = sql.SQL(
    "SELECT set_config('work_mem', '64MB', true), set_config('enable_sort', 'off', true),"
    " set_config('max_parallel_workers_per_gather', '0', true)"
)


@dataclass
class RollupView:
    """Hourly rows of one kind of series ("node" or "container") over a window.

    `keys[i]` is (node, container) of series i ("" container for nodes); row r belongs to
    series `ids[r]`, hour `hours[r]` (start, unix seconds), has `samples[r]` rows, and
    `stats[r, s, m]` is statistic STATS[s] of metric `metrics[m]` (NaN when no valid value)."""

    metrics: tuple[str, ...]
    keys: list[tuple[str, str]]
    ids: np.ndarray
    hours: np.ndarray
    samples: np.ndarray
    stats: np.ndarray

    def stat(self, name: str, metric: str) -> np.ndarray:
        return self.stats[:, STATS.index(name), self.metrics.index(metric)]

    def series(self) -> Iterator[tuple[tuple[str, str], np.ndarray]]:
        """(key, row indices sorted by hour) per series present in the view, in the order
        of the keys (node, container), whatever order the database returned them in."""
        rank = np.empty(len(self.keys), np.int64)
        rank[sorted(range(len(self.keys)), key=self.keys.__getitem__)] = np.arange(len(self.keys))
        order = np.lexsort((self.hours, rank[self.ids]))
        ids = self.ids[order]
        bounds = np.flatnonzero(np.diff(ids)) + 1
        for rows in np.split(order, bounds):
            if rows.size:
                yield self.keys[self.ids[rows[0]]], rows


@dataclass
class RollupParts:
    """The stored complete hours (arrays that are replaced, never changed in place, so
    these stay as they were) and the fresh rows from `max(first, settled)` on."""

    metrics: tuple[str, ...]
    keys: list[tuple[str, str]]
    stored: tuple[np.ndarray, ...]  # ids, hours, samples, stats
    fresh: tuple[np.ndarray, ...]
    generation: int  # of the stored rows
    first: int
    settled: int

    def view(self) -> RollupView:
        hours = self.stored[1]
        keep = (hours >= self.first) & (hours < self.settled)
        columns = [
            _select(old, keep, new) for old, new in zip(self.stored, self.fresh, strict=True)
        ]
        return RollupView(self.metrics, self.keys, *columns)


@dataclass
class Reading:
    """How long the views of one run may spend reading, and what history they served."""

    left: float | None = None  # seconds of reading left (None: no limit); at 0 or below,
    # only the newest day is still read
    history: int | None = None  # seconds of history of the shortest view served
    partial: bool = False  # a view served less history than it asked for


_READING: ContextVar[Reading | None] = ContextVar("rollups_reading", default=None)


@contextmanager
def reading(budget: float | None = None) -> Iterator[Reading]:
    """Views inside spend at most about `budget` seconds reading (None: no limit; what is
    left is `Reading.left` afterwards) and record how much history they served."""
    record = Reading(budget)
    token = _READING.set(record)
    try:
        yield record
    finally:
        _READING.reset(token)


class _Kind:
    """Stored complete hours of one kind of series: contiguous range [lo, hi)."""

    def __init__(self, metrics: tuple[str, ...]) -> None:
        self.metrics = metrics
        self.lo = self.hi = 0
        self.generation = 0  # unique per content of the stored rows, for callers' memos
        self.ids = np.empty(0, np.int32)
        self.hours = np.empty(0, np.int64)
        self.samples = np.empty(0, np.int32)
        self.stats = np.empty((0, len(STATS), len(metrics)), np.float32)

    def add(
        self,
        ids: np.ndarray,
        hours: np.ndarray,
        samples: np.ndarray,
        stats: np.ndarray,
        *,
        older: bool = False,
    ) -> None:
        """Rows of newer hours go after the stored ones, of older hours before them, so
        the rows stay in hour order however the history was read. New arrays every time:
        a view holding the old ones is not disturbed."""

        def join(have: np.ndarray, new: np.ndarray) -> np.ndarray:
            return np.concatenate([new, have] if older else [have, new])

        self.ids, self.hours = join(self.ids, ids), join(self.hours, hours)
        self.samples, self.stats = join(self.samples, samples), join(self.stats, stats)
        self.generation = next(_GENERATIONS)

    def forget_before(self, hour: int) -> None:
        keep = self.hours >= hour
        if not keep.all():
            self.ids, self.hours = self.ids[keep], self.hours[keep]
            self.samples, self.stats = self.samples[keep], self.stats[keep]
            self.generation = next(_GENERATIONS)
        self.lo = max(self.lo, hour)


class HourlyRollups:
    """The hourly rollups of one table; thread-safe, one refresh at a time."""

    def __init__(self, store: Store, *, max_days: float = 35) -> None:
        self.store = store
        self.max_seconds = int(max_days * 86400)
        self._keys: dict[tuple[str, str], int] = {}
        self._kinds = {"node": _Kind(NODE_METRICS), "container": _Kind(CONTAINER_METRICS)}
        self._probed = False  # whether the optional disk columns were looked up
        self._lock = threading.Lock()  # the stored arrays and keys, held briefly
        self._building = {kind: threading.Lock() for kind in self._kinds}  # one reader each
        self.rows_read = 0  # hourly rows fetched from the database, for tests and benchmarks

    def view(self, kind: str, start: int, now: int) -> RollupView:
        """Hourly rows with hour start in [floor(start), now]; the last, partial hour holds
        the samples up to `now` only. Inside `reading(budget)`, once the budget is spent the
        view starts at the oldest hour read so far (a day at least)."""
        return self.parts(kind, start, now).view()

    def parts(self, kind: str, start: int, now: int) -> RollupParts:
        """What `view` returns, before the stored and the fresh rows are joined: a caller
        that keeps what it built from the stored rows (same `generation`, `first` and
        `settled`) need not copy them again."""
        first = start // HOUR * HOUR
        settled = min(now // HOUR * HOUR, (int(time.time()) - SETTLE_SECONDS) // HOUR * HOUR)
        record = _READING.get()
        self._probe()
        self._extend(kind, first, max(first, settled), record)
        with self._lock:
            store = self._kinds[kind]
            stored: tuple[np.ndarray, ...] = (store.ids, store.hours, store.samples, store.stats)
            generation = store.generation
            served = first if first >= settled else max(first, store.lo)
            wanted = max(first, self._oldest(store))
        if record is not None:
            seconds = now - served
            record.history = seconds if record.history is None else min(record.history, seconds)
            record.partial |= served > wanted
        fresh = self._fetch(kind, max(first, settled), now)  # not stored: still changing
        with self._lock:
            keys = list(self._keys)
        return RollupParts(store.metrics, keys, stored, fresh, generation, first, settled)

    def _probe(self) -> None:
        """Learn once, before anything is stored, whether the table has the optional node
        columns the rollups aggregate (disk and inodes)."""
        with self._lock:
            if self._probed:
                return
        with self.store.read() as cur:
            present = present_columns(cur, self.store, OPTIONAL_NODE_METRICS)
        with self._lock:
            if not self._probed:
                extra = tuple(m for m in OPTIONAL_NODE_METRICS if m in present)
                self._kinds["node"] = _Kind(NODE_METRICS + extra)
                self._probed = True

    def history(self) -> dict[str, int]:
        """Seconds of complete hours stored, per kind: how far back a cold start has read."""
        with self._lock:
            return {kind: store.hi - store.lo for kind, store in self._kinds.items()}

    def _extend(self, kind: str, first: int, settled: int, record: Reading | None = None) -> None:
        """Store the complete hours [first, settled), the newest first and a day at a time.
        The building lock is let go between days, so a view whose hours are already stored
        (a week, while another view reads the month) is served at once instead of waiting.
        The time each read takes comes off `record.left`; once none is left, only the
        newest day is still read."""

        def late() -> bool:
            return record is not None and record.left is not None and record.left <= 0

        while (todo := self._missing(kind, first, settled, late())) is not None:
            with self._building[kind]:
                if (todo := self._missing(kind, first, settled, late())) is None:
                    return  # another thread read it meanwhile
                lo, hi = todo
                started = time.monotonic()
                chunk = self._fetch(kind, lo, hi - 1)
                if record is not None and record.left is not None:
                    record.left -= time.monotonic() - started
                with self._lock:
                    store = self._kinds[kind]
                    store.add(*chunk, older=lo < store.lo)
                    store.lo, store.hi = min(store.lo, lo), max(store.hi, hi)
                    store.forget_before(store.hi - self.max_seconds)

    def _missing(
        self, kind: str, first: int, settled: int, late: bool = False
    ) -> tuple[int, int] | None:
        """The next range of hours to read: the new hours since the last read in one go,
        then older hours a day at a time, or None when [first, settled) is stored (when
        `late`, when the newest day of it is)."""
        with self._lock:
            store = self._kinds[kind]
            if store.lo == store.hi:  # empty: read backwards from the newest hour
                store.lo = store.hi = settled
            if settled > store.hi:
                return store.hi, settled
            first = max(first, self._oldest(store))
            if late:
                first = max(first, settled - FETCH_SECONDS)
            if first < store.lo:
                return max(first, store.lo - FETCH_SECONDS), store.lo
            return None

    def _oldest(self, store: _Kind) -> int:
        """The oldest hour kept: older hours are never read (call with the lock held)."""
        return -(-(store.hi - self.max_seconds) // HOUR) * HOUR

    def _fetch(
        self, kind: str, start: int, now: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Aggregate samples with start <= t <= now, a day at a time: the rows of one day
        become compact arrays before the next day is read, so a month's first read never
        holds a month of Python tuples (RSS), and each day's aggregation fits in work_mem."""
        chunks = [
            self._fetch_chunk(kind, lo, min(lo + FETCH_SECONDS - 1, now))
            for lo in range(start, now + 1, FETCH_SECONDS)
        ]
        if not chunks:
            return _empty(len(self._kinds[kind].metrics))
        ids, hours, samples, stats = (np.concatenate(c) for c in zip(*chunks, strict=True))
        return ids, hours, samples, stats

    def _fetch_chunk(
        self, kind: str, start: int, now: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        metrics = self._kinds[kind].metrics
        with self.store.read() as cur:
            cur.execute(PLAN_SETTINGS)
            cur.row_factory = tuple_row  # type: ignore[assignment]  # thousands of rows
            cur.execute(self._query(kind), {"start": start - 1, "now": now})
            rows = cast(list[tuple[Any, ...]], cur.fetchall())
        self.rows_read += len(rows)
        if not rows:
            return _empty(len(metrics))
        ids = np.fromiter((self._key_id(r[0], r[1]) for r in rows), np.int32, len(rows))
        hours = np.fromiter((r[2] for r in rows), np.int64, len(rows))
        samples = np.fromiter((r[3] for r in rows), np.int32, len(rows))
        values = np.array([r[4:] for r in rows], dtype=np.float64)  # NULL -> nan
        stats = values.reshape(len(rows), len(metrics), len(STATS)).transpose(0, 2, 1)
        return ids, hours, samples, stats.astype(np.float32)

    def _query(self, kind: str) -> sql.Composed:
        """Hourly count, mean, sd, min and max of every metric of one kind's rows.

        Each metric's cleaned value (a CASE of several comparisons) is computed once per row
        in the inner query; written into each aggregate it was evaluated four times, since
        PostgreSQL does not share common subexpressions between aggregates. OFFSET 0 keeps
        the planner from folding the inner query back into the aggregates. avg and
        stddev_samp of the same value share one transition state, so they cost one pass."""
        metrics = self._kinds[kind].metrics
        values = [sql.Identifier(f"v{i}") for i in range(len(metrics))]
        cleaned = sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(clean(m), v) for m, v in zip(metrics, values, strict=True)
        )
        aggregates = sql.SQL(", ").join(
            sql.SQL("count({v}), avg({v}), stddev_samp({v}), min({v}), max({v})").format(v=v)
            for v in values
        )
        return sql.SQL(
            "SELECT node_name, container, hour, count(*) AS n, {aggs} FROM ("
            " SELECT node_name, coalesce(container_name, '') AS container,"
            " floor(sample_time::float8 / 3600)::bigint * 3600 AS hour, {cleaned}"
            " FROM {table} WHERE sample_time > %(start)s AND sample_time <= %(now)s"
            " AND node_name IS NOT NULL AND {which} AND {shard} OFFSET 0"
            ") AS cleaned GROUP BY 1, 2, 3"
        ).format(
            aggs=aggregates,
            cleaned=cleaned,
            table=self.store.table,
            shard=self.store.shard_filter,
            which=NODE_ROW if kind == "node" else CONTAINER_ROW,
        )

    def _key_id(self, node: str, container: str) -> int:
        with self._lock:
            return self._keys.setdefault((node, container), len(self._keys))


def _select(stored: np.ndarray, keep: np.ndarray, fresh: np.ndarray) -> np.ndarray:
    """stored[keep] followed by fresh, in one new array (a month of node stats is ~44 MiB
    at 200 nodes: one copy per view, not two)."""
    n = int(np.count_nonzero(keep))
    out = np.empty((n + len(fresh), *stored.shape[1:]), stored.dtype)
    np.compress(keep, stored, axis=0, out=out[:n])
    out[n:] = fresh
    return out


def _empty(n_metrics: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.empty(0, np.int32),
        np.empty(0, np.int64),
        np.empty(0, np.int32),
        np.empty((0, len(STATS), n_metrics), np.float32),
    )


def rollups_of(ctx: Context) -> HourlyRollups:
    """The hourly rollups every long-window analysis reads, created once per context."""
    return ctx.cache("rollups", lambda: HourlyRollups(ctx.store, max_days=rollup_days(ctx.config)))


def rollup_days(config: Config) -> float:
    """Rollups keep the longest history any analysis reads, plus a day."""
    weekly_summary = 14  # this week and the one before
    longest = max(
        config.anomalies.history_days,
        config.capacity.days,
        config.patterns.days,
        config.patterns.weekly_history_days,
        config.correlation.profile_days,
        config.alerts.history_days,
        weekly_summary,
    )
    return longest + 1
