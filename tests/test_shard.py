"""`serve --shard I/N`: replicas split the fleet by a hash of the node name, and together
export every node exactly once, with the values an unsharded exporter would give."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from exporter.shard import Shard
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store
from tests.test_exporter import scrape
from tests.test_serve import start, stop, wait_until_listening

NODES = 12
PER_NODE = (  # metrics of every node, each from a different analysis
    "perf_analyzer_node_last_sample_timestamp_seconds",
    "perf_analyzer_health_score",
    "perf_analyzer_emergency_threat",
    "perf_analyzer_anomaly_score",
    "perf_analyzer_capacity_forecast_status",
)


@pytest.fixture(scope="module")
def fleet_dsn(dsn):
    with Store(dsn) as store:
        load_fleet(store, FleetSpec(nodes=NODES, containers=1, days=1))
    return dsn


def nodes_of(samples: dict, metric: str) -> set[str]:
    return {dict(labels)["node"] for name, labels in samples if name == metric}


@pytest.mark.slow
def test_two_shards_export_every_node_exactly_once(fleet_dsn):
    exporters = [start("serve", "--dsn", fleet_dsn, "--shard", f"{i}/2") for i in (1, 2)]
    try:
        for process, port in exporters:
            wait_until_listening(process, port)
        shards = [scrape(f"http://127.0.0.1:{port}", timeout_header=60) for _, port in exporters]
    finally:
        for process, _ in exporters:
            assert stop(process)[0] == 0
    with psycopg.connect(fleet_dsn) as conn:
        newest = dict(
            conn.execute(
                "SELECT node_name, max(sample_time) FROM monitor_samples_ring GROUP BY 1"
            ).fetchall()
        )
    assert len(newest) == NODES
    for metric in PER_NODE:
        first, second = (nodes_of(s, metric) for s in shards)
        assert first and second, metric  # 12 nodes: both halves are non-empty
        assert not first & second, metric
        assert first | second == set(newest), metric
    for samples in shards:  # each shard's values are the truth for its own nodes
        for node in nodes_of(samples, PER_NODE[0]):
            assert samples[(PER_NODE[0], (("node", node),))] == newest[node]


def test_shard_predicate_partitions_any_names(dsn):
    names = [f"host-{i}" for i in range(200)] + ["", "é", "a'b", "x" * 3000]
    with psycopg.connect(dsn) as conn:
        owners: dict[str, list[int]] = {name: [] for name in names}
        for count in (1, 3, 7):
            for index in range(1, count + 1):
                query = sql.SQL("SELECT n FROM unnest(%s::text[]) AS t(n) WHERE {}").format(
                    Shard(index, count).predicate("n")
                )
                for (name,) in conn.execute(query, (names,)).fetchall():
                    owners[name].append(count)
    # for every N, each name is in exactly one of the N shards
    assert all(sorted(found) == [1, 3, 7] for found in owners.values())


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "1of2", "", "a/b"])
def test_bad_shard_is_one_sentence(text):
    with pytest.raises(ValueError, match="I/N"):
        Shard.parse(text)
