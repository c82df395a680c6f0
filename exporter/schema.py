"""The samples table of the contract: its columns, the DDL that creates it, and the check
that says in plain sentences what an existing table lacks.

Column definitions live here once; the store, the simulator, the sampler and `db check`
all read them, so a column can never be spelled two ways.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg import sql

if TYPE_CHECKING:
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


def create_statements(table_parts: tuple[str, ...], *, indexes: bool = True) -> list[sql.Composed]:
    """CREATE TABLE and (with `indexes`) CREATE INDEX statements, all IF NOT EXISTS."""
    table = sql.Identifier(*table_parts)
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.sql_type)) for c in COLUMNS
    )
    statements = [sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(table, columns)]
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
        if len(store.table_parts) == 2:
            cur.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    sql.Identifier(store.table_parts[0])
                )
            )
        for statement in create_statements(store.table_parts, indexes=indexes):
            cur.execute(statement)


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

    @property
    def usable(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

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

_INDEXES_SQL = """
SELECT ic.relname AS name, am.amname AS method,
       array(SELECT a.attname
               FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              ORDER BY k.ord)::text[] AS columns
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_am am ON am.oid = ic.relam
 WHERE i.indrelid = %(oid)s
"""


def check_table(store: Store) -> CheckReport:
    """Compare the table with the contract; every finding says what to do."""
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
        cur.execute(_COLUMNS_SQL, {"oid": table["oid"]})
        present = {row["name"]: row["type"] for row in cur.fetchall()}
        cur.execute(_INDEXES_SQL, {"oid": table["oid"]})
        indexes = cur.fetchall()
    _check_columns(report, present)
    _check_indexes(report, indexes)
    return report


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
