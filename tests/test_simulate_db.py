"""The simulator's ground truth holds in the database, measured with SQL the way the
analyses will measure it."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.simulate import Fleet, FleetSpec, load_fleet
from exporter.store import Store

END = 1_790_000_040


@pytest.fixture(scope="module")
def loaded(dsn: str) -> tuple[Store, Fleet]:
    store = Store(dsn)
    fleet = load_fleet(store, FleetSpec(nodes=13, containers=2, days=8, end=END))
    yield store, fleet
    store.close()


def one(store: Store, query: str, **params: Any) -> dict[str, Any]:
    with store.read() as cur:
        cur.execute(query.replace("{t}", store.table.as_string(cur)), params)
        return cur.fetchone()


def test_every_row_loaded(loaded: tuple[Store, Fleet]) -> None:
    store, fleet = loaded
    row = one(store, "SELECT count(*) AS n, count(DISTINCT node_name) AS nodes FROM {t}")
    assert row == {"n": fleet.row_count, "nodes": 13}


def test_leak_slope_recovered_by_regr_slope(loaded: tuple[Store, Fleet]) -> None:
    store, fleet = loaded
    truth = fleet.truth_for("memory_leak")
    row = one(
        store,
        "SELECT regr_slope(mem_available_mb, sample_time / 86400.0) AS slope FROM {t} "
        "WHERE node_flag AND node_name = %(node)s",
        node=truth["node"],
    )
    assert row["slope"] == pytest.approx(-truth["slope_mb_per_day"], rel=0.02)


def test_outage_gap_exactly_as_stated(loaded: tuple[Store, Fleet]) -> None:
    store, fleet = loaded
    truth = fleet.truth_for("outage_gap")
    row = one(
        store,
        "SELECT max(gap) AS longest, count(*) FILTER (WHERE gap > %(iv)s) AS gaps FROM ("
        "  SELECT sample_time - lag(sample_time) OVER (ORDER BY sample_time) AS gap"
        "  FROM {t} WHERE node_flag AND node_name = %(node)s) g",
        node=truth["node"],
        iv=fleet.spec.interval,
    )
    assert row["gaps"] == 1
    assert row["longest"] == truth["gap_end"] - truth["gap_start"] + fleet.spec.interval
    assert row["longest"] == (truth["missing_samples"] + 1) * fleet.spec.interval
    reported = one(
        store,
        "SELECT count(*) AS n FROM {t} WHERE node_flag AND node_name = %(node)s "
        "AND sample_time > %(end)s - 86400",
        node=truth["node"],
        end=fleet.end,
    )["n"]
    assert reported / (86400 / fleet.spec.interval) == pytest.approx(
        truth["availability_24h"], abs=0.001
    )


def test_stale_node_last_sample(loaded: tuple[Store, Fleet]) -> None:
    store, fleet = loaded
    truth = fleet.truth_for("stale")
    row = one(
        store, "SELECT max(sample_time) AS last FROM {t} WHERE node_name = %(n)s", n=truth["node"]
    )
    assert row["last"] == truth["last_sample_time"]
    newest = one(store, "SELECT max(sample_time) AS t FROM {t}")["t"]
    assert newest == fleet.end


def test_spike_size(loaded: tuple[Store, Fleet]) -> None:
    store, fleet = loaded
    truth = fleet.truth_for("anomaly_spike")
    row = one(
        store,
        "SELECT avg(disk_write_mb_s) FILTER (WHERE sample_time BETWEEN %(s)s AND %(e)s) AS inside,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY disk_write_mb_s)"
        "   FILTER (WHERE sample_time BETWEEN %(s)s - 3600 AND %(s)s - 60) AS before"
        " FROM {t} WHERE node_flag AND node_name = %(n)s",
        n=truth["node"],
        s=truth["start"],
        e=truth["end"],
    )
    assert row["inside"] - row["before"] == pytest.approx(truth["size"], rel=0.1)


def test_correlation_coefficient(loaded: tuple[Store, Fleet]) -> None:
    store, fleet = loaded
    truth = fleet.truth_for("correlated_metrics")
    row = one(
        store,
        f"SELECT corr({truth['metric_a']}, {truth['metric_b']}) AS r FROM {{t}} "
        "WHERE node_flag AND node_name = %(n)s",
        n=truth["node"],
    )
    assert row["r"] == pytest.approx(truth["coefficient"], abs=1e-9)
    assert row["r"] > 0.9


def test_noisy_neighbour_share(loaded: tuple[Store, Fleet]) -> None:
    store, fleet = loaded
    truth = fleet.truth_for("noisy_neighbour")
    window = truth["window"]
    row = one(
        store,
        "SELECT sum(c.cpu_total_pct) / sum(n.cpu_total_pct) AS share"
        " FROM {t} c JOIN {t} n ON n.node_name = c.node_name AND n.sample_time = c.sample_time"
        "  AND n.node_flag WHERE c.container_name = %(c)s AND c.node_name = %(n)s"
        "  AND c.sample_time BETWEEN %(s)s AND %(e)s",
        n=truth["node"],
        c=truth["container"],
        s=window["start"],
        e=window["end"],
    )
    assert row["share"] == pytest.approx(truth["share_of_node_cpu"], abs=0.01)
