"""The samples table (README, "The samples table"): its columns and the DDL that creates it.

Column definitions live here once; the store, the simulator, the sampler and `db check`
all read them, so a column can never be spelled two ways. Daily partitions are managed in
`partitions`, and `db check`'s report is built in `tablecheck`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg import sql

if TYPE_CHECKING:
    import psycopg

    from .store import Store

DEFAULT_TABLE = "monitor_samples_ring"
MAX_COLUMN_NAME_BYTES = 63  # PostgreSQL's limit for names
PARTITION_KEY = "sample_time"  # the column a partitioned table is split on, by day


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    accepted: frozenset[str]  # type names (pg_catalog.format_type) that also work
    node: bool  # carried by node rows
    container: bool  # carried by container rows
    help: str


INT_TYPES = frozenset({"integer", "bigint", "numeric", "double precision"})
_TEXT = frozenset({"text", "character varying", "character", "name"})
_FLOAT = frozenset({"double precision", "real", "numeric", "integer", "bigint", "smallint"})


def _metric(name: str, help: str, *, node: bool = True, container: bool = False) -> Column:
    return Column(name, "double precision", _FLOAT, node, container, help)


KEY_COLUMNS: tuple[Column, ...] = (
    Column("sample_time", "bigint", INT_TYPES, True, True, "unix seconds, UTC"),
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

# Columns `db init` creates but a table may lack: the analyses read them when present and
# fall back otherwise. Writers that predate them (the simulator, COPY loads) leave them NULL.
CPU_COUNT = Column(
    "cpu_count",
    "integer",
    frozenset({"integer", "bigint", "smallint"}),
    True,
    False,
    "CPUs the node may use (affinity and cgroup quota), written by `perf-analyzer sample`",
)


# Host facts, also written by `perf-analyzer sample`: the fullest real filesystem's used
# share of blocks and of inodes (0..1), and pressure-stall information (PSI) `some avg60`
# (percent of the last minute some task waited on the resource; NULL without PSI).
def _fact(name: str, help: str) -> Column:
    return Column(name, "double precision", _FLOAT, True, False, help)


DISK_USED = _fact("disk_used_ratio", "fullest filesystem's used share of its blocks, 0..1")
INODES_USED = _fact("inodes_used_ratio", "fullest filesystem's used share of its inodes, 0..1")
PSI_CPU = _fact("psi_cpu_some_avg60", "CPU pressure stall, some, 60 s average, percent")
PSI_MEMORY = _fact("psi_memory_some_avg60", "memory pressure stall, some, 60 s average, percent")
PSI_IO = _fact("psi_io_some_avg60", "I/O pressure stall, some, 60 s average, percent")
HOST_FACTS: tuple[Column, ...] = (DISK_USED, INODES_USED, PSI_CPU, PSI_MEMORY, PSI_IO)

OPTIONAL_COLUMNS: tuple[Column, ...] = (CPU_COUNT, *HOST_FACTS)
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
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.sql_type))
        for c in COLUMNS + OPTIONAL_COLUMNS
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
        create_in(cur, store, create_statements(store.table_parts, indexes=indexes))


def create_in(cur: psycopg.Cursor[Any], store: Store, statements: list[sql.Composed]) -> None:
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
    present = [tuple(first_value(row)) for row in cur.fetchall()]
    for spec, statement in zip(INDEXES, index_statements, strict=False):
        if not any(columns[: len(spec.columns)] == spec.columns for columns in present):
            cur.execute(statement)


def first_value(row: dict[str, Any] | tuple[Any, ...] | None) -> Any:
    """The first column of a row, whatever the cursor's row factory."""
    if row is None:
        return None
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


_HAS_COLUMN_SQL = (
    "SELECT count(*) AS n FROM pg_attribute WHERE attrelid = to_regclass(%s)"
    " AND attname = %s AND attnum > 0 AND NOT attisdropped"
)


def has_column(cur: psycopg.Cursor[Any], store: Store, column: str) -> bool:
    """Whether the table has `column` (an optional one may be absent). Under a column
    mapping (a `store.MappedTable`) only the mapped optional columns are read."""
    columns = getattr(store.table, "columns", {})
    if columns and column not in columns and column not in COLUMN_NAMES:
        return False
    relation = getattr(store.table, "relation", store.table)
    cur.execute(_HAS_COLUMN_SQL, (relation.as_string(cur), columns.get(column, column)))
    return bool(first_value(cur.fetchone()))


_PRESENT_COLUMNS_SQL = (
    "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s)"
    " AND attname = ANY(%s) AND attnum > 0 AND NOT attisdropped"
)


def present_columns(cur: psycopg.Cursor[Any], store: Store, columns: tuple[str, ...]) -> set[str]:
    """Which of `columns` the table has, in one catalogue query. Under a column mapping only
    the mapped optional columns count (as in `has_column`)."""
    mapping: dict[str, str] = getattr(store.table, "columns", {})
    if mapping:
        columns = tuple(c for c in columns if c in mapping or c in COLUMN_NAMES)
    theirs = {mapping.get(c, c): c for c in columns}
    relation = getattr(store.table, "relation", store.table)
    cur.execute(_PRESENT_COLUMNS_SQL, (relation.as_string(cur), list(theirs)))
    return {theirs[first_value(row)] for row in cur.fetchall()}
