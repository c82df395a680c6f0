"""`nodes.fold_name_variants`: one host whose sampler changed its spelling of the host name
twice in a day (`Node-A`, then ` node-a `, then `node-a`) is three nodes by default, and
one healthy node when folding is configured."""

from __future__ import annotations

import numpy as np
import pytest

from exporter import PerformanceAnalyzer
from exporter.config import Config, NodesConfig
from exporter.schema import init_table
from exporter.store import Store

T0 = 1_780_000_000
HOUR = 3600
END = T0 + 24 * HOUR
SPELLINGS = (("Node-A", 0, 12), (" node-a ", 12, 20), ("node-a", 20, 24))  # name, from, to h


@pytest.fixture(scope="module")
def db(dsn: str) -> str:
    """A 60 s sampler with +-3 s jitter, 30 % stamped 1 s late, 24 h, renamed twice; the
    last 10 minutes at 97 % CPU. node-b: a steady second host under one name."""
    rng = np.random.default_rng(13)
    slots = T0 + np.arange(0, 24 * HOUR, 60)
    times = slots + rng.integers(-3, 4, slots.size) + (rng.random(slots.size) < 0.3)
    times[-1] = min(times[-1], END)
    rows = []
    for name, start, stop in SPELLINGS:
        part = times[(slots >= T0 + start * HOUR) & (slots < T0 + stop * HOUR)]
        rows += [(int(t), name, 97.0 if t > END - 600 else 30.0) for t in part]
    rows += [(int(t), "node-b", 30.0) for t in slots]
    with Store(dsn) as store:
        init_table(store)
        with store.write() as cur:
            cur.executemany(
                f"INSERT INTO {store.table_name} (sample_time, node_name, node_flag,"
                " cpu_total_pct, mem_available_mb, mem_total_mb, load_1m)"
                " VALUES (%s, %s, TRUE, %s, 8000, 16384, 0.5)",
                rows,
            )
    return dsn


def analyzer(dsn: str, fold: bool) -> PerformanceAnalyzer:
    return PerformanceAnalyzer(dsn, config=Config(nodes=NodesConfig(fold_name_variants=fold)))


def test_variants_are_separate_nodes_by_default(db):
    with analyzer(db, False) as a:
        sli = {n["node_name"]: n for n in a.system_availability_check(hours=24, now=END)["nodes"]}
        cpus = a.run("cpus", now=END)
        threats = a.emergency_health_check(now=END)["threats"]
    assert set(sli) == {"Node-A", " node-a ", "node-a", "node-b"}
    # Node-A wrote the first 12 of the 24 hours and is silent since; node-a, judged from its
    # first sample 4 hours ago, missed nothing
    assert sli["Node-A"]["availability"] == pytest.approx(0.5, abs=0.01)
    assert sli["node-a"]["availability"] >= 0.99
    assert cpus["name_clashes"] == [[" node-a ", "Node-A", "node-a"]]
    stale = {t["node_name"] for t in threats if "stale" in t["check"]}
    assert stale == {"Node-A", " node-a "}


def test_folded_variants_are_one_healthy_node(db):
    with analyzer(db, True) as a:
        sli = {n["node_name"]: n for n in a.system_availability_check(hours=24, now=END)["nodes"]}
        cpus = a.run("cpus", now=END)
        threats = a.emergency_health_check(now=END)["threats"]
        anomalies = a.detect_anomalies(hours=24, now=END)["anomalies"]
    assert set(sli) == {"node-a", "node-b"}
    assert sli["node-a"]["availability"] >= 0.99
    assert sli["node-b"]["grade"] == "EXCELLENT"  # node-a's 97 % CPU grades it CRITICAL
    assert cpus["name_clashes"] == []
    cpu = [(t["node_name"], t["priority"]) for t in threats if t["check"] == "cpu"]
    assert cpu == [("node-a", "P1-CRITICAL")]
    assert not [t for t in threats if "stale" in t["check"]]
    assert {x["node_name"] for x in anomalies} <= {"node-a"}


def test_folding_leaves_writes_and_the_table_name_alone(db):
    with analyzer(db, True) as a:
        assert a.ctx.store.table.as_string(None) == a.store.table.as_string(None)
        assert END - 60 < a.store.newest_sample_time() <= END


def test_folding_stacks_over_a_column_mapping(db):
    """A table with its own column names (`--columns`) folds the same way: the mapping's
    relation is what the folded view reads."""
    with Store(db) as store, store.write() as cur:
        cur.execute(f"CREATE TABLE renamed AS SELECT * FROM {store.table_name}")
        cur.execute("ALTER TABLE renamed RENAME sample_time TO ts")
        cur.execute("ALTER TABLE renamed RENAME node_name TO host")
    mapping = {"sample_time": "ts", "node_name": "host"}
    config = Config(nodes=NodesConfig(fold_name_variants=True))
    with PerformanceAnalyzer(Store(db, "renamed", columns=mapping), config=config) as a:
        sli = {n["node_name"]: n for n in a.system_availability_check(hours=24, now=END)["nodes"]}
    assert set(sli) == {"node-a", "node-b"}
    assert sli["node-a"]["availability"] >= 0.99
