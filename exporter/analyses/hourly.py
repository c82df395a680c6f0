"""Rows of a sliding window kept between the exporter's runs, per hour bucket, for an
analysis that needs the same numbers as a run from scratch but reads only what changed.

Each run compares the count and the sum of the stamps of the rows of any kind up to the
previous run with those kept per hour (one index-only scan of `sample_time`, no grouping);
only when they differ does it count per hour to find the hours whose figures changed (a
late or removed row) and read them again. Otherwise it reads only the rows newer than the
previous run. There is no late-arrival margin: a late row is found on the next run,
wherever in the window it lands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from psycopg import Cursor, sql

from .common import HOUR, Context

# Rows of any kind in (lo, hi] and the sum of their stamps: an index-only scan of
# `sample_time`, a quarter of the cost of counting them per hour.
_TOTAL_SQL = """
SELECT count(*) AS n, coalesce(sum(sample_time), 0) AS s
  FROM {table} WHERE sample_time > %(lo)s AND sample_time <= %(hi)s
"""

# Per hour bucket ((b-1) h, b h] of (lo, hi]: rows of any kind, the newest and the sum of
# the stamps.
_HOURS_SQL = """
SELECT (sample_time + 3599) / 3600 AS b, count(*) AS n, max(sample_time) AS newest,
       sum(sample_time) AS s
  FROM {table} WHERE sample_time > %(lo)s AND sample_time <= %(hi)s
 GROUP BY 1
"""

Figures = tuple[int, int, int]  # rows of any kind, the newest, the sum of the stamps


def _per_hour(
    cur: Cursor[dict[str, Any]], table: sql.Composable, lo: int, hi: int
) -> dict[int, Figures]:
    if lo >= hi:
        return {}
    cur.execute(sql.SQL(_HOURS_SQL).format(table=table), {"lo": lo, "hi": hi})
    return {int(r["b"]): (int(r["n"]), int(r["newest"]), int(r["s"])) for r in cur.fetchall()}


# (lo, hi] -> the rows of that range the analysis keeps: their times and one integer each
Reader = Callable[[Cursor[dict[str, Any]], int, int], tuple[np.ndarray, np.ndarray]]


@dataclass
class _Hour:
    n: int  # rows of any kind up to the last read, the newest and the sum of their stamps
    newest: int
    t: np.ndarray
    value: np.ndarray
    s: int = 0
    key: Any = None  # what the hour's values were read with (`refresh`'s hour_key)
    derived: dict[str, Any] = field(default_factory=dict)  # the caller's, until rows change


@dataclass
class HourRows:
    """The kept rows of the window's hours; `key`: what the values depend on (a new key
    starts afresh)."""

    key: Any = None
    hours: dict[int, _Hour] = field(default_factory=dict)
    last: int | None = None  # the previous run's now
    reread: int = 0  # hours read again after a change (for tests)
    counted: int = 0  # runs that counted per hour, their total having changed (for tests)

    def refresh(
        self,
        ctx: Context,
        key: Any,
        start: int,
        now: int,
        read: Reader,
        hour_key: Callable[[int], Any] = lambda b: None,
    ) -> None:
        """Bring the rows of (start, now] up to date: `read(cur, lo, hi)` returns the kept
        rows of (lo, hi]; an hour is read again too when its `hour_key(b)` changed (what
        its values depend on, e.g. the bounds they were filtered by)."""
        if key != self.key or self.last is None or self.last > now:
            self.key, self.hours, self.last = key, {}, None
        first, lo = start // HOUR + 1, start // HOUR * HOUR
        self.hours = {b: v for b, v in self.hours.items() if b >= first}
        last = lo if self.last is None else max(self.last, lo)
        table = ctx.store.table
        kept: dict[int, Figures] = {b: (v.n, v.newest, v.s) for b, v in self.hours.items()}
        with ctx.store.read() as cur:
            # counted before the rows are read: a row landing in between is read again later
            new = _per_hour(cur, table, last, now)
            if kept:
                cur.execute(sql.SQL(_TOTAL_SQL).format(table=table), {"lo": lo, "hi": last})
                total = cur.fetchone() or {"n": 0, "s": 0}
                if (int(total["n"]), int(total["s"])) != (
                    sum(f[0] for f in kept.values()),
                    sum(f[2] for f in kept.values()),
                ):
                    self.counted += 1
                    seen = _per_hour(cur, table, lo, last)
                    kept = {b: seen.get(b, (0, 0, 0)) for b in self.hours} | seen
            stale = [
                b
                for b, v in self.hours.items()
                if (v.n, v.newest, v.s) != kept[b] or v.key != hour_key(b)
            ]
            self.reread += len(stale)
            for b in stale:
                del self.hours[b]
            for a, b in _ranges(stale, last, now):
                t, value = read(cur, a, b)
                self._add(t, value)
        for b in range(first, -(-now // HOUR) + 1):  # hours without rows too
            h = self.hours.setdefault(b, _Hour(0, 0, np.zeros(0, np.int64), np.zeros(0, np.int64)))
            n, newest, total_s = kept.get(b, (0, 0, 0))
            n_new, newest_new, s_new = new.get(b, (0, 0, 0))
            h.n, h.newest, h.s = n + n_new, max(newest, newest_new), total_s + s_new
            h.key = hour_key(b)
        self.last = now

    def _add(self, t: np.ndarray, value: np.ndarray) -> None:
        bucket = (t + HOUR - 1) // HOUR
        for b in np.unique(bucket).tolist():
            m = bucket == b
            old = self.hours.get(b)
            if old is None:
                self.hours[b] = _Hour(0, 0, t[m], value[m])
            else:
                old.t = np.concatenate([old.t, t[m]])
                old.value = np.concatenate([old.value, value[m]])
                old.derived.clear()

    def values(self, start: int) -> np.ndarray:
        """The kept values of rows after `start`."""
        kept = list(self.hours.values())
        if not kept:
            return np.zeros(0, np.int64)
        t = np.concatenate([h.t for h in kept])
        return np.concatenate([h.value for h in kept])[t > start]


def _ranges(stale: list[int], last: int, now: int) -> list[tuple[int, int]]:
    """(lo, hi] ranges to read: the stale hours whole, and (last, now] outside them."""
    pieces = [((b - 1) * HOUR, min(b * HOUR, now)) for b in stale]
    t = last
    while t < now:
        b = t // HOUR + 1
        hi = min(b * HOUR, now)
        if b not in stale:
            pieces.append((t, hi))
        t = hi
    merged: list[tuple[int, int]] = []
    for a, b in sorted(pieces):
        if merged and merged[-1][1] == a:
            merged[-1] = (merged[-1][0], b)
        elif a < b:
            merged.append((a, b))
    return merged
