"""The samples table of the contract: its columns, the DDL that creates it (plain, or
partitioned by day with the partitions the writers need), and the check that says in plain
sentences what an existing table lacks and how it is stored.

Column definitions live here once; the store, the simulator, the sampler and `db check`
all read them, so a column can never be spelled two ways.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg import sql

if TYPE_CHECKING:
    import psycopg

    from .store import Store

DEFAULT_TABLE = "monitor_samples_ring"


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    accepted: frozenset[str]  # type names (pg_catalog.format_type) that also work
    node: bool  # carried by node rows
    container: bool  # carried by container rows
    help: str


_INT = frozenset({"integer", "bigint", "numeric", "double precision"})
_TEXT = frozenset({"text", "character varying", "character", "name"})
_FLOAT = frozenset({"double precision", "real", "numeric", "integer", "bigint", "smallint"})


def _metric(name: str, help: str, *, node: bool = True, container: bool = False) -> Column:
    return Column(name, "double precision", _FLOAT, node, container, help)


KEY_COLUMNS: tuple[Column, ...] = (
    Column("sample_time", "bigint", _INT, True, True, "unix seconds, UTC"),
    Column("node_name", "text", _TEXT, True, True, "host name"),
    Column("container_name", "text", _TEXT, False, True, "NULL on node rows"),
    Column("node_flag", "boolean", frozenset({"boolean"}), True, True, "TRUE on node rows"),
)

METRIC_COLUMNS: tuple[Column, ...] = (
    _metric("cpu_total_pct", "CPU busy, percent of the whole node", container=True),
    _metric("cpu_iowait_pct", "CPU time waiting for I/O, percent"),
    _metric("mem_available_mb", "memory available, MiB"),
    _metric("mem_total_mb", "memory installed, MiB"),
    _metric("swap_used_mb", "swap in use, MiB"),
    _metric("c_rss_mb", "container resident memory, MiB", node=False, container=True),
    _metric("load_1m", "1-minute load average"),
    _metric("temperature_c", "hottest sensor, degrees Celsius"),
    _metric("ctx_switches_s", "context switches per second"),
    _metric("disk_read_mb_s", "disk reads, MiB/s"),
    _metric("disk_write_mb_s", "disk writes, MiB/s"),
    _metric("net_rx_mb_s", "network received, MiB/s"),
    _metric("net_tx_mb_s", "network sent, MiB/s"),
    _metric("net_rx_errs_s", "receive errors per second"),
    _metric("net_tx_errs_s", "transmit errors per second"),
    _metric("net_rx_drops_s", "receive drops per second"),
    _metric("net_tx_drops_s", "transmit drops per second"),
)

COLUMNS: tuple[Column, ...] = KEY_COLUMNS + METRIC_COLUMNS
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
NODE_METRICS: tuple[str, ...] = tuple(c.name for c in METRIC_COLUMNS if c.node)
CONTAINER_METRICS: tuple[str, ...] = tuple(c.name for c in METRIC_COLUMNS if c.container)


# --------------------------------------------------------------------------- DDL


@dataclass(frozen=True)
class IndexSpec:
    suffix: str
    columns: tuple[str, ...]
    why: str


# Chosen with EXPLAIN (ANALYZE, BUFFERS) on a 50-node month: see docs/performance.md.
INDEXES: tuple[IndexSpec, ...] = (
    IndexSpec(
        "time_idx",
        ("sample_time",),
        "the recent-window reads (emergency check, 5-minute averages) touch only new rows",
    ),
    IndexSpec(
        "node_time_idx",
        ("node_name", "sample_time"),
        "per-node reads (newest sample per node, one node's history) skip other nodes",
    ),
)


def index_name(table: str, spec: IndexSpec) -> str:
    """`<table>_<suffix>`, shortened to PostgreSQL's 63-byte limit."""
    room = 63 - len(spec.suffix.encode()) - 1
    base = table.encode()[:room].decode(errors="ignore")
    return f"{base}_{spec.suffix}"


def create_statements(
    table_parts: tuple[str, ...], *, indexes: bool = True, partitioned: bool = False
) -> list[sql.Composed]:
    """CREATE TABLE and (with `indexes`) CREATE INDEX statements, all IF NOT EXISTS.

    `partitioned` makes the table RANGE-partitioned on sample_time (no partition yet); an
    index created on a partitioned table is created on every partition, present and future."""
    table = sql.Identifier(*table_parts)
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.sql_type)) for c in COLUMNS
    )
    partitioning = sql.SQL(" PARTITION BY RANGE ({})").format(sql.Identifier(PARTITION_KEY))
    statements = [
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}){}").format(
            table, columns, partitioning if partitioned else sql.SQL("")
        )
    ]
    for spec in INDEXES if indexes else ():
        statements.append(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(index_name(table_parts[-1], spec)),
                table,
                sql.SQL(", ").join(map(sql.Identifier, spec.columns)),
            )
        )
    return statements


def init_table(store: Store, *, indexes: bool = True) -> None:
    """Create the samples table and its indexes (a no-op for parts that exist).

    A bulk load into a new table passes `indexes=False`, loads, then calls again: building
    an index once after COPY is several times cheaper than maintaining it row by row."""
    with store.write() as cur:
        _create(cur, store, create_statements(store.table_parts, indexes=indexes))


def _create(cur: psycopg.Cursor[Any], store: Store, statements: list[sql.Composed]) -> None:
    """The schema, then CREATE TABLE, then each CREATE INDEX (in `INDEXES` order) unless
    the table already has an index leading with the same columns, under whatever name (a
    table renamed into place keeps its indexes' old names: no duplicate is built)."""
    if len(store.table_parts) == 2:
        cur.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(store.table_parts[0]))
        )
    table, *index_statements = statements
    cur.execute(table)
    cur.execute(
        "SELECT array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
        " ORDER BY k.ord)::text[] FROM pg_index i WHERE i.indrelid = to_regclass(%s)",
        (store.table.as_string(cur),),
    )
    present = [tuple(_first(row)) for row in cur.fetchall()]
    for spec, statement in zip(INDEXES, index_statements, strict=False):
        if not any(columns[: len(spec.columns)] == spec.columns for columns in present):
            cur.execute(statement)


# --------------------------------------------------------------------------- partitions
#
# A partitioned samples table is RANGE-partitioned on sample_time, one partition per UTC
# day, named `<table>_pYYYYMMDD`, in the parent's schema. Retention then drops whole days
# (`db prune`) instead of deleting rows, and a recent-window read touches only today's
# partition. There is no DEFAULT partition: the writers (`synth`, `sample`) create the days
# they are about to write, and `db init --partitioned` / `db prune` create the next days
# ahead for writers that do not (your own ingestion).
#
# Partitions are made with CREATE TABLE ... (LIKE parent) and ATTACH PARTITION, which
# locks the parent in SHARE UPDATE EXCLUSIVE mode: the exporter's reads and other writers
# go on meanwhile (CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE and queue
# every read behind the longest running analysis).

PARTITION_KEY = "sample_time"
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


def read_layout(cur: psycopg.Cursor[Any], table: sql.Identifier) -> Layout:
    """The table's layout and partitions, from the catalog only (works in a read-only
    transaction and takes no lock on the table)."""
    cur.execute(_LAYOUT_SQL, (table.as_string(cur),))
    row = cur.fetchone()
    if row is None:
        return Layout("missing")
    oid, relkind, schema, name, strategy, key = row.values() if isinstance(row, dict) else row
    kind = {"r": "plain", "p": "partitioned"}.get(relkind, "other")
    layout = Layout(kind, oid, schema, name, strategy, tuple(key or ()))
    if kind == "partitioned":
        cur.execute(_PARTITIONS_SQL, (oid,))
        layout.partitions = [_partition(r) for r in cur.fetchall()]
    return layout


def ensure_partitions_in(
    cur: psycopg.Cursor[Any], table: sql.Identifier, start: float, end: float
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
        from .store import StoreError

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
        if _first(cur.fetchone()):
            from .store import StoreError

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


def _first(row: dict[str, Any] | tuple[Any, ...] | None) -> Any:
    if row is None:
        return None
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


def ensure_partitions(store: Store, start: float, end: float) -> list[str]:
    """`ensure_partitions_in` in its own short transaction, before a long write (COPY):
    the lock that ATTACH takes then lasts milliseconds, not the whole load."""
    with store.write() as cur:
        return ensure_partitions_in(cur, store.table, start, end)


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
    from .store import StoreError

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
        _create(cur, store, create_statements(store.table_parts, partitioned=True))
        first = min(now, since) if since is not None else now
        return ensure_partitions_in(cur, store.table, first, now + premake_days * DAY)


# --------------------------------------------------------------------------- db check


@dataclass(frozen=True)
class Finding:
    level: str  # "error": the analyses cannot run; "warning": they run, but slowly or partly
    message: str


@dataclass
class CheckReport:
    table: str
    quoted: str = ""  # the table as a quoted identifier, for SQL in the messages
    findings: list[Finding] = field(default_factory=list)
    rows_estimate: int | None = None
    layout: Layout | None = None
    size_bytes: int | None = None
    first_sample: float | None = None  # oldest and newest sample_time (None: not read)
    last_sample: float | None = None
    notes: list[str] = field(default_factory=list)  # what the table is, for people
    recommendations: list[str] = field(default_factory=list)  # what to do before it hurts

    @property
    def usable(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

    @property
    def span_days(self) -> float | None:
        if self.first_sample is None or self.last_sample is None:
            return None
        return (self.last_sample - self.first_sample) / DAY

    def error(self, message: str) -> None:
        self.findings.append(Finding("error", message))

    def warning(self, message: str) -> None:
        self.findings.append(Finding("warning", message))


_COLUMNS_SQL = """
SELECT a.attname AS name,
       regexp_replace(format_type(a.atttypid, a.atttypmod), '\\(.*\\)', '') AS type
  FROM pg_attribute a
 WHERE a.attrelid = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped
"""

_INDEX_COLUMNS = """array(SELECT a.attname
               FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              ORDER BY k.ord)::text[]"""

_INDEXES_SQL = f"""
SELECT ic.relname AS name, am.amname AS method, {_INDEX_COLUMNS} AS columns
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_am am ON am.oid = ic.relam
 WHERE i.indrelid = %(oid)s
"""

# the leaf partitions' own indexes (a partition attached by hand may lack the parent's)
_PARTITION_INDEXES_SQL = f"""
SELECT t.relid AS oid, {_INDEX_COLUMNS} AS columns
  FROM pg_partition_tree(%(oid)s) t
  LEFT JOIN pg_index i ON i.indrelid = t.relid
 WHERE t.isleaf
"""

# size and row estimate of the table, or of all its partitions (a partitioned table's
# parent has no storage of its own); reltuples < 0: never vacuumed nor analyzed
_SIZE_SQL = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint AS bytes,
       coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint AS rows,
       count(*) FILTER (WHERE c.reltuples < 0 AND pg_relation_size(c.oid) > 0) AS unanalyzed,
       count(*) AS leaves
  FROM pg_class c
 WHERE c.oid IN (SELECT relid FROM pg_partition_tree(%(oid)s) WHERE isleaf)
    OR (c.oid = %(oid)s AND c.relkind <> 'p')
"""

# Thresholds of the recommendations
PARTITION_ADVICE_ROWS = 1_000_000  # a plain table this big (or this old) should be
PARTITION_ADVICE_DAYS = 14  # partitioned before old rows are removed
KEEP_DAYS_ADVICE = 35  # the analyses read at most 30 days (capacity planning), plus slack
AHEAD_WARNING_DAYS = 2  # fewer days of partitions ahead than this: writes soon fail


def check_table(store: Store, *, now: float | None = None) -> CheckReport:
    """Compare the table with the contract and describe how it is stored (plain or
    partitioned, size, rows, time span); every finding says what to do."""
    now = time.time() if now is None else now
    name = store.table_name
    report = CheckReport(name)
    with store.read() as cur:
        quoted = report.quoted = store.table.as_string(cur)
        cur.execute(
            "SELECT c.oid, c.relkind, c.reltuples::bigint AS rows, "
            "has_table_privilege(c.oid, 'SELECT') AS can_select "
            "FROM pg_class c WHERE c.oid = to_regclass(%s)",
            (quoted,),
        )
        table = cur.fetchone()
        if table is None:
            report.error(
                f'table "{name}" does not exist in {store.target}; create it with '
                f"`perf-analyzer db init --table {name}`"
            )
            return report
        report.rows_estimate = max(table["rows"], 0)
        if not table["can_select"]:
            report.error(
                f'the connecting role may not read table "{name}"; grant it with '
                f"GRANT SELECT ON {quoted} TO <exporter role>"
            )
        oid = {"oid": table["oid"]}
        cur.execute(_COLUMNS_SQL, oid)
        present = {row["name"]: row["type"] for row in cur.fetchall()}
        cur.execute(_INDEXES_SQL, oid)
        indexes = cur.fetchall()
        layout = report.layout = read_layout(cur, store.table)
        unanalyzed = 0
        if layout.kind in ("plain", "partitioned"):
            cur.execute(_SIZE_SQL, oid)
            size = cur.fetchone()
            report.size_bytes = size["bytes"]
            unanalyzed = size["unanalyzed"] if size["leaves"] else 0
            if layout.kind == "partitioned":
                report.rows_estimate = size["rows"]
        partition_indexes: dict[int, list[tuple[str, ...]]] = {}
        if layout.kind == "partitioned":
            cur.execute(_PARTITION_INDEXES_SQL, oid)
            for row in cur.fetchall():
                partition_indexes.setdefault(row["oid"], [])
                if row["columns"]:
                    partition_indexes[row["oid"]].append(tuple(row["columns"]))
        time_type = present.get(PARTITION_KEY)
        time_indexed = any(tuple(ix["columns"][:1]) == (PARTITION_KEY,) for ix in indexes)
        if table["can_select"] and time_indexed and time_type in _INT:
            # min and max along the index: two probes (per partition), not a scan
            cur.execute(
                sql.SQL(
                    "SELECT min({k})::float8 AS first, max({k})::float8 AS last FROM {t}"
                ).format(k=sql.Identifier(PARTITION_KEY), t=store.table)
            )
            span = cur.fetchone()
            report.first_sample, report.last_sample = span["first"], span["last"]
    _check_columns(report, present)
    _check_indexes(report, indexes)
    _describe(report, layout, unanalyzed, time_indexed)
    if layout.kind == "partitioned":
        _check_partitions(report, layout, partition_indexes, indexes, now)
    _recommend(report, layout, now)
    return report


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'s' * (n != 1)}"


def _count(n: float) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} M"
    if n >= 10_000:
        return f"{n / 1e3:.0f} k"
    return f"{n:,.0f}"


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _describe(report: CheckReport, layout: Layout, unanalyzed: int, time_indexed: bool) -> None:
    """One note saying what the table is: layout, size, rows, time span."""
    parts = []
    if layout.kind == "plain":
        parts.append("plain table (not partitioned)")
    elif layout.by_time:
        ranges = layout.ranges
        text = (
            f"partitioned by day on {PARTITION_KEY}: {_plural(len(layout.partitions), 'partition')}"
        )
        if ranges:
            last = ranges[-1]
            last_day = utc_day(last.hi - 1) if math.isfinite(last.hi) else "MAXVALUE"
            first_day = utc_day(ranges[0].lo) if math.isfinite(ranges[0].lo) else "MINVALUE"
            text += f" from {first_day} to {last_day}"
            if math.isfinite(ranges[0].lo) and math.isfinite(last.hi):
                holes = layout.uncovered(int(ranges[0].lo), int(last.hi))
                missing = sum(b - a for a, b in holes) / DAY
                text += f" ({missing:,.0f} days in between have none)" if holes else ""
        if layout.default is not None:
            text += f" and a DEFAULT partition ({layout.default.name})"
        parts.append(text)
    else:
        parts.append(layout.describe())
    if report.size_bytes is not None:
        parts.append(_size(report.size_bytes))
    if report.rows_estimate:
        rows = f"about {_count(report.rows_estimate)} rows"
        if unanalyzed:
            rows += f" (not counting {unanalyzed} never analyzed)"
        parts.append(rows)
    elif unanalyzed:
        parts.append("row count unknown until ANALYZE has run")
    if report.first_sample is not None and report.last_sample is not None:
        parts.append(
            f"samples from {utc_minute(report.first_sample)} to {utc_minute(report.last_sample)}"
            f" ({report.span_days:.1f} days)"
        )
    elif not time_indexed:
        parts.append("time span not read (no index on sample_time)")
    report.notes.append(", ".join(parts))


def _check_partitions(
    report: CheckReport,
    layout: Layout,
    partition_indexes: dict[int, list[tuple[str, ...]]],
    parent_indexes: list[dict[str, Any]],
    now: float,
) -> None:
    name = report.table
    if not layout.by_time:
        report.warning(
            f"table is {layout.describe()}, not by RANGE ({PARTITION_KEY}): the analyses run, "
            "but a time window's read may scan every partition, and `perf-analyzer db prune` "
            "and the automatic daily partitions of `synth` and `sample` do not apply"
        )
        return
    if not layout.partitions:
        report.warning(
            "the table has no partition yet, so writes fail unless the writer creates its "
            f"own (`synth` and `sample` do); `perf-analyzer db init --partitioned --table {name}`"
            f" creates today's and the next {PREMAKE_DAYS} days' partitions"
        )
    elif layout.default is None:
        ahead = _covered_until(layout, now)
        if ahead is None:
            report.warning(
                f"no partition holds the current time ({utc_minute(now)}): writes of new "
                "samples fail with 'no partition of relation found for row'; "
                f"`perf-analyzer db init --partitioned --table {name}` creates today's and the "
                f"next {PREMAKE_DAYS} days' partitions (`synth` and `sample` create their own)"
            )
        elif ahead - now < AHEAD_WARNING_DAYS * DAY:
            report.warning(
                f"the partitions end at {utc_minute(ahead)}, in {(ahead - now) / 3600:.0f} "
                "hours: writes after that fail unless the writer makes its own (`synth` and "
                f"`sample` do); schedule `perf-analyzer db prune --table {name} --keep-days "
                f"{KEEP_DAYS_ADVICE}` daily, it also creates the next {PREMAKE_DAYS} days"
            )
    else:
        report.warning(
            f'the DEFAULT partition "{layout.default.name}" takes rows no daily partition '
            "holds: `perf-analyzer db prune` never drops it, so its rows are never removed, "
            "and new daily partitions are not created while it exists; move its rows into "
            "daily partitions and drop it"
        )
    for p in layout.partitions:
        if p.detach_pending:
            report.warning(
                f'partition "{p.name}" is half detached (an interrupted DETACH ... CONCURRENTLY);'
                f" `perf-analyzer db prune --table {name}` finishes it, or run ALTER TABLE "
                f"{report.quoted} DETACH PARTITION {p.identifier.as_string(None)} FINALIZE"
            )
    for spec in INDEXES:
        width = len(spec.columns)
        if not any(tuple(ix["columns"][:width]) == spec.columns for ix in parent_indexes):
            continue  # said once for the whole table already
        lacking = sum(
            not any(cols[:width] == spec.columns for cols in found)
            for found in partition_indexes.values()
        )
        if lacking:
            report.warning(
                f"{lacking} of {len(partition_indexes)} partitions lack the index on "
                f"({', '.join(spec.columns)}): reads of their days scan them whole; "
                f"{spec.why}. CREATE INDEX ON {report.quoted} ({', '.join(spec.columns)}) "
                "adds it to every partition"
            )


def _covered_until(layout: Layout, now: float) -> float | None:
    """The end of the partitions' unbroken coverage from `now` on (None: `now` uncovered)."""
    end: float | None = None
    for p in layout.ranges:
        if p.lo <= (now if end is None else end) < p.hi:
            end = p.hi
    return end


def _recommend(report: CheckReport, layout: Layout, now: float) -> None:
    rows = report.rows_estimate or 0
    days = report.span_days or 0.0
    if layout.kind == "plain" and (rows >= PARTITION_ADVICE_ROWS or days >= PARTITION_ADVICE_DAYS):
        if rows:
            holds = f"has {_count(rows)} rows" + (f" over {days:.0f} days" if days else "")
        else:
            holds = f"holds {days:.0f} days of samples"
        report.recommendations.append(
            f"table {holds} and is not partitioned: retention by DELETE "
            "will bloat it (dead rows that only VACUUM reclaims, holes that scatter new rows); "
            f"consider `perf-analyzer db init --partitioned` on a new table and migrating "
            f"(README: Retention), then `perf-analyzer db prune --keep-days {KEEP_DAYS_ADVICE}`"
            " daily"
        )
    if layout.by_time:
        cutoff = now - KEEP_DAYS_ADVICE * DAY
        old = [p for p in layout.ranges if p.hi <= cutoff]
        if old:
            report.recommendations.append(
                f"{_plural(len(old), 'partition')} hold only samples older than "
                f"{KEEP_DAYS_ADVICE} days, "
                "more than the analyses read (capacity planning: 30 days); schedule "
                f"`perf-analyzer db prune --table {report.table} --keep-days "
                f"{KEEP_DAYS_ADVICE}` daily: it drops whole old days and creates the next "
                f"{PREMAKE_DAYS}"
            )


def _check_columns(report: CheckReport, present: dict[str, str]) -> None:
    for column in COLUMNS:
        found = present.get(column.name)
        if found is None:
            report.error(
                f'column "{column.name}" ({column.help}) is missing; add it with '
                f'ALTER TABLE {report.quoted} ADD COLUMN "{column.name}" {column.sql_type}'
            )
        elif found not in column.accepted:
            report.error(
                f'column "{column.name}" has type {found}, expected {column.sql_type}; '
                f'change it with ALTER TABLE {report.quoted} ALTER COLUMN "{column.name}" '
                f'TYPE {column.sql_type} USING "{column.name}"::{column.sql_type}'
            )


def _check_indexes(report: CheckReport, indexes: list[dict[str, Any]]) -> None:
    for spec in INDEXES:
        width = len(spec.columns)
        if not any(tuple(ix["columns"][:width]) == spec.columns for ix in indexes):
            report.warning(
                f"no index on ({', '.join(spec.columns)}): analyses still run, but every "
                f"read scans the whole table; {spec.why}. Create it with "
                f"CREATE INDEX ON {report.quoted} ({', '.join(spec.columns)}) "
                f"(or run `perf-analyzer db init`, which adds missing indexes)"
            )
