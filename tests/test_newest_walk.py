"""The newest-sample walk bounded to `forget_after_hours` on a table partitioned by day
answers what the unbounded walk answers, forgotten nodes included."""

from __future__ import annotations

import psycopg

from exporter import PerformanceAnalyzer
from exporter.analyses.hosts import node_spans
from exporter.partitions import DAY, init_partitioned_table
from exporter.shard import Shard
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store

END = 1_790_000_040
WEEK = 7 * DAY


def _add_silent_nodes(dsn: str, table: str) -> None:
    """`silent` reported for a day and fell silent nine days before END; `zombie`'s node
    sampler did the same, while its container sampler still writes every 61 s or so."""
    rows = (
        f"INSERT INTO {table} (sample_time, node_name, container_name, node_flag)"
        " SELECT t, %s, %s, %s FROM generate_series(%s::bigint, %s::bigint, %s) t"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        for node in ("silent", "zombie"):
            conn.execute(rows, (node, None, True, END - 10 * DAY + 13, END - 9 * DAY, 97))
        conn.execute(rows, ("zombie", "app", False, END - 10 * DAY + 7, END - 30, 61))


def test_bounded_walk_on_partitions_equals_the_full_walk(fresh_dsn):
    spec = FleetSpec(nodes=3, containers=1, days=12, end=END)
    with Store(fresh_dsn, "parted") as store:
        init_partitioned_table(store, premake_days=1, since=END - 12 * DAY, now=END)
        load_fleet(store, spec)
    _add_silent_nodes(fresh_dsn, "parted")
    with psycopg.connect(fresh_dsn) as conn:
        (zombie_node_row,) = conn.execute(
            "SELECT max(sample_time) FROM parted WHERE node_name = 'zombie' AND node_flag"
        ).fetchone()
        expected = {
            n: (int(a), int(b))
            for n, a, b in conn.execute(
                "SELECT node_name, min(sample_time), max(sample_time) FROM parted"
                " WHERE sample_time <= %s GROUP BY node_name",
                (END,),
            )
        }
    with PerformanceAnalyzer(fresh_dsn, table_name="parted") as a:
        assert node_spans(a.ctx, END, since=END - WEEK) == expected
        assert node_spans(a.ctx, END + 60, since=END + 60 - WEEK) == expected  # from the cache
        result = a.emergency_health_check(now=END)
    assert result["forgotten"] == ["silent"] and result["nodes"] == 4
    shards = {}
    for i in (1, 2):  # each shard's bounded walk holds its share, together every node once
        with Store(fresh_dsn, "parted", shard=Shard(i, 2)) as store:
            shards[i] = node_spans(PerformanceAnalyzer(store).ctx, END, since=END - WEEK)
    assert shards[1] and shards[2] and not shards[1].keys() & shards[2].keys()
    assert {**shards[1], **shards[2]} == expected
    stale = {c["node_name"]: c for c in result["checks"] if c["check"] == "stale"}
    assert stale["zombie"]["value"] == END - zombie_node_row and stale["zombie"]["level"] == 3
