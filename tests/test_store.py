"""The store against a real PostgreSQL: read-only is enforced, names are quoted or refused,
errors are sentences without secrets."""

from __future__ import annotations

import time

import psycopg
import pytest

from exporter.schema import init_table
from exporter.store import Store, StoreError, redact, table_name_parts


@pytest.fixture(scope="module")
def canary(dsn: str) -> str:
    """A table that no test may ever touch: `y`, with one row."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE y (v int)")
        conn.execute("INSERT INTO y VALUES (42)")
    return "y"


def canary_rows(dsn: str) -> list[tuple[int]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT v FROM y").fetchall()


def test_reads_are_read_only(dsn: str, canary: str) -> None:
    with Store(dsn) as store:
        with pytest.raises(StoreError, match="read-only"), store.read() as cur:
            cur.execute("INSERT INTO y VALUES (1)")
        with pytest.raises(StoreError, match="read-only"), store.read() as cur:
            cur.execute("CREATE TABLE z (a int)")
        with store.read() as cur:  # the pool recovered and reads still work
            cur.execute("SELECT count(*) AS n FROM y")
            assert cur.fetchone() == {"n": 1}
    assert canary_rows(dsn) == [(42,)]


def test_reads_have_a_statement_timeout(dsn: str) -> None:
    with Store(dsn, statement_timeout=0.2) as store:
        with pytest.raises(StoreError, match="cancel"), store.read() as cur:
            cur.execute("SELECT pg_sleep(5)")
        with store.read() as cur:
            cur.execute("SELECT current_setting('statement_timeout') AS t")
            assert cur.fetchone() == {"t": "200ms"}


def test_borrowed_connection_is_used_read_only(dsn: str, canary: str) -> None:
    with psycopg.connect(dsn) as conn:
        store = Store(conn)
        with pytest.raises(StoreError, match="read-only"), store.read() as cur:
            cur.execute("DELETE FROM y")
        with store.read() as cur:
            cur.execute("SELECT 1 AS one")
            assert cur.fetchone() == {"one": 1}
        conn.execute("SELECT 1")  # the user's own transaction is now open
        with pytest.raises(StoreError, match="transaction open"), store.read():
            pass
    assert canary_rows(dsn) == [(42,)]


HOSTILE_NAMES = [
    'x"; DROP TABLE y; --',
    "it's",
    "métriques_ünïcode_表",
    "Mixed Case With Spaces",
    "tenant_a.samples",
    'we"ird.ta"ble',
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_table_names_are_quoted(dsn: str, canary: str, name: str) -> None:
    with Store(dsn, name) as store:
        init_table(store)
        with store.read() as cur:
            cur.execute(
                "SELECT n.nspname AS schema, c.relname AS table FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
                (store.table.as_string(cur),),
            )
            found = cur.fetchone()
    parts = table_name_parts(name)
    assert found == {"schema": parts[0] if len(parts) == 2 else "public", "table": parts[-1]}
    assert canary_rows(dsn) == [(42,)]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("a.b.c", "more than one dot"),
        (".x", "empty schema or table"),
        ("x" * 64, "63-byte"),
        ("nul\x00byte", "NUL"),
    ],
)
def test_unusable_table_names_are_refused(dsn: str, name: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        Store(dsn, name)


def test_missing_table_is_one_sentence(dsn: str) -> None:
    with Store(dsn, "no_such_table") as store, pytest.raises(StoreError) as err:
        with store.read() as cur:
            cur.execute(psycopg.sql.SQL("SELECT * FROM {}").format(store.table))
    assert 'table "no_such_table" does not exist' in str(err.value)
    assert "db init" in str(err.value)


def test_unreachable_server_is_one_sentence_without_password() -> None:
    dsn = "postgresql://alice:s3cr3t-pw@127.0.0.1:1/metrics"
    with Store(dsn, connect_timeout=1) as store:
        with pytest.raises(StoreError) as err, store.read():
            pass
        assert not store.ping()
    message = str(err.value)
    assert message.startswith("cannot reach PostgreSQL at alice@127.0.0.1:1/metrics")
    assert "s3cr3t" not in message and "\n" not in message


def test_a_refused_server_fails_a_read_at_once_not_after_the_pool_timeout() -> None:
    """Nothing listens on port 1: each read fails in well under the 5 s connect timeout,
    the first one (the pool empty, one probe refused) and the later ones alike."""
    with Store("postgresql://127.0.0.1:1/metrics", connect_timeout=5) as store:
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(StoreError) as err, store.read():
                pass
            assert time.monotonic() - started < 1.0
            assert err.value.unreachable


def test_malformed_dsn_is_refused_without_password() -> None:
    with pytest.raises(StoreError) as err:
        Store("host=localhost password=hunter2 port")
    assert "not valid" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_redact_covers_urls_and_keywords() -> None:
    assert redact("x postgresql://u:pw@h/db y", "") == "x postgresql://u:***@h/db y"
    assert redact("password=abc host=h", "") == "password=*** host=h"
    assert "zz9" not in redact("failed for zz9", "host=h password=zz9")


def test_copy_in_loads_binary_stream(fresh_dsn: str) -> None:
    from exporter.schema import COLUMN_NAMES
    from exporter.simulate import FleetSpec, simulate

    fleet = simulate(FleetSpec(nodes=2, containers=1, days=0.1, end=1_700_000_000))
    seen: list[int] = []
    with Store(fresh_dsn) as store:
        init_table(store)
        loaded = store.copy_in(COLUMN_NAMES, fleet.copy_chunks(), progress=seen.append)
        with store.read() as cur:
            cur.execute(psycopg.sql.SQL("SELECT count(*) AS n FROM {}").format(store.table))
            assert cur.fetchone()["n"] == fleet.row_count == loaded == sum(seen)
