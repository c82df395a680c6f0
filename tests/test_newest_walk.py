"""The newest-sample walk bounded to `forget_after_hours` on a table partitioned by day
answers what the unbounded walk answers, forgotten nodes included; the exporter's warm runs
read only the partitions that can hold the rows they need."""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg
from psycopg import sql

from exporter import PerformanceAnalyzer, registry
from exporter.analyses.hosts import node_spans
from exporter.partitions import DAY, init_partitioned_table, read_layout
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


def _partitions_read(conn: psycopg.Connection[Any], statements: list[tuple[Any, Any]]) -> set[str]:
    """The partitions the statements' plans run (EXPLAIN ANALYZE: partitions pruned at plan
    or run time do not count)."""
    found: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if node.get("Actual Loops", 0) > 0 and "Relation Name" in node:
            found.add(node["Relation Name"])
        for child in node.get("Plans", ()):
            walk(child)

    for query, params in statements:
        if isinstance(query, str):
            query = query.encode()
        text = query if isinstance(query, bytes) else query.as_bytes(conn)
        if b"parted" not in text:
            continue
        (plan,) = conn.execute(b"EXPLAIN (ANALYZE, FORMAT JSON) " + text, params).fetchone()
        walk(plan[0]["Plan"])
    return found


def test_warm_runs_on_partitions_read_only_the_partitions_they_need(fresh_dsn, monkeypatch):
    """On a table partitioned by day the exporter's warm emergency and current runs answer
    what runs from scratch answer, and read only the partitions that can hold a row they
    need: the window's, and for a node silent for two days (not yet forgotten) those from
    its newest row on; never the other partitions of the week."""
    spec = FleetSpec(nodes=3, containers=1, days=12, end=END)
    with Store(fresh_dsn, "parted") as store:
        init_partitioned_table(store, premake_days=1, since=END - 12 * DAY, now=END)
        load_fleet(store, spec)
    napping = END - 2 * DAY - 480  # its newest row: on its 60-second grid
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO parted (sample_time, node_name, node_flag) SELECT t, 'napping', true"
            " FROM generate_series(%s::bigint, %s::bigint, 60) t",
            (END - 4 * DAY, napping),
        )
    analyses = [registry.get("emergency"), registry.get("current")]
    states = {a.name: a.incremental() for a in analyses}
    statements: list[tuple[Any, Any]] = []
    execute = psycopg.Cursor.execute

    def recorded(self: Any, query: Any, params: Any = None, **kw: Any) -> Any:
        statements.append((query, params))
        return execute(self, query, params, **kw)

    with PerformanceAnalyzer(fresh_dsn, table_name="parted") as a:
        for now in range(END - 600, END - 540, 10):
            statements.clear()
            monkeypatch.setattr(psycopg.Cursor, "execute", recorded)
            warm = {x.name: registry.run(x, a.ctx, None, now, states[x.name]) for x in analyses}
            monkeypatch.setattr(psycopg.Cursor, "execute", execute)
            fresh = dataclasses.replace(a.ctx, caches={})
            for x in analyses:
                scratch = registry.run(x, fresh, None, now)
                if x.name == "current":
                    warm[x.name]["summary"].pop("generated_at")
                    scratch["summary"].pop("generated_at")
                assert warm[x.name] == scratch
        spans = warm["current"]["spans"]
        assert spans["napping"][1] == napping and len(spans) == 4
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        with conn.cursor() as cur:
            layout = read_layout(cur, sql.Identifier("parted"))
        read = _partitions_read(conn, statements)
    needed = {p.name for p in layout.partitions if p.hi > napping and p.lo <= now}
    assert read == needed and len(needed) == 3
