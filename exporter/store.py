"""Connections and transactions: the only code that connects to PostgreSQL.

The SQL itself sits beside the code that needs it (schema, partitions, tablecheck,
retention, sampler, rollups, analyses), always run on a cursor this module hands out.

Reads run in read-only transactions with a statement timeout, so an analysis can neither
write nor hold a connection for ever; the table name is always composed as a quoted
identifier; and every database error leaves this module as a `StoreError` whose message is
one sentence a person can act on, with the password redacted.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from .errors import StoreError
from .schema import COLUMN_NAMES, DEFAULT_TABLE, first_value
from .shard import ALL, Shard

log = logging.getLogger(__name__)

APPLICATION_NAME = "perf-analyzer"
DSN_ENV_VARS = ("PERF_ANALYZER_DSN", "DATA_SOURCE_NAME")
# a probe's answer to why the pool timed out serves the requests that timed out with it
PROBE_REUSE_SECONDS = 1.0
MAX_IDENTIFIER_BYTES = 63  # PostgreSQL silently truncates longer names: refuse them instead
SERVER_ENCODING = "UTF8"  # the only one whose names and text psycopg reads back as str


# --------------------------------------------------------------------------- connection info


def resolve_dsn(dsn: str | None = None) -> str:
    """The DSN to use: the argument, else $PERF_ANALYZER_DSN, else $DATA_SOURCE_NAME (the
    postgres_exporter convention), each also readable from a file named by `<VAR>_FILE`;
    an empty string leaves everything to libpq's own PG* variables."""
    if dsn:
        return dsn
    for var in DSN_ENV_VARS:
        if os.environ.get(var):
            return os.environ[var]
        path = os.environ.get(f"{var}_FILE")
        if path:
            try:
                with open(path, encoding="utf-8") as fh:
                    return fh.read().strip()
            except OSError as exc:
                raise StoreError(f"cannot read {var}_FILE {path!r}: {exc.strerror}") from None
    return ""


def _password_of(dsn: str) -> str | None:
    try:
        password = conninfo_to_dict(dsn).get("password") or os.environ.get("PGPASSWORD")
        return str(password) if password else None
    except psycopg.Error:
        match = re.search(r"://[^:/@]*:([^@]*)@", dsn) or re.search(r"password\s*=\s*(\S+)", dsn)
        return match.group(1) if match else os.environ.get("PGPASSWORD")


def redact(text: str, dsn: str) -> str:
    """`text` with the DSN's password (and any URL credentials) replaced by ***."""
    password = _password_of(dsn)
    if password:
        text = text.replace(password, "***")
    text = re.sub(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", text)


def describe_target(dsn: str) -> str:
    """`user@host:port/dbname`, for messages (never the password)."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "the configured database"
    host = info.get("host") or os.environ.get("PGHOST") or "localhost"
    port = info.get("port") or os.environ.get("PGPORT") or "5432"
    user = str(info.get("user") or os.environ.get("PGUSER") or "")
    dbname = info.get("dbname") or os.environ.get("PGDATABASE") or user or "postgres"
    return f"{user + '@' if user else ''}{host}:{port}/{dbname}"


# --------------------------------------------------------------------------- table names


def table_name_parts(name: str) -> tuple[str, ...]:
    """(table,) or (schema, table); anything else is refused.

    Every character is allowed inside a part (it is quoted, never pasted), but a part may
    not be empty, contain NUL or exceed PostgreSQL's 63 bytes (it would silently name a
    different table)."""
    if not isinstance(name, str) or not name.strip():
        raise StoreError("the table name is empty")
    parts = name.split(".")
    if len(parts) > 2:
        raise StoreError(
            f"table name {name!r} has more than one dot: give `table` or `schema.table`"
        )
    for part in parts:
        if not part:
            raise StoreError(f"table name {name!r} has an empty schema or table part")
        if "\x00" in part:
            raise StoreError("the table name contains a NUL character")
        if len(part.encode()) > MAX_IDENTIFIER_BYTES:
            raise StoreError(
                f"table name part {part[:20]!r}... is longer than PostgreSQL's "
                f"{MAX_IDENTIFIER_BYTES}-byte limit for names"
            )
    return tuple(parts)


def parse_table_name(name: str) -> sql.Identifier:
    """`table` or `schema.table` as a quoted identifier (see `table_name_parts`)."""
    return sql.Identifier(*table_name_parts(name))


# --------------------------------------------------------------------------- column mapping

# The mapping a Store takes when given none: the command line's --columns (or the
# configuration's `table.columns`), set once at start by the CLI.
default_columns: dict[str, str] = {}


class MappedTable(sql.Composed):
    """A table whose columns are named differently, read under the contract's names.

    It renders as `((SELECT "ts" AS sample_time, ... FROM "their"."tbl") AS _pa_samples
    CROSS JOIN (SELECT) AS _pa_unit)`: a parenthesised join, because PostgreSQL before 16
    wants an alias after a subquery in FROM while a join takes one or none, so every
    `FROM {t}` and `FROM {t} s` of the analyses reads it unchanged. The planner flattens
    both sides, so predicates reach the real table and its indexes. `relation` is the real
    table, for the catalog (to_regclass) and for writes; `columns` maps contract names to
    the table's."""

    def __init__(
        self, relation: sql.Identifier, columns: Mapping[str, str], names: Iterable[str]
    ) -> None:
        select = sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(sql.Identifier(columns[n]), sql.Identifier(n))
            if columns.get(n, n) != n
            else sql.Identifier(n)
            for n in names
        )
        super().__init__(
            [
                sql.SQL("((SELECT "),
                select,
                sql.SQL(" FROM "),
                relation,
                sql.SQL(") AS _pa_samples CROSS JOIN (SELECT) AS _pa_unit)"),
            ]
        )
        self.relation = relation
        self.columns = dict(columns)
        self.names = tuple(names)  # the contract names it reads, in order


def relation_of(table: sql.Composable) -> sql.Composable:
    """The real table behind `Store.table` (itself unless it is a `MappedTable`)."""
    return table.relation if isinstance(table, MappedTable) else table


# --------------------------------------------------------------------------- lent connections

# Connections lent out by every store of this process, so that shutdown can cancel their
# running statements (the pool lists only the idle ones).
_lent: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
_lent_lock = threading.Lock()


def lent_connections() -> list[psycopg.Connection[Any]]:
    """The connections stores have lent out and not yet taken back."""
    with _lent_lock:
        return list(_lent)


# --------------------------------------------------------------------------- errors


def is_recovery_conflict(exc: BaseException) -> bool:
    """A query a hot standby cancelled because replaying the primary's WAL needed what it
    read (SQLSTATE 40001, "conflict with recovery"): the same query may well pass again."""
    return isinstance(exc, errors.SerializationFailure) and "conflict with recovery" in str(exc)


def translate(exc: psycopg.Error, dsn: str, table: str) -> StoreError:
    """One sentence for a psycopg error, naming what to do about it."""
    first_line = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else "", dsn)
    target = describe_target(dsn)
    if isinstance(exc, errors.UndefinedTable):
        return StoreError(
            f'table "{table}" does not exist in {target}; create it with '
            f"`perf-analyzer db init --table {table}` or pass the right --table",
            permanent=True,
        )
    if isinstance(exc, errors.UndefinedColumn):
        return StoreError(
            f'table "{table}" lacks a column the analysis needs ({first_line}); '
            f"`perf-analyzer db check` lists what differs from the expected schema"
        )
    if isinstance(exc, errors.InsufficientPrivilege):
        return StoreError(f"permission denied on {target}: {first_line}", permanent=True)
    if isinstance(exc, errors.LockNotAvailable):
        return StoreError(
            f"a lock on {target} was not granted in time ({first_line}); a long query or "
            "another maintenance command holds the table: try again"
        )
    if is_recovery_conflict(exc):
        return StoreError(
            f"a hot standby at {target} cancelled a query to replay changes from its primary "
            f"({first_line}); run it again (the exporter retries at its next refresh), and set "
            "hot_standby_feedback or a larger max_standby_streaming_delay on the standby"
        )
    if isinstance(exc, errors.QueryCanceled):
        return StoreError(f"a query on {target} was cancelled: {first_line}")
    if isinstance(exc, errors.ReadOnlySqlTransaction):
        return StoreError(f"refused to write in a read-only transaction: {first_line}")
    if isinstance(
        exc, errors.DatatypeMismatch | errors.UndefinedFunction | errors.InvalidBinaryRepresentation
    ):
        return StoreError(
            f'table "{table}" has a column of an unexpected type ({first_line}); '
            "`perf-analyzer db check` lists what differs"
        )
    if isinstance(exc, psycopg.OperationalError):
        return StoreError(f"cannot reach PostgreSQL at {target}: {first_line}", unreachable=True)
    return StoreError(f"database error on {target}: {first_line}")


# --------------------------------------------------------------------------- node guard


class NodeGuard:
    """The nodes the analyses may read when the table names more nodes than the exporter
    can ever serve (`exporter.max_nodes`); `kept` None: every node, the guard does not
    bite. Set by `analyses.hosts.guard_nodes`, read by `Store.shard_filter` (so every
    query that reads through the shard's predicate reads only the kept nodes) and by the
    collector for `perf_analyzer_nodes_ignored`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kept: frozenset[str] | None = None
        self.ignored = 0  # nodes of this shard the analyses do not read
        self.key: Any = None  # what the current choice was made from (the chooser's)
        self._predicate: sql.Composable | None = None
        self._rendered: bytes | None = None  # the kept nodes' predicate as query text

    def set(self, kept: frozenset[str] | None, ignored: int, key: Any) -> None:
        """Record a choice (the predicate is composed again only when the kept set changed)."""
        if kept != self.kept:
            # a literal array: the exporter reads in read-only transactions (no temp
            # table), and PostgreSQL hashes a long constant array for `= ANY`
            self._predicate = (
                None
                if kept is None
                else sql.SQL("node_name = ANY({})").format(sql.Literal(sorted(kept)))
            )
            self._rendered = None
        self.kept, self.ignored, self.key = kept, ignored, key

    def predicate(self, shard: sql.Composable) -> sql.Composable:
        """`shard` alone, or `shard` AND the kept nodes when the guard bites."""
        kept = self._predicate
        if kept is None:
            return shard
        if shard is ALL:
            return sql.SQL("({})").format(kept)
        return sql.SQL("({} AND {})").format(shard, kept)

    def render(self, shard: sql.Composable, context: Any) -> bytes:
        """`predicate(shard)` as query text; the kept names are rendered once per choice
        (thousands of literals), not per query."""
        kept, rendered = self._predicate, self._rendered
        if kept is None:
            return shard.as_bytes(context)
        if rendered is None:
            rendered = self._rendered = kept.as_bytes(context)
        if shard is ALL:
            return b"(" + rendered + b")"
        return b"(" + shard.as_bytes(context) + b" AND " + rendered + b")"


class GuardedShard(sql.Composable):
    """The shard's predicate and the node guard's, rendered when a query runs: a query
    composed once and cached (the emergency check's, the anomaly model's) follows the
    guard's later choices. Below the limit it renders exactly as the shard's predicate."""

    def __init__(self, guard: NodeGuard, shard: sql.Composable) -> None:
        super().__init__(shard)
        self.guard, self.shard = guard, shard

    def as_bytes(self, context: Any = None) -> bytes:
        return self.guard.render(self.shard, context)

    def as_string(self, context: Any = None) -> str:
        return self.guard.predicate(self.shard).as_string(context)


# --------------------------------------------------------------------------- the store


class Store:
    """Connections and transactions for one samples table.

    `source` is a DSN string (a small pool is made), a psycopg `Connection` (used as is,
    one transaction at a time) or a `psycopg_pool.ConnectionPool`; None resolves the DSN
    from the environment (`resolve_dsn`)."""

    def __init__(
        self,
        source: str | psycopg.Connection[Any] | ConnectionPool | None = None,
        table: str = DEFAULT_TABLE,
        *,
        statement_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        pool_size: int = 4,
        application_name: str = APPLICATION_NAME,
        shard: Shard | None = None,
        columns: Mapping[str, str] | None = None,
    ) -> None:
        self.table_name = table
        self.table_parts = table_name_parts(table)
        # the real table: the catalog, writes and `db check` use it
        self.relation = sql.Identifier(*self.table_parts)
        # contract column name -> the table's (`--columns`); empty: the contract's names
        mapping = default_columns if columns is None else columns
        self.columns = {k: v for k, v in mapping.items() if k != v}
        # what every analysis reads FROM: the table, or it under the contract's names
        self.table: sql.Composable = self.relation
        if self.columns:
            optional = [n for n in self.columns if n not in COLUMN_NAMES]
            self.table = MappedTable(self.relation, self.columns, [*COLUMN_NAMES, *optional])
        self.shard = shard
        # the rows of this exporter's shard of the nodes, before the node guard
        self.shard_predicate = shard.predicate() if shard else ALL
        # which of those nodes the analyses read when the table names more than can be
        # served (`analyses.hosts.guard_nodes` chooses them)
        self.node_guard = NodeGuard()
        self._guarded = GuardedShard(self.node_guard, self.shard_predicate)
        self.statement_timeout = statement_timeout
        self.connect_timeout = connect_timeout
        self.application_name = application_name
        self._lock = threading.Lock()
        self._probe_lock = threading.Lock()
        self._last_probe: tuple[float, StoreError] = (-PROBE_REUSE_SECONDS, StoreError(""))
        self._borrowed: psycopg.Connection[Any] | None = None
        self._pool: ConnectionPool | None = None
        self._lent_here = 0  # connections of this store's pool in use now
        self._owns_pool = False
        self.dsn = ""
        if isinstance(source, psycopg.Connection):
            self._borrowed = source
        elif isinstance(source, ConnectionPool):
            self._pool = source
            conninfo = source.conninfo
            self.dsn = conninfo if isinstance(conninfo, str) else conninfo()
        else:
            self.dsn = resolve_dsn(source)
            self._validate_dsn()
            self._pool_size = pool_size

    @property
    def shard_filter(self) -> sql.Composable:
        """What every analysis query ANDs: the rows of this exporter's shard of the nodes
        and, when the node guard bites, of the nodes it keeps; exactly the shard's
        predicate otherwise, so a fleet below the limit is read as it always was. Rendered
        when the query runs (`GuardedShard`), so a query composed earlier follows the
        guard's current choice."""
        return self._guarded

    def _validate_dsn(self) -> None:
        try:
            conninfo_to_dict(self.dsn)
        except psycopg.Error as exc:
            reason = redact(str(exc).strip(), self.dsn)
            raise StoreError(f"the connection string is not valid: {reason}") from None

    @property
    def conninfo(self) -> str:
        """The DSN with our application name and connect timeout."""
        return make_conninfo(
            self.dsn,
            application_name=self.application_name,
            connect_timeout=max(1, round(self.connect_timeout)),
        )

    @property
    def target(self) -> str:
        return describe_target(self.dsn)

    # -- connections ----------------------------------------------------------------------

    def _ensure_pool(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.conninfo,
                    # every connection opened up front: a pool that grew on demand could
                    # keep an analysis waiting past the timeout on a loaded machine, and the
                    # probe of `_connect_error` then made a connection beyond the pool
                    min_size=self._pool_size,
                    max_size=self._pool_size,
                    open=False,
                    name="perf-analyzer",
                    timeout=self.connect_timeout,
                    # after an outage, give up a backed-off reconnection soon so that the
                    # next request tries again at once (recovery in seconds, not minutes)
                    reconnect_timeout=2 * self.connect_timeout,
                    # a connection that died with the server (restart, failover) is found
                    # and replaced before it is handed out, not after a failed query
                    check=ConnectionPool.check_connection,
                )
                self._pool.open(wait=False)
                self._owns_pool = True
            return self._pool

    def _connect_error(self) -> StoreError:
        """Why a connection cannot be made now (the pool only says it timed out). One probe
        connection at a time, whose answer serves every caller that timed out meanwhile: many
        requests timing out together never open many connections beyond the pool."""
        with self._probe_lock:
            answered, error = self._last_probe
            if time.monotonic() - answered < PROBE_REUSE_SECONDS:
                return error
            try:
                psycopg.connect(self.conninfo).close()
                error = StoreError(
                    f"no free database connection to {self.target} within the timeout"
                )
            except psycopg.Error as exc:
                error = translate(exc, self.dsn, self.table_name)
            self._last_probe = (time.monotonic(), error)
            return error

    def _fail_fast(self, pool: ConnectionPool) -> None:
        """Raise at once when the server is unreachable and the pool holds no connection:
        waiting the pool's whole timeout then only delays the same answer, and every
        analysis of a scrape waited it in turn. A connection lent out, or one idle in the
        pool, means the server answered: then the pool is waited for as usual."""
        if self._lent_here or pool.get_stats().get("pool_available", 0):
            return
        error = self._connect_error()
        if error.unreachable:
            raise error

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        if self._borrowed is not None:
            with self._lock:
                yield self._borrowed
            return
        pool = self._ensure_pool()
        if self._owns_pool:
            self._fail_fast(pool)
        try:
            conn = pool.getconn(timeout=self.connect_timeout)
        except PoolTimeout:
            raise self._connect_error() from None
        with _lent_lock:
            _lent.add(conn)
            self._lent_here += 1
        try:
            self._refuse_bad_encoding(conn)
            yield conn
        finally:
            with _lent_lock:
                _lent.discard(conn)
                self._lent_here -= 1
            pool.putconn(conn)  # the pool discards a broken connection and makes a new one

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def read(self, *, timeout: float | None = None) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        """A dict-row cursor in a READ ONLY transaction bounded by `statement_timeout` (or a
        longer `timeout`); lock waits are bounded by `statement_timeout` in any case."""
        ms = int(1000 * (timeout if timeout is not None else self.statement_timeout))
        lock_ms = min(ms, int(1000 * self.statement_timeout))
        try:
            with self.connection() as conn:
                self._refuse_open_transaction(conn)
                with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                    cur.execute("SET TRANSACTION READ ONLY")
                    cur.execute("SELECT set_config('statement_timeout', %s, true)", (str(ms),))
                    # waiting for a lock never outlasts the configured timeout, even for an
                    # analysis allowed a longer run
                    cur.execute("SELECT set_config('lock_timeout', %s, true)", (str(lock_ms),))
                    yield cur
        except psycopg.Error as exc:
            raise translate(exc, self.dsn, self.table_name) from None

    @contextmanager
    def write(self) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor in an ordinary transaction, for `db init`, `synth` and `sample` only.

        It uses its own connection, never one of the exporter's read-only pool."""
        self._refuse_mapped_write()
        try:
            if self._borrowed is not None:
                with self._lock:
                    self._refuse_open_transaction(self._borrowed)
                    with self._borrowed.transaction(), self._borrowed.cursor() as cur:
                        yield cur
                return
            with psycopg.connect(self.conninfo) as conn:
                self._refuse_bad_encoding(conn)
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
        except psycopg.Error as exc:
            raise translate(exc, self.dsn, self.table_name) from None

    @contextmanager
    def autocommit(self) -> Iterator[psycopg.Cursor[Any] | None]:
        """A cursor outside any transaction block, for the maintenance statements that
        PostgreSQL refuses inside one (ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY).

        Its own connection, like `write`; None for a borrowed connection that is not in
        autocommit mode (the caller then falls back to a transaction)."""
        self._refuse_mapped_write()
        try:
            if self._borrowed is not None:
                with self._lock:
                    if not self._borrowed.autocommit:
                        yield None
                        return
                    with self._borrowed.cursor() as cur:
                        yield cur
                return
            with psycopg.connect(self.conninfo, autocommit=True) as conn, conn.cursor() as cur:
                yield cur
        except psycopg.Error as exc:
            raise translate(exc, self.dsn, self.table_name) from None

    def _refuse_mapped_write(self) -> None:
        if self.columns:
            raise StoreError(
                f"the column mapping (--columns) is for reading only: perf-analyzer writes the "
                f"standard column names, so run this command without --columns (on a table "
                f'with the standard names), not on "{self.table_name}"',
                permanent=True,
            )

    def encoding_error(self, conn: psycopg.Connection[Any]) -> StoreError | None:
        """Why this server's encoding is refused, or None for UTF8.

        SQL_ASCII stores whatever bytes a client sent: names would come back as bytes (or
        fail to decode), so rather than guess a decoding the store refuses the database."""
        encoding = conn.info.parameter_status("server_encoding")
        if encoding is None or encoding.upper() == SERVER_ENCODING:
            return None
        return StoreError(
            f"the database {self.target} has the server encoding {encoding}, and perf-analyzer "
            f"needs {SERVER_ENCODING}: keep the table in a database created with "
            f"ENCODING '{SERVER_ENCODING}'",
            permanent=True,
        )

    def check_encoding(self) -> None:
        """Raise `encoding_error` at start; an unreachable database is left to the retries."""
        try:
            with psycopg.connect(self.conninfo) as conn:
                error = self.encoding_error(conn)
        except psycopg.Error:
            return
        if error is not None:
            raise error

    def _refuse_bad_encoding(self, conn: psycopg.Connection[Any]) -> None:
        error = self.encoding_error(conn)
        if error is not None:
            raise error

    def _refuse_open_transaction(self, conn: psycopg.Connection[Any]) -> None:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            raise StoreError(
                "the connection given to perf-analyzer has a transaction open; commit or "
                "roll it back first (or use an autocommit connection)"
            )

    def ping(self) -> bool:
        """True if a round trip to the database succeeds now."""
        try:
            with self.read(timeout=self.connect_timeout) as cur:
                cur.execute("SELECT 1")
            return True
        except StoreError:
            return False

    def newest_sample_time(self) -> int | None:
        """The table's newest sample_time; None when the table is missing or empty."""
        with self.read() as cur:
            cur.execute(
                "SELECT to_regclass(%s) IS NOT NULL AS present", (self.relation.as_string(cur),)
            )
            if not first_value(cur.fetchone()):
                return None
            cur.execute(sql.SQL("SELECT max(sample_time) AS t FROM {}").format(self.table))
            newest = first_value(cur.fetchone())
        return None if newest is None else int(newest)

    def copy_in(
        self,
        columns: Iterable[str],
        chunks: Iterable[tuple[bytes, int]],
        *,
        progress: Any = None,
    ) -> int:
        """Load a PostgreSQL binary COPY stream into the table in one transaction;
        returns the number of rows. `progress(rows)` is called after each chunk."""
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            self.table, sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        total = 0
        with self.write() as cur, cur.copy(statement) as copy:
            for data, rows in chunks:
                copy.write(data)
                total += rows
                if progress is not None:
                    progress(rows)
        return total

    def close(self) -> None:
        if self._pool is not None and self._owns_pool:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
