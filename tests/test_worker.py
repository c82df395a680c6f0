"""The worker process (`exporter.worker_process`): the long-window analyses run in one
spawned process with its own rollups and connection, and the exporter serves exactly what
they would have returned in-process; failures there are failures of a run like any other."""

from __future__ import annotations

import os
import time

import pytest
from prometheus_client.exposition import choose_encoder

from exporter import registry
from exporter.analyzer import PerformanceAnalyzer
from exporter.collector import (
    DEFAULT_FORMATS,
    WARM_IN_PROCESS,
    WORKER_ANALYSES,
    PerfAnalyzerCollector,
    Scheduler,
    _worker_stateful,
)
from exporter.config import Config, ExporterConfig, PatternConfig
from exporter.exposition import SampleCache, families, render
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store

WORKER = Config(exporter=ExporterConfig(worker_process=True))
DEFAULT_FORMATS_TYPES = {ct: enc for enc, ct in (choose_encoder(a) for a in DEFAULT_FORMATS)}


@pytest.fixture(scope="module")
def live(pg_server):
    """A 3-day, 4-node fleet whose last sample is now."""
    name = pg_server.create_database("worker")
    dsn = pg_server.dsn_for(name)
    with Store(dsn) as store:
        load_fleet(store, FleetSpec(nodes=4, containers=2, days=3))
    yield dsn
    pg_server.drop_database(name)


@pytest.mark.slow
def test_worker_results_equal_in_process_results(live):
    """Same `now`, same window: the pickled result from the worker equals the result of the
    same analysis run here; the exporter's own context never builds the rollups."""
    now = int(time.time()) // 60 * 60 - 120
    with PerformanceAnalyzer(live, config=WORKER) as analyzer:
        scheduler = Scheduler(analyzer, WORKER)
        try:
            for name in sorted(WORKER_ANALYSES):
                analysis = registry.get(name)
                window = registry.served_window(analysis, WORKER)
                here = registry.run(analysis, PerformanceAnalyzer(live).ctx, window, now)
                there, seconds, rendered, _ = scheduler._in_worker(name, window, now)
                assert there == here, name
                assert seconds > 0
                # samples and text built in the worker are those the exporter would build
                assert analysis.serve is not None
                if analysis.serve.depends_on:
                    assert rendered is None
                    continue
                assert rendered is not None
                samples, texts = rendered
                assert samples == SampleCache(WORKER).samples({name: here}), name
                assert set(texts) == set(DEFAULT_FORMATS_TYPES)
                for content_type, encoder in DEFAULT_FORMATS_TYPES.items():
                    assert texts[content_type] == render(families(samples), encoder), name
            assert "rollups" not in analyzer.ctx.caches
        finally:
            scheduler.close()


@pytest.mark.slow
def test_worker_keeps_incremental_state_across_runs(live):
    """The incremental analyses keep their state in the worker process between runs: at two
    consecutive instants the worker's results equal those of the same analysis run here
    with its own state carried from the first instant to the second."""
    now = int(time.time()) // 60 * 60 - 180
    # (the 10-second ones, emergency and current, keep theirs in the serving process)
    stateful = sorted(
        a.name for a in registry.served() if a.incremental and a.name in WORKER_ANALYSES
    )
    assert {"anomalies", "availability", "contention"} <= set(stateful)
    with PerformanceAnalyzer(live, config=WORKER) as analyzer:
        scheduler = Scheduler(analyzer, WORKER)
        here_ctx = PerformanceAnalyzer(live).ctx
        try:
            for name in stateful:
                analysis = registry.get(name)
                assert analysis.incremental is not None
                window = registry.served_window(analysis, WORKER)
                state = analysis.incremental()
                for at in (now, now + 60):
                    here = registry.run(analysis, here_ctx, window, at, state)
                    there, _, _, _ = scheduler._in_worker(name, window, at)
                    assert there == here, (name, at)
            assert scheduler._worker is not None
            assert scheduler._worker.submit(_worker_stateful).result() == stateful
        finally:
            scheduler.close()


@pytest.mark.slow
def test_scheduler_serves_worker_runs_and_counts_their_failures(live, pg_server):
    """Every served analysis gets a result through the scheduler; a table that does not
    exist fails the worker's runs as database errors (the database was reached), and the
    in-process analyses fail the same way."""
    with PerformanceAnalyzer(live, config=WORKER) as analyzer:
        scheduler = Scheduler(analyzer, WORKER)
        try:
            # the short-window analyses' first runs are done here, not behind the cold
            # rollup-based runs in the worker; their later runs (and state) are the worker's
            cold = {n for n, j in scheduler.jobs.items() if not scheduler._in_worker_now(j)}
            assert cold & WORKER_ANALYSES == WARM_IN_PROCESS
            assert all(scheduler.jobs[n].state is None for n in WORKER_ANALYSES)
            scheduler.refresh(time.monotonic() + 120)
            warm = {n for n, j in scheduler.jobs.items() if scheduler._in_worker_now(j)}
            assert warm == WORKER_ANALYSES
            jobs = {j.name: j for j in scheduler.snapshot()}
            assert all(j.last_ok for j in jobs.values()), {n: j.errors for n, j in jobs.items()}
            assert all(j.result is not None for j in jobs.values())
            assert scheduler.database_up
            history = scheduler.rollup_history()  # read in the worker, reported here
            assert set(history) == {"node", "container"}
            assert history["node"] >= 7 * 86400  # correlation's week of profiles at least
            assert "rollups" not in analyzer.ctx.caches
        finally:
            scheduler.close()
    with PerformanceAnalyzer(Store(live, "no_such_table"), config=WORKER) as analyzer:
        scheduler = Scheduler(analyzer, WORKER)
        try:
            scheduler.refresh(time.monotonic() + 60)
            jobs = {j.name: j for j in scheduler.snapshot()}
            assert {n for n, j in jobs.items() if j.errors == 1} == set(jobs)
            assert all(j.result is None for j in jobs.values())
            assert scheduler.database_up  # reached: the query failed, not the connection
        finally:
            scheduler.close()


@pytest.mark.slow
def test_close_without_waiting_stops_the_worker(live):
    """Shutting down (`close(wait_for_runs=False)`, what `serve` does on SIGTERM) does not
    wait for a worker run in progress: the worker process is gone within seconds."""
    with PerformanceAnalyzer(live, config=WORKER) as analyzer:
        scheduler = Scheduler(analyzer, WORKER)
        scheduler._in_worker("availability", None, int(time.time()))
        assert scheduler._worker is not None
        processes = list(scheduler._worker._processes.values())
        assert len(processes) == 1 and processes[0].is_alive()
        started = time.monotonic()
        scheduler.close(wait_for_runs=False)
        processes[0].join(10)
        assert not processes[0].is_alive()
        assert time.monotonic() - started < 10


@pytest.mark.slow
def test_a_cold_first_run_answers_from_the_newest_day_then_from_all_of_it(live):
    """With no time to wait for older rollups, the worker's first patterns run answers from
    the newest day read, served as such (one day and the current hour of history, every
    node short of the 48 hours a pattern needs); the job is due again at once, and that run
    reads the whole five days of weekly history and counts every node row of the window."""
    config = Config(
        exporter=ExporterConfig(worker_process=True, cold_start_seconds=0),
        patterns=PatternConfig(days=2, weekly_history_days=5),
    )
    day = 86400
    with PerformanceAnalyzer(live, config=config) as analyzer:
        scheduler = Scheduler(analyzer, config)
        collector = PerfAnalyzerCollector(scheduler)
        job = scheduler.jobs["patterns"]
        try:
            scheduler._run(job, in_worker=True)
            assert job.last_ok and job.partial
            short = job.result
            assert short is not None and short["nodes"] == []
            assert len(short["insufficient_data"]) == 4
            end = short["window"]["end"]  # the current hour's start
            # the newest settled day: the day before the current hour, or before the one
            # before it in an hour's first minutes (its rows may still arrive)
            assert job.history is not None
            assert day <= job.history - (time.time() - end) + 60 <= day + 3600 + 60

            def served() -> dict[str, float]:
                return {
                    dict(s.labels)["analysis"]: s.value
                    for s in collector._self_samples(scheduler.snapshot())
                    if s.metric == "analysis_history_seconds"
                }

            assert served() == {"patterns": job.history}
            with scheduler._lock:
                rerun = scheduler._start_if_due(job)
            assert rerun is not None
            started = time.time()
            rerun.result()
            assert job.last_ok and not job.partial
            full = job.result
            end = full["window"]["end"]
            assert started - 1 <= job.history + end - 5 * day <= time.time() + 1
            assert served() == {"patterns": job.history}
        finally:
            scheduler.close()
    with Store(live) as store, store.read() as cur:
        cur.execute(
            "SELECT node_name, count(*) AS n FROM monitor_samples_ring WHERE node_flag"
            " AND sample_time >= %s AND sample_time < %s GROUP BY node_name",
            (end - 2 * day, end),
        )
        counts = {r["node_name"]: r["n"] for r in cur}
    assert {n["node_name"]: n["samples"] for n in full["nodes"]} == counts


def _niceness(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[16])  # field 19, nice


def test_the_worker_runs_at_a_lower_cpu_priority(live):
    """On a busy machine the scrapes get a core before the analyses: the worker process is
    `exporter.worker_niceness` below the exporter."""
    config = Config(exporter=ExporterConfig(worker_process=True, worker_niceness=7))
    with PerformanceAnalyzer(live, config=config) as analyzer:
        scheduler = Scheduler(analyzer, config)
        try:
            scheduler._in_worker("cpus", None, int(time.time()))
            assert scheduler._worker is not None
            pids = list(scheduler._worker._processes)  # the pool's one process
            assert len(pids) == 1
            assert _niceness(pids[0]) == _niceness(os.getpid()) + 7
        finally:
            scheduler.close(wait_for_runs=False)
