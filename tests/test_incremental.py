"""Incremental refresh: the exporter's runs, which keep state between minutes, answer
exactly what a run from scratch answers at the same `now`: mid-hour, right after an hour
and a day boundary, and after late rows land. Both runs share one analyzer (its hourly
rollups are the store both read; what the rollups keep is tested in their own tests). The
rollups' clock is set to each `now`, as in the exporter, whose `now` is the clock: an hour
younger than their settle time is read afresh, so a late row in it reaches the baselines."""

from __future__ import annotations

import dataclasses
import math
import time
import types
from typing import Any

import numpy as np
import psycopg
import pytest

from exporter import PerformanceAnalyzer, collector, registry, rollups
from exporter.analyses import anomalies as anomalies_module
from exporter.analyses import contention, emergency
from exporter.analyses.anomalies import AnomalyState
from exporter.analyses.contention import ContentionState
from exporter.analyses.sli import SliState
from exporter.config import Config
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store

HOUR, DAY = 3600, 86400
DAY_START = 1_790_000_040 // DAY * DAY  # a UTC midnight inside the fleet's last hours


def same(a: Any, b: Any, path: str = "") -> None:
    """Equal JSON values; floats within a relative 1e-9 (the same arithmetic, maybe in
    another order)."""
    if isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"{path}: {a} != {b}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def fleet(dsn):
    # 8 days: hour-of-day baselines and ranges; realistic sampler shapes (15 s to 5 min
    # intervals, jitter, late stamps, missed samples, container offsets, NULL columns)
    spec = FleetSpec(nodes=6, containers=1, days=8, end=DAY_START + 2 * HOUR, realistic=True)
    with Store(dsn) as store:
        return load_fleet(store, spec)


def invalid_row(dsn: str, node: str, t: int) -> None:
    """A node row stamped `t`, written now, with an impossible CPU share."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO monitor_samples_ring (sample_time, node_name, node_flag, cpu_total_pct)"
            " VALUES (%s, %s, true, 250)",
            (t, node),
        )


def late_rows(dsn: str, node: str, times: list[int]) -> None:
    """Node rows stamped `times`, written now: far off the node's level, so they matter."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for t in times:
            conn.execute(
                "INSERT INTO monitor_samples_ring (sample_time, node_name, node_flag,"
                " cpu_total_pct, mem_total_mb, mem_available_mb, load_1m)"
                " VALUES (%s, %s, true, 99.5, 16000, 300, 30)",
                (t, node),
            )


@pytest.mark.slow
def test_anomalies_incremental_equals_from_scratch(dsn, fleet, monkeypatch):
    clock = [0]
    monkeypatch.setattr(
        rollups, "time", types.SimpleNamespace(time=lambda: clock[0], monotonic=time.monotonic)
    )
    seasonal_fits = [0]
    fit_seasonal = anomalies_module._seasonal

    def counted(*args: Any) -> Any:
        seasonal_fits[0] += 1
        return fit_seasonal(*args)

    monkeypatch.setattr(anomalies_module, "_seasonal", counted)
    analysis = registry.get("anomalies")
    node = sorted(fleet.truth["nodes"])[0]
    state = AnomalyState()
    # a seasonal rate far above the default's, so seasonal departures are among the results
    # compared (the kept seasonal state is the same code at any rate)
    anomalies = dataclasses.replace(Config().anomalies, seasonal_false_per_day=2.0)
    with PerformanceAnalyzer(dsn, config=Config(anomalies=anomalies)) as analyzer:

        def check(now: int) -> None:
            clock[0] = now
            window = registry.served_window(analysis, analyzer.ctx.config)
            fits = seasonal_fits[0]
            incremental = registry.run(analysis, analyzer.ctx, window, now, state)
            warm_fits.append(seasonal_fits[0] - fits)
            scratch = registry.run(analysis, analyzer.ctx, window, now)
            same(incremental, scratch)
            invalid.append(scratch["data_quality"]["invalid_values"].get("cpu_total_pct", 0))
            kinds.update(a["kind"] for a in scratch["anomalies"])

        invalid: list[int] = []
        kinds: set[str] = set()
        warm_fits: list[int] = []  # seasonal tests fitted by each incremental run
        check(DAY_START - 1800)  # mid-hour, cold: fits
        check(DAY_START - 1740)  # a minute later: the complete hours are unchanged
        memo = state.kinds["node"]
        assert (memo.hits, memo.misses) == (1, 1)
        check(DAY_START + 60)  # right after an hour and a day boundary: a new hour to fit
        assert memo.misses == 2
        # late rows: one in the hour just completed, one in the hour in progress
        late_rows(dsn, node, [DAY_START - 200, DAY_START + 100])
        check(DAY_START + 240)
        assert memo.misses == 3  # the completed hour changed: refitted, not reused
        check(DAY_START + 1800)  # mid-hour, the completed hour settled: refitted once more
        check(DAY_START + 1860)
        hits = memo.hits
        check(DAY_START + 1920)
        assert memo.hits == hits + 1
        assert warm_fits[-1] == 0 and warm_fits[0] > 0  # kept, not refitted, on a hit
        # a late row stamped in a settled hour (past the rollups' settle time) and new rows
        late_rows(dsn, node, [DAY_START + 1500, DAY_START + 1950])
        invalid_row(dsn, node, DAY_START + 1600)  # late too: in the hour in progress
        before = state.invalid["node"].reread
        hits = memo.hits
        check(DAY_START + 1980)
        assert state.invalid["node"].reread == before + 1
        assert memo.hits == hits + 1  # late rows of the hour in progress: the model is kept
        check(DAY_START + HOUR + 30)  # right after the next hour boundary
        assert invalid[-2] == invalid[-3] + 1  # the late invalid value is counted
        assert "seasonal_departure" in kinds
        # the hour just completed is not settled yet: read fresh, kept while unchanged, and
        # a late row in it (or its settling into the rollups) rebuilds the model
        misses = memo.misses
        check(DAY_START + HOUR + 90)
        assert (memo.hits, memo.misses) == (hits + 2, misses)
        late_rows(dsn, node, [DAY_START + HOUR - 100])
        check(DAY_START + HOUR + 150)
        assert memo.misses == misses + 1
        check(DAY_START + HOUR + 400)
        assert memo.misses == misses + 2
        check(DAY_START + HOUR + 460)
        assert memo.hits == hits + 3


def edge_nodes(dsn: str, start: int, end: int) -> None:
    """Two more nodes: one sampling every 5 minutes, one every minute with a 5-hour outage
    and silent from DAY_START + 1500 on; a few invalid CPU values on both."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for node, step, skip in (
            ("edge-5min", 300, "false"),
            (
                "edge-outage",
                60,
                f"t > {DAY_START - 6 * HOUR} AND t < {DAY_START - HOUR} OR t > {DAY_START + 1500}",
            ),
        ):
            conn.execute(
                "INSERT INTO monitor_samples_ring (sample_time, node_name, node_flag,"
                " cpu_total_pct, mem_total_mb, mem_available_mb, load_1m)"
                " SELECT t + (t / %(step)s) %% 7 - 3, %(node)s, true,"
                " CASE WHEN (t / %(step)s) %% 97 = 0 THEN 250 ELSE 20 + (t / %(step)s) %% 70 END,"
                " 16000, 1000 + (t / %(step)s) %% 9000, (t / %(step)s) %% 5"
                f" FROM generate_series(%(start)s::bigint, %(end)s, %(step)s) t WHERE NOT ({skip})",
                {"node": node, "step": step, "start": start, "end": end},
            )


@pytest.mark.slow
def test_availability_incremental_equals_from_scratch(dsn, fleet, monkeypatch):
    edge_nodes(dsn, fleet.start, fleet.end)
    analysis = registry.get("availability")
    node = sorted(fleet.truth["nodes"])[0]
    state = SliState()
    with PerformanceAnalyzer(dsn) as analyzer:

        def check(now: int) -> None:
            window = registry.served_window(analysis, analyzer.ctx.config)
            incremental = registry.run(analysis, analyzer.ctx, window, now, state)
            scratch = registry.run(analysis, analyzer.ctx, window, now)
            same(incremental, scratch)
            assert {"edge-5min", "edge-outage"} <= {n["node_name"] for n in scratch["nodes"]}

        check(DAY_START - 1800)  # mid-hour, cold
        check(DAY_START - 1740)  # a minute later: only the new minute is read
        assert state.reread == 0
        assert state.kept.counted == 0  # the kept hours' total is unchanged: not per hour
        check(DAY_START + 60)  # right after an hour and a day boundary
        # late rows: in the hour just completed, in the hour in progress, in an old hour
        late_rows(dsn, node, [DAY_START - 200, DAY_START + 100, DAY_START - 20 * HOUR])
        check(DAY_START + 240)
        assert state.reread == 2  # the two complete hours read again, not the others
        assert state.kept.counted == 1
        check(DAY_START + 1800)  # edge-outage silent for 5 minutes
        check(DAY_START + 1860)
        with psycopg.connect(dsn, autocommit=True) as conn:  # a removed row
            conn.execute(
                "DELETE FROM monitor_samples_ring WHERE node_name = 'edge-5min'"
                " AND sample_time BETWEEN %s AND %s",
                (DAY_START - 3 * HOUR, DAY_START - 3 * HOUR + 400),
            )
        check(DAY_START + 1920)
        assert state.reread == 3
        check(DAY_START + HOUR)  # the window starts on an hour
        check(DAY_START + HOUR + 30)  # the next hour boundary; the window's start moved on
        check(DAY_START + 2 * HOUR + 3 * 60)  # past the fleet's end: every node silent
        late_rows(dsn, node, [DAY_START + 2 * HOUR + 60])  # late, in an hour without rows
        check(DAY_START + 2 * HOUR + 4 * 60)
        assert state.reread == 4
        check(DAY_START + 2 * HOUR + DAY + 600)  # a day later: nothing kept is in the window


@pytest.mark.slow
def test_anomaly_candidates_follow_their_bounds(dsn, fleet, monkeypatch):
    """Candidates kept for an hour are read again when the bounds they were filtered by
    change, not only when the hour's rows do: here two runs share one state across a
    stricter score threshold (in the exporter the bounds move when the baselines refit)."""
    now = DAY_START + 1800
    monkeypatch.setattr(
        rollups, "time", types.SimpleNamespace(time=lambda: now, monotonic=time.monotonic)
    )
    analysis = registry.get("anomalies")
    state = AnomalyState()
    loose = Config()
    strict = dataclasses.replace(
        loose, anomalies=dataclasses.replace(loose.anomalies, score_threshold=2.5)
    )
    with PerformanceAnalyzer(dsn, config=loose) as analyzer:
        registry.run(analysis, analyzer.ctx, 1, now - 60, state)
    with PerformanceAnalyzer(dsn, config=strict) as analyzer:
        incremental = registry.run(analysis, analyzer.ctx, 1, now, state)
        scratch = registry.run(analysis, analyzer.ctx, 1, now)
    same(incremental, scratch)
    assert state.candidates["node"].reread > 0


def learned_intervals(dsn: str, now: int) -> dict[str, float]:
    """Each node's interval computed here: the median spacing of its distinct node-row
    stamps in the 6 hours before the hour of its newest node row (before the row itself
    with fewer than two there, 60 s with fewer than two in all)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT node_name, sample_time FROM monitor_samples_ring"
            " WHERE node_flag AND sample_time <= %s",
            (now,),
        ).fetchall()
    out = {}
    for node in {r[0] for r in rows}:
        t = np.array(sorted({r[1] for r in rows if r[0] == node}), np.int64)
        hour = int(t[-1]) // HOUR * HOUR
        learned = t[(t > hour - 6 * HOUR) & (t <= hour)]
        if len(learned) < 2:
            learned = t[t > t[-1] - 6 * HOUR]
        out[node] = float(np.median(np.diff(learned))) if len(learned) > 1 else 60.0
    return out


@pytest.mark.slow
def test_node_facts_learned_once_an_hour(dsn, fleet, monkeypatch):
    """Node intervals kept between runs equal those of a run with an empty cache and those
    computed here; within an hour a warm run learns none again."""
    asked: list[int] = []
    learn = emergency._intervals

    def counted(cur, ctx, lasts, history):
        asked.append(len(lasts))
        return learn(cur, ctx, lasts, history)

    monkeypatch.setattr(emergency, "_intervals", counted)
    with PerformanceAnalyzer(dsn) as analyzer:

        def check(now: int) -> int:
            asked.clear()
            warm = emergency.node_facts(analyzer.ctx, now)
            learned = sum(asked)
            scratch = emergency.node_facts(dataclasses.replace(analyzer.ctx, caches={}), now)
            assert warm == scratch
            expected = learned_intervals(dsn, now)
            assert {n: f.interval for n, f in warm.items() if n in expected} == expected
            return learned

        nodes = len(learned_intervals(dsn, DAY_START - 1800))
        assert check(DAY_START - 1800) == nodes  # cold: every node learned
        assert check(DAY_START - 1740) == 0  # a minute later: none
        assert check(DAY_START - 60) == 0
        assert 0 < check(DAY_START + 60) <= nodes  # a new hour for the nodes that wrote in it
        # a new node, two rows 80 s apart this hour: learned from the rows up to its newest
        with psycopg.connect(dsn, autocommit=True) as conn:
            for t in (DAY_START + 1680, DAY_START + 1760):
                conn.execute(
                    "INSERT INTO monitor_samples_ring (sample_time, node_name, node_flag)"
                    " VALUES (%s, 'young', true)",
                    (t,),
                )
        check(DAY_START + 1800)
        assert check(DAY_START + 1860) == 0
        young = emergency.node_facts(analyzer.ctx, DAY_START + 1860)["young"]
        assert young.interval == 80


def container_rows(dsn: str, node: str, container: str, times: list[int]) -> None:
    """Container rows stamped `times`, written now, using most of the node's CPU."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for t in times:
            conn.execute(
                "INSERT INTO monitor_samples_ring (sample_time, node_name, container_name,"
                " node_flag, cpu_total_pct, c_rss_mb) VALUES (%s, %s, %s, false, 90, 5000)",
                (t, node, container),
            )


@pytest.mark.slow
def test_contention_incremental_equals_from_scratch(dsn, fleet, monkeypatch):
    """Contention's kept rows (its window and baseline, 7 hours) give the answer of a run
    from scratch: a minute on, across hour boundaries, after late node and container rows
    (a pressure episode written late), a duplicate and a removed row."""
    analysis = registry.get("contention")
    node = sorted(fleet.truth["nodes"])[1]
    container = fleet.truth["nodes"][node]["containers"][0]
    state = ContentionState()
    with PerformanceAnalyzer(dsn) as analyzer:
        window = registry.served_window(analysis, analyzer.ctx.config)

        def check(now: int, empty: bool = False) -> dict[str, Any]:
            incremental = registry.run(analysis, analyzer.ctx, window, now, state)
            scratch = registry.run(analysis, analyzer.ctx, window, now)
            same(incremental, scratch)
            assert bool(scratch["nodes"]) is not empty  # something to compare
            return scratch

        check(DAY_START - 1800)  # mid-hour, cold
        check(DAY_START - 1740)  # a minute later: only the new minute is read
        assert state.reread == 0 and state.kept.counted == 0
        check(DAY_START + 60)  # right after an hour boundary
        # late rows under pressure: node and container, the hour just completed and the
        # hour in progress, and one in the baseline six hours back
        times = [DAY_START - 200, DAY_START + 100, DAY_START - 5 * HOUR - 100]
        late_rows(dsn, node, times)
        container_rows(dsn, node, container, [t + 2 for t in times])
        after = check(DAY_START + 240)
        assert state.reread == 2  # the two complete hours; the hour in progress is read anyway
        cpu = next(n for n in after["nodes"] if n["node_name"] == node and n["resource"] == "cpu")
        assert cpu["pressure_samples"] >= 2  # the late rows are under pressure and counted
        with psycopg.connect(dsn, autocommit=True) as conn:  # a duplicate, a removed row
            conn.execute(
                "INSERT INTO monitor_samples_ring SELECT * FROM monitor_samples_ring"
                " WHERE node_name = %s AND sample_time = %s",
                (node, DAY_START - 200),
            )
            conn.execute(
                "DELETE FROM monitor_samples_ring WHERE node_name = %s AND NOT node_flag"
                " AND sample_time BETWEEN %s AND %s",
                (node, DAY_START - 3 * HOUR + 1, DAY_START - 3 * HOUR + 600),
            )
        check(DAY_START + 300)
        assert state.reread == 4
        check(DAY_START + HOUR)  # the window starts on an hour
        check(DAY_START + HOUR + 30)  # the next boundary: the oldest hour leaves
        check(DAY_START + 2 * HOUR + 3 * 60)  # past the fleet's end
        # later: the newest rows in the baseline only, and the columns of the rows that
        # left are dropped
        monkeypatch.setattr(contention, "SLACK", 0)
        with psycopg.connect(dsn) as conn:
            end = conn.execute("SELECT max(sample_time) FROM monitor_samples_ring").fetchone()
        check(int(end[0]) + 30)
        rows = len(state.columns["t"])
        check(int(end[0]) + 6 * HOUR, empty=True)
        assert 0 < len(state.columns["t"]) < rows / 2


def test_served_analyses_declare_their_state():
    """The exporter gives an analysis with a state factory a state of its own."""
    assert isinstance(registry.get("anomalies").incremental(), AnomalyState)
    assert isinstance(registry.get("availability").incremental(), SliState)
    assert isinstance(registry.get("contention").incremental(), ContentionState)


def test_worker_renders_equal_samples_once(monkeypatch):
    """The worker renders an analysis's text again only when its samples changed: the
    10-second analyses mostly repeat their samples, and rendering them was most of their
    cost."""
    monkeypatch.setattr(
        collector, "_worker", types.SimpleNamespace(ctx=types.SimpleNamespace(config=Config()))
    )
    monkeypatch.setattr(collector, "_worker_texts", {})
    analysis = registry.get("emergency")

    def result(level: int, value: float) -> dict[str, Any]:
        check = {"node_name": "a", "check": "cpu", "level": level, "value": value, "samples": 5}
        return {"checks": [check], "forgotten": []}

    first = collector._worker_render(analysis, result(0, 12.0))
    again = collector._worker_render(analysis, result(0, 14.0))  # the value is not served
    changed = collector._worker_render(analysis, result(2, 97.0))
    assert first is not None and again is not None and changed is not None
    assert again[1] is first[1]  # the same text, not rendered again
    assert changed[1] != first[1]
    assert any(b'check="cpu"' in text and b"} 2" in text for text in changed[1].values())


def rows_in(dsn: str, where: str, params: tuple[Any, ...]) -> int:
    """Rows of the table matching `where`, counted by this test's own SQL."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT node_name, container_name, sample_time"
            f" FROM monitor_samples_ring WHERE node_name IS NOT NULL AND {where}) d",
            params,
        ).fetchone()
    assert found is not None
    return int(found[0])


@pytest.mark.slow
def test_emergency_and_current_incremental_equal_from_scratch(dsn, fleet, monkeypatch):
    """The 10-second analyses, run every 10 s with their kept rows, answer what a run from
    scratch answers (a fresh context: no cached walk either) through late, duplicate,
    removed and invalid rows, a new node, a node going silent, and `now` stepping back or
    far ahead; a warm run reads only the rows after the previous run, less the margin."""
    checks = (registry.get("emergency"), registry.get("current"))
    states = {a.name: a.incremental() for a in checks}
    assert isinstance(states["emergency"], emergency.EmergencyState)
    read: list[int] = []  # rows read by the warm runs
    original = emergency.KeptRows._read
    warm_rows = (states["emergency"].kept, states["current"].kept)

    def counted(self: Any, *args: Any) -> list[dict[str, Any]]:
        rows = original(self, *args)
        if any(self is kept for kept in warm_rows):
            read.append(len(rows))
        return rows

    monkeypatch.setattr(emergency.KeptRows, "_read", counted)
    node = sorted(fleet.truth["nodes"])[1]
    with PerformanceAnalyzer(dsn) as analyzer:

        def check(now: int, silent: bool = False) -> None:
            for analysis in checks:
                window = registry.served_window(analysis, analyzer.ctx.config)
                warm = registry.run(analysis, analyzer.ctx, window, now, states[analysis.name])
                fresh = dataclasses.replace(analyzer.ctx, caches={})
                scratch = registry.run(analysis, fresh, window, now)
                if analysis.name == "current":
                    warm["summary"].pop("generated_at")
                    scratch["summary"].pop("generated_at")
                    assert bool(scratch["summary"]["nodes"]) is not silent
                else:
                    assert scratch["nodes"] >= len(fleet.truth["nodes"])
                same(warm, scratch, analysis.name)

        t0 = DAY_START + 600
        check(t0)  # cold
        for step in (10, 20, 30, 70):  # warm, with the fleet's rows arriving by the minute
            read.clear()
            check(t0 + step)
            margin = emergency.LATE_MARGIN
            expected = rows_in(
                dsn,
                "sample_time > %s AND sample_time <= %s",
                (t0 + step - 10 - margin if step != 70 else t0 + 30 - margin, t0 + step),
            )
            assert read == [expected, expected]  # one read each, no node read again
        kept = states["emergency"].kept
        before = kept.reread
        late_rows(dsn, node, [t0 + 70 - 200])  # late: older than the margin, in the window
        check(t0 + 80)
        assert kept.reread == before + 1  # that node alone is read again
        invalid_row(dsn, node, t0 + 70 - 100)
        with psycopg.connect(dsn, autocommit=True) as conn:
            # a second copy of a row with fewer valid values: it never wins
            conn.execute(
                "INSERT INTO monitor_samples_ring (sample_time, node_name, node_flag)"
                " SELECT sample_time, node_name, true FROM monitor_samples_ring"
                " WHERE node_name = %s AND node_flag AND sample_time <= %s"
                " ORDER BY sample_time DESC LIMIT 1",
                (node, t0 + 40),
            )
            conn.execute(  # a removed row
                "DELETE FROM monitor_samples_ring WHERE ctid = (SELECT ctid FROM"
                " monitor_samples_ring WHERE node_name <> %s AND sample_time BETWEEN %s AND %s"
                " LIMIT 1)",
                (node, t0 - 200, t0),
            )
            # a new node, its node flag NULL on one row, a container row with a NULL value
            for t, flag, container, cpu in (
                (t0 + 20, True, None, 40.0),
                (t0 + 50, None, None, 90.0),
                (t0 + 60, True, None, 60.0),
                (t0 + 60, False, "app", None),
                (t0 + 75, True, None, 50.0),
            ):
                conn.execute(
                    "INSERT INTO monitor_samples_ring (sample_time, node_name, node_flag,"
                    " container_name, cpu_total_pct, mem_total_mb, mem_available_mb, c_rss_mb)"
                    " VALUES (%s, 'em-new', %s, %s, %s, 8000, 500, 12)",
                    (t, flag, container, cpu),
                )
        check(t0 + 90)
        check(t0 + 100)
        check(t0 + 400)  # em-new silent, the window past its rows
        check(t0 + 300)  # `now` stepped back: from scratch
        check(t0 + 3 * HOUR, silent=True)  # far ahead, past the fleet's end
        check(t0 + 3 * HOUR + 10, silent=True)


def test_check_figures_by_hand(dsn):
    """The window's medians, counts and swap slope of one node, against figures worked
    out by hand: invalid and NULL values are left out, the oldest row is outside the
    window, and an odd count takes the middle value, an even one the mean of the two."""
    now = 1_800_000_000
    rows = [  # seconds before now, CPU %, free MiB of 10,000, swap MiB, network errors/s
        (330, 99.0, 100, 0, None),  # outside the 5-minute window
        (290, 10.0, 200, 100, None),
        (230, 250.0, 300, 110, 1.0),  # CPU invalid
        (170, 50.0, 400, None, None),
        (110, 20.0, 500, 130, 3.0),
        (50, 40.0, None, 140, None),
    ]
    with Store(dsn) as store, psycopg.connect(dsn, autocommit=True) as conn:
        for ago, cpu, free, swap, errors in rows:
            conn.execute(
                "INSERT INTO monitor_samples_ring (sample_time, node_name, node_flag,"
                " cpu_total_pct, mem_total_mb, mem_available_mb, swap_used_mb, net_rx_errs_s)"
                " VALUES (%s, 'hand', true, %s, 10000, %s, %s, %s)",
                (now - ago, cpu, free, swap, errors),
            )
        with PerformanceAnalyzer(store) as analyzer:
            result = emergency.emergency_health_check(analyzer.ctx, now=now)
    figures = {c["check"]: (c["value"], c["samples"]) for c in result["checks"]}
    assert figures["cpu"] == (30.0, 4)  # 10, 20, 40, 50
    assert figures["memory"] == (3.5, 4)  # 2, 3, 4, 5 % free
    assert figures["network_errors"] == (2.0, 2)  # 1 and 3
    # memory is low (P1 at 5 %), so swap growth counts: 100, 110, 130, 140 MiB at -290,
    # -230, -110, -50 s; least squares over minutes: 10 MiB per minute
    assert figures["swap"] == (10.0, 4)
