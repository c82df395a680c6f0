"""Node-name folding (`nodes.fold_name_variants`): `Node-A`, `node-a` and ` node-a ` are one
node to every analysis when configured, and separate nodes (with a warning) otherwise.

There is one place for it: the relation the analyses read. Every analysis composes its SQL
over `ctx.store.table`; with folding on, `PerformanceAnalyzer` hands the analyses a view of
its store whose `table` composes as a subquery with the node column folded. Filters, joins,
groups and the shard predicate then all see the folded name, and no analysis knows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import psycopg
from psycopg import sql
from psycopg.abc import AdaptContext

from .errors import StoreError
from .schema import COLUMN_NAMES, OPTIONAL_COLUMNS
from .store import MappedTable, Store

# The folded name: lower case, surrounding whitespace removed. An expression index on
# exactly this expression keeps the per-node walks fast (docs/analyses.md).
FOLD = "lower(btrim(node_name, E' \\t\\n\\r'))"

_COLUMNS_SQL = (
    "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass(%s)"
    " AND attnum > 0 AND NOT attisdropped"
)


class FoldedTable(sql.Identifier):
    """The samples table with its node names folded.

    Composed into a query it is `(SELECT sample_time, <folded> AS node_name, ... FROM t)`;
    as text on its own (`as_string`, which catalog lookups such as `has_column` pass to
    `to_regclass`) it stays the table's quoted name. The table's optional columns are read
    from the catalog once, at the first read."""

    def __init__(self, *parts: str, source: sql.Composable | None = None) -> None:
        super().__init__(*parts)
        # what it folds: the table, or the table under a column mapping (`--columns`)
        self.source: sql.Composable = source if source is not None else sql.Identifier(*parts)
        self.selected: tuple[str, ...] | None = None  # None: the required ones
        # the real table and the column mapping, for catalog readers (`read_layout`)
        self.relation: sql.Composable = sql.Identifier(*parts)
        self.columns: dict[str, str] = {}
        if isinstance(source, MappedTable):
            self.selected = source.names
            self.relation, self.columns = source.relation, source.columns

    def as_string(self, context: AdaptContext | None = None) -> str:
        return sql.Identifier(*self._obj).as_string(context)

    def as_bytes(self, context: AdaptContext | None = None) -> bytes:
        select = sql.SQL(", ").join(
            sql.SQL(FOLD + " AS node_name") if c == "node_name" else sql.Identifier(c)
            for c in self.selected or COLUMN_NAMES
        )
        query = sql.SQL("(SELECT {} FROM {})").format(select, self.source)
        return query.as_bytes(context)

    def read_columns(self, cur: psycopg.Cursor[Any]) -> None:
        """Learn which optional columns the table has (before a query is composed: psycopg
        holds the connection while it composes one)."""
        if cur.connection.info.server_version < 160000:
            raise StoreError(
                "nodes.fold_name_variants needs PostgreSQL 16 or later"
                f" (the server is {cur.connection.info.server_version // 10000})"
            )
        cur.execute(_COLUMNS_SQL, (self.as_string(cur),))
        present = {next(iter(r.values())) if isinstance(r, dict) else r[0] for r in cur}
        optional = tuple(c.name for c in OPTIONAL_COLUMNS)
        self.selected = tuple(c for c in (*COLUMN_NAMES, *optional) if c in present)


class _FoldingStore:
    """A view of a store whose `table` folds node names; everything else (connections,
    shard, table name) is the store's own."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.table = FoldedTable(*store.table_parts, source=store.table)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @contextmanager
    def read(self, *, timeout: float | None = None) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        with self._store.read(timeout=timeout) as cur:
            if self.table.selected is None:
                self.table.read_columns(cur)
            yield cur


def folding(store: Store) -> Store:
    """`store` as the analyses see it when node names are folded."""
    return cast(Store, _FoldingStore(store))
