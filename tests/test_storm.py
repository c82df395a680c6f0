"""A short scrape storm (50 concurrent scrapers): no failed scrape, memory flat, no thread
or database-connection leak. `bench/storm.py --seconds 600` runs the 10-minute version."""

from __future__ import annotations

import pytest

from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store

from . import storm


@pytest.mark.slow
def test_scrape_storm_leaks_nothing(pg_server):
    name = pg_server.create_database("storm")
    dsn = pg_server.dsn_for(name)
    try:
        with Store(dsn) as store:
            load_fleet(store, FleetSpec(nodes=6, containers=2, days=2))
        r = storm.run(dsn, scrapers=50, seconds=12)
    finally:
        pg_server.drop_database(name)
    assert r["scrapes"] > 50 and r["failed"] == 0
    assert r["rss_mib_after"] <= r["rss_mib_before"] * 1.15 + 10
    assert r["threads_after"] <= r["threads_before"] + 2
    assert r["connections_after"] <= 5  # the pool (3 workers + 1) and the worker process's
    assert r["max_connections"] <= 5  # also while the storm lasted
