"""The exporter against a PostgreSQL hot standby: two embedded servers, a primary with
`wal_level=replica` and a standby made by `pg_basebackup -R`, streaming. Every analysis on
the standby must answer what it answers on the primary at the same `now`, and a query the
standby cancels to replay the primary's changes must be one clear StoreError."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from psycopg import errors

from exporter import PerformanceAnalyzer, registry
from exporter.errors import StoreError
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store, is_recovery_conflict, translate

END = 1_790_000_040
DSN = "postgresql://postgres@127.0.0.1:5/postgres"


def test_a_recovery_conflict_is_one_sentence_that_says_run_it_again():
    exc = errors.SerializationFailure(
        "canceling statement due to conflict with recovery\nDETAIL: User query might have"
        " needed to see row versions that must be removed."
    )
    assert is_recovery_conflict(exc)
    said = str(translate(exc, DSN, "samples"))
    assert "hot standby" in said and "run it again" in said and "\n" not in said
    assert not is_recovery_conflict(errors.SerializationFailure("could not serialize access"))


def _timeless(value: Any) -> Any:
    """The result without `generated_at`, the wall-clock time the result was made."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if k != "generated_at"}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def _wait_for_replay(primary: str, standby: str, timeout: float = 30) -> float:
    """Seconds until the standby has replayed everything the primary wrote so far."""
    with psycopg.connect(primary, autocommit=True) as p, psycopg.connect(standby) as s:
        lsn = p.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            done = s.execute(
                "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s) >= 0", (lsn,)
            ).fetchone()[0]
            s.rollback()
            if done:
                return time.monotonic() - t0
            time.sleep(0.05)
    raise AssertionError(f"the standby did not replay up to {lsn} within {timeout} s")


@pytest.fixture(scope="module")
def servers():
    from exporter.embedded import FAST_UNSAFE_SETTINGS, EmbeddedPostgres

    primary = EmbeddedPostgres(
        settings={**FAST_UNSAFE_SETTINGS, "wal_level": "replica", "max_wal_senders": "4"}
    ).start()
    standby = EmbeddedPostgres(settings={"hot_standby": "on", "max_standby_streaming_delay": "0"})
    try:
        standby.copy_of(primary).start()
        yield primary, standby
    finally:
        standby.stop()
        primary.stop()


@pytest.mark.slow
def test_every_analysis_answers_the_same_on_the_standby(servers):
    primary, standby = servers
    with psycopg.connect(standby.dsn) as s:
        assert s.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
    with Store(primary.dsn) as store:
        load_fleet(store, FleetSpec(nodes=4, containers=1, days=8, end=END))
    lag = _wait_for_replay(primary.dsn, standby.dsn)
    print(f"replay caught up {lag:.2f} s after the load committed")
    with PerformanceAnalyzer(primary.dsn) as p, PerformanceAnalyzer(standby.dsn) as s:
        for analysis in registry.ANALYSES:
            t0 = time.perf_counter()
            expected = p.run(analysis.name, now=END)
            t1 = time.perf_counter()
            got = s.run(analysis.name, now=END)
            t2 = time.perf_counter()
            print(
                f"{analysis.name}: primary {1000 * (t1 - t0):.0f} ms, standby"
                f" {1000 * (t2 - t1):.0f} ms"
            )
            assert _timeless(got) == _timeless(expected), analysis.name


@pytest.mark.slow
def test_a_query_cancelled_by_replay_is_a_store_error_not_a_crash(servers):
    primary, standby = servers
    with psycopg.connect(primary.dsn, autocommit=True) as p:
        p.execute("CREATE TABLE churn (id int, pad text) WITH (autovacuum_enabled = off)")
        p.execute("INSERT INTO churn SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g")
    _wait_for_replay(primary.dsn, standby.dsn)
    with Store(standby.dsn, "churn") as store:
        with pytest.raises(StoreError) as caught, store.read(timeout=30) as cur:
            cur.execute("SELECT count(*) FROM churn")  # the snapshot the cleanup conflicts with
            with psycopg.connect(primary.dsn, autocommit=True) as p:
                p.execute("DELETE FROM churn")
                p.execute("VACUUM churn")
            _wait_for_replay(primary.dsn, standby.dsn)
            cur.execute("SELECT count(*) FROM churn")
        said = str(caught.value)
        print(said)
        assert said.startswith("a hot standby at") and "conflict with recovery" in said, said
        assert not caught.value.unreachable  # a failed run, the database still counts as up
        with store.read() as cur:  # the next run gets a fresh connection and passes
            cur.execute("SELECT count(*) AS n FROM churn")
            assert cur.fetchone()["n"] == 0
