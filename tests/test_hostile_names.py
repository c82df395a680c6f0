"""Hostile node and container names travel from the table to the exposition intact: the
client library escapes them, the output parses back, and nothing raises."""

from __future__ import annotations

import re
import time

import psycopg
import pytest

from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store
from tests.test_exporter import Running, scrape

NAMES = [
    'quote"d',
    "back\\slash",
    "new\nline",
    "{braces}=",
    "ünïcødé-節点",
    "n" * 2000,  # long, but inside the btree's index-row limit
]
LABEL_LIMIT = 128  # characters of a served name label (README, "Series budget")


def served(name: str) -> str | re.Pattern[str]:
    """A name as served: itself, or when too long its start, `~` and 8 hex of a hash."""
    if len(name) <= LABEL_LIMIT:
        return name
    return re.compile(re.escape(name[: LABEL_LIMIT - 9]) + "~[0-9a-f]{8}")


def all_served(names: list[str], labels: set) -> bool:
    return all(
        (n in labels)
        if isinstance(n := served(name), str)
        else any(isinstance(x, str) and n.fullmatch(x) for x in labels)
        for name in names
    )


@pytest.fixture(scope="module")
def hostile(pg_server):
    name = pg_server.create_database("hostile")
    dsn = pg_server.dsn_for(name)
    with Store(dsn) as store:
        load_fleet(store, FleetSpec(nodes=2, containers=1, days=1))
    now = int(time.time())
    with psycopg.connect(dsn, autocommit=True) as conn:
        for node in NAMES:
            conn.execute(
                "INSERT INTO monitor_samples_ring (sample_time, node_name, container_name,"
                " node_flag, cpu_total_pct, mem_available_mb, mem_total_mb, load_1m)"
                " SELECT g, %s, NULL, true, 97, 1000, 16000, 1 FROM generate_series(%s, %s, 60) g",
                (node, now - 3600, now),
            )
            conn.execute(
                "INSERT INTO monitor_samples_ring (sample_time, node_name, container_name,"
                " node_flag, cpu_total_pct, c_rss_mb)"
                " SELECT g, %s, %s, false, 10, 100 FROM generate_series(%s, %s, 60) g",
                (node, node + "/c", now - 3600, now),
            )
        conn.execute(  # a row with no node name at all
            "INSERT INTO monitor_samples_ring (sample_time, node_flag, cpu_total_pct)"
            " VALUES (%s, true, 50)",
            (now,),
        )
    yield dsn
    pg_server.drop_database(name)


def test_names_round_trip_through_the_exposition(hostile):
    running = Running(hostile)
    try:
        samples = scrape(running.url, timeout_header=60)
    finally:
        running.close()
    nodes = {dict(labels).get("node") for name, labels in samples
             if name == "perf_analyzer_cpu_usage_ratio"}  # fmt: skip
    assert all_served(NAMES, nodes)
    assert None not in nodes and "" not in nodes
    containers = {dict(labels).get("container") for name, labels in samples
                  if name == "perf_analyzer_container_cpu_usage_ratio"}  # fmt: skip
    assert all_served([n + "/c" for n in NAMES], containers)
    threats = {dict(labels)["node"] for (name, labels), v in samples.items()
               if name == "perf_analyzer_emergency_threat" and dict(labels)["check"] == "cpu"
               and v == 3}  # fmt: skip
    assert all_served(NAMES, threats)
