"""Hourly rollups read newest-first: every stored hour equals an aggregation of the raw rows
done here with numpy, whatever order the history was read in, and a short view is served
while a long one is still reading older days."""

from __future__ import annotations

import threading
import time

import numpy as np
import psycopg
import pytest
from psycopg import sql

from exporter.rollups import PLAN_SETTINGS, HourlyRollups, reading
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store

HOUR, DAY = 3600, 86400


@pytest.fixture(scope="module")
def fleet(pg_server):
    """A realistic 6-day, 3-node fleet (jitter, missed and late rows, NULL temperatures)
    whose last sample is an hour ago, so every hour of the test is settled."""
    name = pg_server.create_database("rollups")
    dsn = pg_server.dsn_for(name)
    end = int(time.time()) // HOUR * HOUR - HOUR
    with Store(dsn) as store:
        load_fleet(store, FleetSpec(nodes=3, containers=1, days=6, end=end, realistic=True))
    yield dsn, end
    pg_server.drop_database(name)


def by_series_hour(view, metric: str) -> dict[tuple[str, int], tuple[int, ...]]:
    out = {}
    for (node, _), rows in view.series():
        for r in rows:
            key = (node, int(view.hours[r]))
            out[key] = (
                int(view.stat("count", metric)[r]),
                float(view.stat("mean", metric)[r]),
                float(view.stat("min", metric)[r]),
                float(view.stat("max", metric)[r]),
                float(view.stat("sd", metric)[r]),
            )
    return out


def raw_hours(dsn: str, start: int, now: int, metric: str) -> dict:
    """(count, mean, min, max, sample sd) of `metric` per node and hour, from the raw node
    rows."""
    with Store(dsn) as store, store.read() as cur:
        cur.execute(
            f"SELECT node_name, sample_time, {metric} FROM monitor_samples_ring"
            " WHERE node_flag AND sample_time >= %s AND sample_time <= %s",
            (start, now),
        )
        rows = cur.fetchall()
    groups: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        key = (r["node_name"], r["sample_time"] // HOUR * HOUR)
        groups.setdefault(key, [])
        if r[metric] is not None and np.isfinite(r[metric]):
            groups[key].append(r[metric])
    out = {}
    for key, values in groups.items():
        v = np.array(values, dtype=np.float64)
        nan = float("nan")
        sd = v.std(ddof=1) if len(v) > 1 else nan
        out[key] = (len(v), v.mean(), v.min(), v.max(), sd) if len(v) else (0, nan, nan, nan, nan)
    return out


@pytest.mark.parametrize("metric", ["cpu_total_pct", "temperature_c"])
def test_newest_first_hours_equal_raw_aggregation(fleet, metric):
    dsn, end = fleet
    start = end - 5 * DAY
    with Store(dsn) as store:
        rollups = HourlyRollups(store)
        view = rollups.view("node", start, end)
    got, want = by_series_hour(view, metric), raw_hours(dsn, start, end, metric)
    assert set(got) == set(want)
    for key, (n, mean, lo, hi, sd) in want.items():
        g = got[key]
        assert g[0] == n, key
        if n:
            # stored as float32: a relative rounding of 6e-8, so 1e-6 relative is rounding only
            assert g[1] == pytest.approx(mean, rel=1e-6, abs=1e-4), key
            assert (g[2], g[3]) == (pytest.approx(lo, rel=1e-6), pytest.approx(hi, rel=1e-6))
        if n > 1:
            assert g[4] == pytest.approx(sd, rel=1e-5, abs=1e-6), key
        else:  # one valid value has no sample standard deviation
            assert np.isnan(g[4]), key


def test_read_order_does_not_change_a_view(fleet):
    """Five days read at once, or a day first and then the rest, give the same rows in the
    same order, so an analysis sees the same arrays whichever analysis started first."""
    dsn, end = fleet
    with Store(dsn) as store:
        once = HourlyRollups(store).view("container", end - 5 * DAY, end)
        stepwise = HourlyRollups(store)
        stepwise.view("container", end - DAY, end)
        assert stepwise.history()["container"] == DAY
        later = stepwise.view("container", end - 5 * DAY, end)
    assert [once.keys[i] for i in once.ids] == [later.keys[i] for i in later.ids]
    for a, b in ((once.hours, later.hours), (once.samples, later.samples)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(once.stats, later.stats)


def test_a_short_view_is_served_while_a_long_one_reads(fleet, monkeypatch):
    """With every day's query made slow, a one-day view started after the five-day read
    began returns while that read is still going: it does not wait for the older days."""
    dsn, end = fleet
    with Store(dsn) as store:
        rollups = HourlyRollups(store)
        real = rollups._fetch_chunk

        def slow(kind, lo, hi):
            time.sleep(0.5)
            return real(kind, lo, hi)

        monkeypatch.setattr(rollups, "_fetch_chunk", slow)
        long = threading.Thread(target=rollups.view, args=("node", end - 5 * DAY, end))
        long.start()
        while rollups.history()["node"] < DAY:
            time.sleep(0.01)
        short = rollups.view("node", end - DAY, end)
        assert long.is_alive()
        long.join()
        assert rollups.history()["node"] == 5 * DAY
    # every settled hour of the day, and the fresh hour when a row was stamped in it (the
    # last sample may be stamped a few seconds before the fleet's end)
    with psycopg.connect(dsn) as conn:
        fresh = conn.execute(
            "SELECT count(*) FROM monitor_samples_ring WHERE node_flag AND sample_time >= %s",
            (end,),
        ).fetchone()[0]
    expected = set(range(end - DAY, end, HOUR)) | ({end} if fresh else set())
    assert set(np.unique(short.hours)) == expected


def assert_equal_hours(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key, (n, mean, *_) in want.items():
        assert got[key][0] == n, key
        if n:
            assert got[key][1] == pytest.approx(mean, rel=1e-6, abs=1e-4), key


def test_a_run_out_of_time_answers_from_the_newest_day_and_says_so(fleet):
    """Inside `reading(0)` a five-day view reads the newest day only and serves exactly the
    hours of that day, recording one day of history served; the next view without a budget
    reads the other four days and serves all five."""
    dsn, end = fleet
    start = end - 5 * DAY
    with Store(dsn) as store:
        rollups = HourlyRollups(store)
        with reading(0) as short:
            first = rollups.view("node", start, end)
        assert rollups.history()["node"] == DAY
        with reading(None) as full:
            later = rollups.view("node", start, end)
    # `end` is a settled hour: the newest day is the 24 hours before it, plus its own rows
    assert (short.history, short.partial) == (DAY, True)
    assert_equal_hours(
        by_series_hour(first, "cpu_total_pct"), raw_hours(dsn, end - DAY, end, "cpu_total_pct")
    )
    assert (full.history, full.partial) == (5 * DAY, False)
    assert_equal_hours(
        by_series_hour(later, "cpu_total_pct"), raw_hours(dsn, start, end, "cpu_total_pct")
    )


def test_a_day_is_aggregated_in_one_hashed_pass(fleet):
    """The rollup query cleans each value once and hashes the hourly groups in memory: no
    sort (which spilled to disk at the default work_mem) and no second batch."""
    dsn, end = fleet
    with Store(dsn) as store:
        rollups = HourlyRollups(store)
        rollups._probe()
        with store.read() as cur:
            cur.execute(PLAN_SETTINGS)
            cur.execute(
                sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + rollups._query("node"),
                {"start": end - DAY - 1, "now": end - 1},
            )
            plan = next(iter(cur.fetchone().values()))[0]["Plan"]
    nodes, todo = [], [plan]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(node.get("Plans", []))
    types = [n["Node Type"] for n in nodes]
    assert "Sort" not in types
    hashed = [n for n in nodes if n.get("Strategy") == "Hashed"]
    assert len(hashed) == 1 and hashed[0]["HashAgg Batches"] == 1
    with psycopg.connect(dsn) as conn:
        groups = conn.execute(
            "SELECT count(DISTINCT (node_name, sample_time / 3600)) FROM monitor_samples_ring"
            " WHERE node_flag AND sample_time >= %s AND sample_time < %s",
            (end - DAY, end),
        ).fetchone()[0]
    assert hashed[0]["Actual Rows"] == groups
