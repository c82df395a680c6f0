"""Retention: `perf-analyzer db prune` removes samples older than a number of days.

On a table partitioned by day (`db init --partitioned`) it drops whole partitions whose
every possible row is older than the cutoff, so no kept sample is ever touched. Each is
first detached with ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY (PostgreSQL 14+,
no DEFAULT partition), which neither waits for nor blocks the exporter's reads, then
dropped; otherwise DROP TABLE under a short lock timeout. It then creates the next days'
partitions, so one daily `db prune` keeps both ends of the table.

On a plain table pruning means DELETE, which leaves dead rows that bloat the table until
VACUUM, and holes that scatter later inserts across the heap (the end of BRIN-friendly
time order): refused unless asked for with `allow_delete`, and then done in bounded batches
so no transaction holds millions of row locks or stalls replication.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from psycopg import sql

from .partitions import (
    DAY,
    LOCK_TIMEOUT_MS,
    PREMAKE_DAYS,
    Layout,
    Partition,
    day_start,
    ensure_partitions,
    partition_name,
    read_layout,
    utc_minute,
)
from .schema import PARTITION_KEY, first_value
from .store import Store, StoreError

DELETE_BATCH_ROWS = 50_000
DETACH_TIMEOUT_MS = 120_000  # a concurrent detach waits for running reads (30 s at most)
COUNT_TIMEOUT_S = 600.0  # counting the rows of a big old day is a scan of it
MIN_DETACH_CONCURRENTLY = 140_000  # server_version_num


@dataclass(frozen=True)
class Pruned:
    name: str
    days: str  # the partition's range for people
    rows: int


@dataclass
class PruneResult:
    table: str
    partitioned: bool
    cutoff: int  # samples before this unix time are removed
    dry_run: bool
    dropped: list[Pruned] = field(default_factory=list)  # (or, dry run: would be)
    kept: int = 0  # partitions kept
    deleted_rows: int = 0  # plain table, --allow-delete (or, dry run: would be)
    batches: int = 0
    created: list[str] = field(default_factory=list)  # partitions made ahead
    method: str = ""

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.dropped) + self.deleted_rows


def prune(
    store: Store,
    keep_days: float,
    *,
    now: float | None = None,
    dry_run: bool = False,
    allow_delete: bool = False,
    premake_days: int = PREMAKE_DAYS,
    batch_rows: int = DELETE_BATCH_ROWS,
    progress: Callable[[str], None] | None = None,
) -> PruneResult:
    """Remove the samples older than `now - keep_days` (see the module's doc); `progress`
    hears one line per partition dropped or batch deleted."""
    if not keep_days > 0:
        raise ValueError(f"--keep-days must be a positive number of days, not {keep_days:g}")
    if premake_days < 0:
        raise ValueError("--premake-days must not be negative")
    now = time.time() if now is None else now
    cutoff = int(now - keep_days * DAY)
    say = progress or (lambda line: None)
    with store.read() as cur:
        layout = read_layout(cur, store.table)
    name = store.table_name
    if layout.kind == "missing":
        raise StoreError(
            f'table "{name}" does not exist in {store.target}; nothing to prune (check --table)'
        )
    if layout.kind == "other":
        raise StoreError(f'"{name}" is not a table (a view or foreign table?); cannot prune it')
    result = PruneResult(name, layout.kind == "partitioned", cutoff, dry_run)
    if layout.kind == "plain":
        if not allow_delete:
            raise StoreError(
                f'table "{name}" is not partitioned, so pruning it means DELETE, which leaves '
                "dead rows that bloat it until VACUUM and holes that scatter new rows; migrate "
                "it to a table made by `perf-analyzer db init --partitioned` (README: Retention)"
                " or pass --allow-delete to delete in batches anyway"
            )
        _delete(store, result, batch_rows, say)
        return result
    if not layout.by_time:
        raise StoreError(
            f'table "{name}" is {layout.describe()}, not by RANGE ({PARTITION_KEY}); '
            "db prune drops only daily partitions on sample_time: drop old partitions by hand"
        )
    _drop_partitions(store, layout, result, say)
    today = day_start(now)
    if premake_days and layout.default is None:  # (a DEFAULT partition takes those rows)
        if dry_run:
            result.created = [
                partition_name(layout.name, lo)
                for lo, _ in layout.gaps(today, today + (premake_days + 1) * DAY)
            ]
        else:
            result.created = ensure_partitions(store, today, today + premake_days * DAY)
    return result


def _drop_partitions(
    store: Store, layout: Layout, result: PruneResult, say: Callable[[str], None]
) -> None:
    """Every partition whose upper bound is at or before the cutoff: all its rows are old."""
    old = [p for p in layout.ranges if p.hi <= result.cutoff]
    result.kept = len(layout.partitions) - len(old)
    if not old:
        return
    with store.read(timeout=COUNT_TIMEOUT_S) as cur:
        rows = {}
        for p in old:
            cur.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(p.identifier))
            rows[p.name] = first_value(cur.fetchone())
        server = cur.connection.info.server_version
    concurrently = server >= MIN_DETACH_CONCURRENTLY and layout.default is None
    result.method = "detach concurrently, drop" if concurrently else "drop table"
    verb = "would drop" if result.dry_run else "dropped"
    for p in old:
        if not result.dry_run:
            _drop(store, layout, p, concurrently)
        result.dropped.append(Pruned(p.name, p.days, rows[p.name]))
        say(f'{verb} partition "{p.name}" ({p.days}): {rows[p.name]:,} rows')


def _drop(store: Store, layout: Layout, p: Partition, concurrently: bool) -> None:
    parent = sql.Identifier(layout.schema, layout.name)
    if concurrently:
        with store.autocommit() as cur:
            if cur is not None:
                cur.execute(
                    "SELECT set_config('lock_timeout', %s, false)", (str(DETACH_TIMEOUT_MS),)
                )
                cur.execute("SELECT set_config('statement_timeout', '0', false)")
                mode = "FINALIZE" if p.detach_pending else "CONCURRENTLY"
                cur.execute(
                    sql.SQL("ALTER TABLE {} DETACH PARTITION {} {}").format(
                        parent, p.identifier, sql.SQL(mode)
                    )
                )
                cur.execute(sql.SQL("DROP TABLE {}").format(p.identifier))
                return
    with store.write() as cur:  # ACCESS EXCLUSIVE on the parent: wait briefly or give up
        cur.execute("SELECT set_config('lock_timeout', %s, true)", (str(LOCK_TIMEOUT_MS),))
        if p.detach_pending:
            cur.execute(
                sql.SQL("ALTER TABLE {} DETACH PARTITION {} FINALIZE").format(parent, p.identifier)
            )
        cur.execute(sql.SQL("DROP TABLE {}").format(p.identifier))


def _delete(store: Store, result: PruneResult, batch_rows: int, say: Callable[[str], None]) -> None:
    """DELETE the old rows of a plain table, `batch_rows` per transaction."""
    key, table = sql.Identifier(PARTITION_KEY), store.table
    result.method = "delete"
    if result.dry_run:
        with store.read(timeout=COUNT_TIMEOUT_S) as cur:
            cur.execute(
                sql.SQL("SELECT count(*) AS n FROM {} WHERE {} < %s").format(table, key),
                (result.cutoff,),
            )
            result.deleted_rows = first_value(cur.fetchone())
        return
    statement = sql.SQL(
        "DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} WHERE {k} < %s LIMIT %s))"
    ).format(t=table, k=key)
    while True:
        with store.write() as cur:
            cur.execute(statement, (result.cutoff, batch_rows))
            deleted = max(cur.rowcount, 0)
        if deleted:
            result.deleted_rows += deleted
            result.batches += 1
            say(f"deleted {result.deleted_rows:,} rows older than {utc_minute(result.cutoff)}")
        if deleted < batch_rows:
            return
