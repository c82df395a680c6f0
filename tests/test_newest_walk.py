"""The newest-sample walk bounded to `forget_after_hours` on a table partitioned by day
answers what the unbounded walk answers, forgotten nodes included."""

from __future__ import annotations

import psycopg

from exporter import PerformanceAnalyzer
from exporter.analyses.hosts import node_spans
from exporter.partitions import DAY, init_partitioned_table
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store

END = 1_790_000_040
WEEK = 7 * DAY


def _add_silent_node(dsn: str, table: str) -> None:
    """A node that reported for a day and fell silent nine days before END."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {table} (sample_time, node_name, node_flag)"
            " SELECT t, 'silent', true FROM generate_series(%s::bigint, %s::bigint, 97) t",
            (END - 10 * DAY + 13, END - 9 * DAY),
        )


def test_bounded_walk_on_partitions_equals_the_full_walk(fresh_dsn):
    spec = FleetSpec(nodes=3, containers=1, days=12, end=END)
    with Store(fresh_dsn, "parted") as store:
        init_partitioned_table(store, premake_days=1, since=END - 12 * DAY, now=END)
        load_fleet(store, spec)
    _add_silent_node(fresh_dsn, "parted")
    with psycopg.connect(fresh_dsn) as conn:
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
    assert result["forgotten"] == ["silent"] and result["nodes"] == 3
