"""Daily partitions of a partitioned samples table: read the layout, create the days
writers need, and create a partitioned table.

A partitioned samples table is RANGE-partitioned on sample_time, one partition per UTC
day, named `<table>_pYYYYMMDD`, in the parent's schema. Retention then drops whole days
(`db prune`) instead of deleting rows, and a recent-window read touches only today's
partition. There is no DEFAULT partition: the writers (`synth`, `sample`) create the days
they are about to write, and `db init --partitioned` / `db prune` create the next days
ahead for writers that do not (your own ingestion).

Partitions are made with CREATE TABLE ... (LIKE parent) and ATTACH PARTITION, which
locks the parent in SHARE UPDATE EXCLUSIVE mode: the exporter's reads and other writers
go on meanwhile (CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE and queue
every read behind the longest running analysis).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg import sql

from .errors import StoreError
from .schema import PARTITION_KEY, create_in, create_statements, first_value

if TYPE_CHECKING:
    import psycopg

    from .store import Store

DAY = 86_400
PREMAKE_DAYS = 7  # days after today that `db init --partitioned` and `db prune` create
MAX_NEW_PARTITIONS = 1_000  # one call creating more is a mistake (a bogus sample_time)
LOCK_TIMEOUT_MS = 5_000  # waiting longer for a lock would stall the exporter's reads


def day_start(t: float) -> int:
    """The UTC midnight at or before unix time `t`."""
    return int(t // DAY * DAY)


def _utc(t: float, fmt: str) -> str:
    try:
        return time.strftime(fmt, time.gmtime(t))
    except (OverflowError, OSError, ValueError):
        return f"unix time {t:g}"


def utc_day(t: float) -> str:
    return _utc(t, "%Y-%m-%d")


def utc_minute(t: float) -> str:
    return _utc(t, "%Y-%m-%d %H:%M UTC")


def partition_name(table: str, lo: int) -> str:
    """`<table>_pYYYYMMDD` of the partition starting at `lo`, within PostgreSQL's 63 bytes."""
    suffix = time.strftime("_p%Y%m%d", time.gmtime(lo))
    base = table.encode()[: 63 - len(suffix)].decode(errors="ignore")
    return base + suffix


@dataclass(frozen=True)
class Partition:
    schema: str
    name: str
    lo: float  # first sample_time it holds (-inf: MINVALUE; NaN: not a range partition)
    hi: float  # first sample_time it does not hold (+inf: MAXVALUE)
    default: bool = False
    detach_pending: bool = False  # an interrupted DETACH ... CONCURRENTLY (`db prune` ends it)

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def days(self) -> str:
        """Its time range for people: `2026-09-21`, or `2026-09-01 .. 2026-09-30`."""
        if self.default:
            return "DEFAULT"
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            lo = utc_day(self.lo) if math.isfinite(self.lo) else "MINVALUE"
            hi = utc_day(self.hi - 1) if math.isfinite(self.hi) else "MAXVALUE"
            return f"{lo} .. {hi}"
        if self.lo % DAY == 0 and self.hi - self.lo == DAY:
            return utc_day(self.lo)
        return f"{utc_minute(self.lo)} .. {utc_minute(self.hi)}"


@dataclass
class Layout:
    """How a table is stored, read from the catalog (no lock on the table)."""

    kind: str  # "missing", "plain", "partitioned" or "other" (view, foreign table, ...)
    oid: int | None = None
    schema: str = ""
    name: str = ""
    strategy: str | None = None  # "range", "list" or "hash" when partitioned
    key: tuple[str, ...] = ()
    partitions: list[Partition] = field(default_factory=list)

    @property
    def by_time(self) -> bool:
        """Partitioned by RANGE (sample_time): the layout `db init --partitioned` makes."""
        return (
            self.kind == "partitioned" and self.strategy == "range" and self.key == (PARTITION_KEY,)
        )

    @property
    def default(self) -> Partition | None:
        return next((p for p in self.partitions if p.default), None)

    @property
    def ranges(self) -> list[Partition]:
        """The range partitions, oldest first."""
        return sorted(
            (p for p in self.partitions if not p.default and not math.isnan(p.lo)),
            key=lambda p: p.lo,
        )

    def covers(self, t: float) -> bool:
        return any(p.lo <= t < p.hi for p in self.ranges) or self.default is not None

    def uncovered(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The parts of [lo, hi) that no range partition covers."""
        pieces: list[tuple[int, int]] = []
        cursor: float = lo
        for p in self.ranges:
            if p.hi <= cursor:
                continue
            if p.lo >= hi:
                break
            if p.lo > cursor:
                pieces.append((int(cursor), int(p.lo)))
            cursor = p.hi
            if cursor >= hi:
                break
        if cursor < hi:
            pieces.append((int(cursor), hi))
        return pieces

    def gaps(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """`uncovered`, cut at UTC midnights: the partitions to create."""
        days = []
        for a, b in self.uncovered(lo, hi):
            while a < b:
                cut = min(b, day_start(a) + DAY)
                days.append((a, cut))
                a = cut
        return days

    def describe(self) -> str:
        if self.kind != "partitioned":
            return f"{self.kind} table"
        key = ", ".join(self.key) or "an expression"
        return f"partitioned by {(self.strategy or '?').upper()} ({key})"


_LAYOUT_SQL = """
SELECT c.oid, c.relkind, n.nspname AS schema, c.relname AS name,
       CASE pt.partstrat WHEN 'r' THEN 'range' WHEN 'l' THEN 'list' WHEN 'h' THEN 'hash' END
           AS strategy,
       array(SELECT coalesce(a.attname, '(expression)')
               FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY AS k(attnum, ord)
               LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
              ORDER BY k.ord)::text[] AS key
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
 WHERE c.oid = to_regclass(%s)
"""

# inhdetachpending is PostgreSQL 14+; read through to_jsonb so older servers answer too
_PARTITIONS_SQL = """
SELECT n.nspname AS schema, c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound,
       coalesce((to_jsonb(i) ->> 'inhdetachpending')::boolean, false) AS detach_pending
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE i.inhparent = %s
"""

_RANGE_BOUND = re.compile(r"^FOR VALUES FROM \((.*)\) TO \((.*)\)$")


def _bound_value(text: str) -> float:
    text = text.strip()
    if text == "MINVALUE":
        return -math.inf
    if text == "MAXVALUE":
        return math.inf
    try:
        return float(text.strip("'"))
    except ValueError:
        return math.nan


def _partition(row: dict[str, Any] | tuple[Any, ...]) -> Partition:
    schema, name, bound, pending = row.values() if isinstance(row, dict) else row
    if bound == "DEFAULT":
        return Partition(schema, name, math.nan, math.nan, default=True, detach_pending=pending)
    match = _RANGE_BOUND.match(bound or "")
    lo, hi = (_bound_value(match[1]), _bound_value(match[2])) if match else (math.nan, math.nan)
    return Partition(schema, name, lo, hi, detach_pending=pending)


def read_layout(cur: psycopg.Cursor[Any], table: sql.Composable) -> Layout:
    """The table's layout and partitions, from the catalog only (works in a read-only
    transaction and takes no lock on the table). A `store.MappedTable` is read as its real
    table, its partition key under the contract's column names."""
    relation = getattr(table, "relation", table)
    renamed = {theirs: ours for ours, theirs in getattr(table, "columns", {}).items()}
    cur.execute(_LAYOUT_SQL, (relation.as_string(cur),))
    row = cur.fetchone()
    if row is None:
        return Layout("missing")
    oid, relkind, schema, name, strategy, key = row.values() if isinstance(row, dict) else row
    key = [renamed.get(k, k) for k in key or ()]
    kind = {"r": "plain", "p": "partitioned"}.get(relkind, "other")
    layout = Layout(kind, oid, schema, name, strategy, tuple(key or ()))
    if kind == "partitioned":
        cur.execute(_PARTITIONS_SQL, (oid,))
        layout.partitions = [_partition(r) for r in cur.fetchall()]
    return layout


def ensure_partitions_in(
    cur: psycopg.Cursor[Any], table: sql.Composable, start: float, end: float
) -> list[str]:
    """Create, in the cursor's (read-write) transaction, the daily partitions that rows
    with sample_time in [start, end] need; returns the names created.

    A no-op (one catalog query) for a plain or missing table, a table partitioned some
    other way, one with a DEFAULT partition (it takes the rows) and when every day exists.
    Concurrent writers serialise on an advisory lock, so a day is created once."""
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        return []
    lo, hi = day_start(start), day_start(end) + DAY
    layout = read_layout(cur, table)
    if not layout.by_time or layout.default is not None or not layout.uncovered(lo, hi):
        return []
    missing_days = sum(b - a for a, b in layout.uncovered(lo, hi)) / DAY
    if missing_days > MAX_NEW_PARTITIONS:
        raise StoreError(
            f"writing samples from {utc_day(start)} to {utc_day(end)} would create "
            f'{missing_days:,.0f} daily partitions of table "{layout.name}" (more than '
            f"{MAX_NEW_PARTITIONS:,}); check the rows' sample_time (unix seconds)"
        )
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"perf-analyzer:{layout.oid}",))
    layout = read_layout(cur, table)  # another writer may have made them meanwhile
    gaps = layout.gaps(lo, hi)
    cur.execute("SELECT set_config('lock_timeout', %s, true)", (str(LOCK_TIMEOUT_MS),))
    parent = sql.Identifier(layout.schema, layout.name)
    created = []
    for a, b in gaps:
        name = partition_name(layout.name, a)
        cur.execute(
            "SELECT to_regclass(%s) IS NOT NULL",
            (sql.Identifier(layout.schema, name).as_string(cur),),
        )
        if first_value(cur.fetchone()):
            raise StoreError(
                f'cannot create the partition of table "{layout.name}" for {utc_day(a)}: a '
                f'table named "{name}" already exists and is not its partition; drop or '
                "rename it"
            )
        part = sql.Identifier(layout.schema, name)
        cur.execute(
            sql.SQL(
                "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
                " INCLUDING STORAGE)"
            ).format(part, parent)
        )
        cur.execute(
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                parent, part, sql.Literal(a), sql.Literal(b)
            )
        )
        created.append(name)
    return created


def ensure_partitions(store: Store, start: float, end: float) -> list[str]:
    """`ensure_partitions_in` in its own short transaction, before a long write (COPY):
    the lock that ATTACH takes then lasts milliseconds, not the whole load."""
    with store.write() as cur:
        return ensure_partitions_in(cur, store.relation, start, end)


def init_partitioned_table(
    store: Store,
    *,
    premake_days: int = PREMAKE_DAYS,
    since: float | None = None,
    now: float | None = None,
) -> list[str]:
    """Create the samples table partitioned by day (idempotent), its indexes on the parent
    (so on every partition), and the partitions from `since` (default today) to
    `premake_days` after today; returns the partitions created.

    An existing plain table is refused: PostgreSQL cannot partition a table in place."""
    now = time.time() if now is None else now
    name = store.table_name
    with store.write() as cur:
        layout = read_layout(cur, store.table)
        if layout.kind == "plain":
            raise StoreError(
                f'table "{name}" already exists and is not partitioned, and PostgreSQL cannot '
                f"partition a table in place: create a partitioned table under another name "
                f"(`perf-analyzer db init --partitioned --table {name}_new --from <oldest "
                f"sample>`), copy the rows into it and swap the names (README: Retention)"
            )
        if layout.kind == "other":
            raise StoreError(f'"{name}" exists but is not a table (a view or foreign table?)')
        if layout.kind == "partitioned" and not layout.by_time:
            raise StoreError(
                f'table "{name}" is {layout.describe()}, not by RANGE ({PARTITION_KEY}); '
                "perf-analyzer manages only tables partitioned by day on sample_time"
            )
        create_in(cur, store, create_statements(store.table_parts, partitioned=True))
        first = min(now, since) if since is not None else now
        return ensure_partitions_in(cur, store.relation, first, now + premake_days * DAY)
