"""Test fixtures: one real PostgreSQL per session, a fresh database per test module.

The server is embedded PostgreSQL unless PERF_ANALYZER_TEST_DSN points at another server
(its role needs CREATEDB). Tests that need an external program call `require_program`,
which skips on a laptop without it but fails under CI (PERF_ANALYZER_REQUIRE_ALL=1), so CI
cannot pass by skipping.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from exporter.store import Store

_counter = itertools.count()


@dataclass
class Server:
    admin_dsn: str

    def dsn_for(self, dbname: str) -> str:
        return make_conninfo(self.admin_dsn, dbname=dbname)

    def create_database(self, prefix: str) -> str:
        name = f"pa_{prefix}_{os.getpid()}_{next(_counter)}"[:63]
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    external = os.environ.get("PERF_ANALYZER_TEST_DSN")
    if external:
        yield Server(external)
        return
    from exporter.embedded import FAST_UNSAFE_SETTINGS, EmbeddedPostgres

    server = EmbeddedPostgres(settings=FAST_UNSAFE_SETTINGS)
    server.start()
    try:
        yield Server(server.dsn)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def dsn(pg_server: Server, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database for this test module."""
    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    name = pg_server.create_database(prefix)
    try:
        yield pg_server.dsn_for(name)
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def fresh_dsn(pg_server: Server) -> Iterator[str]:
    """A fresh, empty database for one test."""
    name = pg_server.create_database("t")
    try:
        yield pg_server.dsn_for(name)
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def store(dsn: str) -> Iterator[Store]:
    with Store(dsn) as s:
        yield s


def require_program(name: str) -> str:
    """Path of an external program; skip without it, except under CI where it fails."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("PERF_ANALYZER_REQUIRE_ALL"):
        pytest.fail(f"{name} is required in CI (PERF_ANALYZER_REQUIRE_ALL is set) but missing")
    pytest.skip(f"{name} is not installed")


# --------------------------------------------------------------------------- a simulated fleet

FLEET_END = 1_790_000_040  # a fixed past moment (2026-09-21), aligned to the 60 s interval


@dataclass
class FleetDB:
    dsn: str
    fleet: object  # exporter.simulate.Fleet


@pytest.fixture(scope="session")
def fleet_db(pg_server: Server) -> Iterator[FleetDB]:
    """One 14-node, 30-day simulated fleet (every finding placed, 2 healthy nodes), loaded
    once per session and only ever read: analysis tests share it."""
    from exporter.simulate import FleetSpec, load_fleet

    name = pg_server.create_database("fleet")
    dsn = pg_server.dsn_for(name)
    with Store(dsn) as store:
        fleet = load_fleet(store, FleetSpec(nodes=14, containers=2, days=30, end=FLEET_END))
    try:
        yield FleetDB(dsn, fleet)
    finally:
        pg_server.drop_database(name)


@pytest.fixture(scope="module")
def analyzer(fleet_db: FleetDB):
    """A PerformanceAnalyzer over the shared fleet (its rollups are per test module)."""
    from exporter import PerformanceAnalyzer

    with PerformanceAnalyzer(fleet_db.dsn) as a:
        yield a
