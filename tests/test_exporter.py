"""The exporter over real HTTP and a real PostgreSQL: contract metrics with values that
match the simulator's truth, single flight, deadlines, database outages, TLS and auth."""

from __future__ import annotations

import dataclasses
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg.rows import dict_row

from exporter import PerformanceAnalyzer, __version__, registry
from exporter.collector import PerfAnalyzerCollector, Scheduler
from exporter.config import Config, ExporterConfig
from exporter.metrics import METRICS
from exporter.server import ExporterApp, ExporterServer
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store
from exporter.webconfig import load_web_config

DAY = 86400


@pytest.fixture(scope="module")
def live(pg_server):
    """An 8-day, 14-node fleet whose last sample is now: the exporter runs on the wall clock."""
    name = pg_server.create_database("live")
    dsn = pg_server.dsn_for(name)
    with Store(dsn) as store:
        fleet = load_fleet(store, FleetSpec(nodes=14, containers=2, days=8))
    yield dsn, fleet
    pg_server.drop_database(name)


class Running:
    def __init__(
        self,
        dsn: str,
        config: Config | None = None,
        web_config: str | None = None,
        protect_probes: bool = False,
    ):
        self.config = config or Config()
        self.name = f"perf-analyzer-test-{id(self)}"
        self.pool_size = self.config.exporter.workers + 1
        # connections of this exporter: the pool's, and the worker process's own one
        self.connections = self.pool_size + (1 if self.config.exporter.worker_process else 0)
        self.store = Store(  # wired as `perf-analyzer serve` wires it, named for pg_stat_activity
            dsn,
            statement_timeout=self.config.exporter.statement_timeout_seconds,
            pool_size=self.pool_size,
            application_name=self.name,
        )
        self.scheduler = Scheduler(PerformanceAnalyzer(self.store, config=self.config), self.config)
        self.collector = PerfAnalyzerCollector(self.scheduler)
        app = ExporterApp(
            self.collector,
            load_web_config(web_config),
            table="monitor_samples_ring",
            protect_probes=protect_probes,
        )
        self.server = ExporterServer(app, "127.0.0.1:0")
        self.server.start()
        self.url = f"{self.server.scheme}://127.0.0.1:{self.server.port}"

    def close(self) -> None:
        self.server.stop()
        self.store.close()


class BackendWatch:
    """Polls pg_stat_activity in a thread for one exporter's backends (by application_name)
    while the block runs: `most` is the most seen at once, `seen` every poll's rows."""

    QUERY = (
        "SELECT pid, state, wait_event_type, query_start,"
        " extract(epoch FROM clock_timestamp() - query_start)::float8 AS age"
        " FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()"
    )

    def __init__(self, dsn: str, application_name: str, every: float = 0.05) -> None:
        self.dsn, self.application_name, self.every = dsn, application_name, every
        self.seen: list[list[dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    @property
    def most(self) -> int:
        return max(map(len, self.seen), default=0)

    def now(self) -> list[dict]:
        with psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row) as conn:
            return conn.execute(self.QUERY, (self.application_name,)).fetchall()

    def _poll(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row) as conn:
            while not self._stop.is_set():
                self.seen.append(conn.execute(self.QUERY, (self.application_name,)).fetchall())
                self._stop.wait(self.every)

    def __enter__(self) -> BackendWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def exporter_for():
    started: list[Running] = []

    def start(dsn: str, **kw) -> Running:
        started.append(Running(dsn, **kw))
        return started[-1]

    yield start
    for r in started:
        r.close()


def scrape(url: str, timeout_header: float | None = None, **kw) -> dict[tuple, float]:
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": str(timeout_header)} if timeout_header else {}
    request = urllib.request.Request(url + "/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=60, **kw) as response:
        text = response.read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return values


def value(samples: dict, name: str, **labels) -> float:
    return samples[("perf_analyzer_" + name, tuple(sorted(labels.items())))]


def names(samples: dict) -> set[str]:
    return {name for name, _ in samples}


@pytest.fixture(scope="module")
def warm(live) -> Iterator[tuple[dict, object]]:
    """One exporter scraped until every analysis has a result."""
    dsn, fleet = live
    running = Running(dsn)
    try:
        samples = scrape(running.url, timeout_header=120)
        yield samples, fleet
    finally:
        running.close()


def test_every_contract_metric_is_served(warm):
    samples, _ = warm
    served = names(samples)
    for metric in METRICS:
        if metric.name == "perf_analyzer_series_dropped":
            continue  # only while the budget cuts something
        assert metric.name in served, metric.name
    labelled = {n: dict(labels) for n, labels in samples}
    for metric in METRICS:
        if metric.name in labelled:
            assert set(labelled[metric.name]) == set(metric.labels), metric.name
    assert value(samples, "build_info", version=__version__) == 1
    assert value(samples, "database_up") == 1


def test_values_match_the_injected_truth(warm):
    samples, fleet = warm
    t = fleet.truth_for
    assert value(samples, "emergency_threat", node=t("cpu_saturation")["node"], check="cpu") == 3
    assert (
        value(samples, "emergency_threat", node=t("overheating")["node"], check="temperature") == 3
    )
    assert value(samples, "emergency_threat", node=t("iowait_high")["node"], check="iowait") == 2
    assert value(samples, "emergency_threat", node="node-01", check="cpu") == 0
    outage = t("outage_gap")["node"]
    assert value(samples, "sli_compliance_ratio", node=outage, sli="availability") == (
        pytest.approx(0.875, abs=0.005)
    )
    assert value(samples, "health_grade", node=outage, grade="poor") == 1
    assert value(samples, "health_score", node=outage) == 1
    assert value(samples, "health_grade", node="node-01", grade="excellent") == 1
    assert value(samples, "health_score", node=t("cpu_saturation")["node"]) == 0
    leak = t("memory_leak")
    tte = value(samples, "time_to_exhaustion_seconds", node=leak["node"], resource="memory")
    days_to_p1 = (leak["available_at_end_mb"] - 0.05 * leak["mem_total_mb"]) / leak[
        "slope_mb_per_day"
    ]
    assert tte == pytest.approx(days_to_p1 * DAY, rel=0.1)  # exhaustion is 5 % free (P1)
    assert value(samples, "time_to_exhaustion_seconds", node="node-01", resource="cpu") == (
        float("inf")
    )
    stale = t("stale")
    assert (
        value(samples, "node_last_sample_timestamp_seconds", node=stale["node"])
        == (stale["last_sample_time"])
    )
    hot = t("cpu_saturation")["node"]
    assert value(samples, "anomaly_score", node=hot, container="", metric="cpu_total_pct") > 4
    assert (
        value(samples, "anomaly_score", node="node-01", container="", metric="cpu_total_pct") == 0
    )
    noisy = t("noisy_neighbour")["node"]
    assert value(samples, "contention_score", node=noisy, resource="cpu") > 0.5
    assert value(samples, "cpu_usage_ratio", node=hot) == pytest.approx(0.97, abs=0.01)
    peak = fleet.truth["nodes"]["node-01"]["peak_hour_utc"]
    assert abs(value(samples, "workload_peak_hour", node="node-01") - peak) <= 1
    pair = t("correlated_metrics")
    assert (
        value(
            samples,
            "metric_correlation",
            node=pair["node"],
            metric_a=pair["metric_a"],
            metric_b=pair["metric_b"],
        )
        > 0.7
    )
    for level in ("p2", "p3"):  # a ratio, at most the static level of the same priority
        threshold = value(
            samples, "dynamic_threshold", node="node-01", metric="cpu_total_pct", level=level
        )
        assert 0.5 * {"p2": 0.90, "p3": 0.85}[level] <= threshold <= {"p2": 0.90, "p3": 0.85}[level]


@pytest.mark.slow
def test_concurrent_scrapes_share_one_run(live, exporter_for):
    dsn, _ = live
    slow = {a.name: 300 for a in registry.served()}
    config = Config(exporter=ExporterConfig(refresh=slow))
    running = exporter_for(dsn, config=config)
    scrapers = 50
    barrier = threading.Barrier(scrapers)

    def one(_):
        barrier.wait()
        return scrape(running.url, timeout_header=120)

    with BackendWatch(dsn, running.name) as watch, ThreadPoolExecutor(scrapers) as pool:
        results = list(pool.map(one, range(scrapers)))
    assert len(results) == scrapers  # every scrape answered 200 (urlopen raises otherwise)
    assert {j.name: j.runs for j in running.scheduler.snapshot()} == {
        a.name: 1 for a in registry.served()
    }
    assert all(value(r, "database_up") == 1 for r in results)
    print(f"\n50 concurrent cold scrapes: at most {watch.most} exporter connections")
    # the pool and the worker process's connection, plus at most one probe per process (the
    # exporter's store and the worker's each say, with one connection at a time, why a pool
    # that timed out on a loaded machine could not give a connection)
    assert 1 <= watch.most <= running.connections + 2


@pytest.mark.slow
def test_deadline_serves_last_results_while_the_table_is_locked(live, exporter_for):
    dsn, _ = live
    running = exporter_for(dsn)
    before = scrape(running.url, timeout_header=120)
    with psycopg.connect(dsn) as locker:
        locker.execute("LOCK TABLE monitor_samples_ring IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        during = scrape(running.url, timeout_header=2)
        elapsed = time.monotonic() - started
        assert elapsed < 2.0
        # the last good results are still served while the new runs wait on the lock
        assert value(during, "health_score", node="node-01") == value(
            before, "health_score", node="node-01"
        )
        assert names(during) >= names(before) - {"perf_analyzer_series_dropped"}
        locker.rollback()  # release the lock
    time.sleep(1)
    assert 1 <= len(BackendWatch(dsn, running.name).now()) <= running.connections


@pytest.mark.slow
def test_database_outage_and_recovery(tmp_path, exporter_for):
    from exporter.embedded import FAST_UNSAFE_SETTINGS, EmbeddedPostgres

    pg = EmbeddedPostgres(tmp_path / "pg", settings=FAST_UNSAFE_SETTINGS).start()
    try:
        with Store(pg.dsn) as store:
            load_fleet(store, FleetSpec(nodes=3, containers=1, days=1))
        often = {"current": 1, "emergency": 1}
        fast = Config(exporter=ExporterConfig(refresh=often, retry_seconds=0))
        running = exporter_for(pg.dsn, config=fast)
        up = scrape(running.url, timeout_header=60)
        assert value(up, "database_up") == 1
        pg.stop()
        down = scrape(running.url, timeout_header=15)
        for _ in range(30):  # the next background run finds the database gone
            if value(down, "database_up") == 0:
                break
            time.sleep(0.5)
            down = scrape(running.url, timeout_header=15)
        assert value(down, "database_up") == 0
        # the last good analyses are still served, with their success timestamps
        assert value(down, "health_score", node="node-01") == value(
            up, "health_score", node="node-01"
        )
        assert value(down, "analysis_errors_total", analysis="current") >= 1
        assert value(down, "analysis_last_run_success", analysis="current") == 0
        pg.start()
        again = scrape(running.url, timeout_header=30)
        for _ in range(30):
            if value(again, "database_up") == 1 and value(
                again, "analysis_last_run_success", analysis="current"
            ):
                break
            time.sleep(0.5)
            again = scrape(running.url, timeout_header=30)
        assert value(again, "database_up") == 1
        assert value(again, "analysis_last_run_success", analysis="current") == 1
    finally:
        pg.stop()


def _analysis_series(samples: dict) -> int:
    own = (
        "perf_analyzer_analysis_",
        "perf_analyzer_build",
        "perf_analyzer_database",
        "perf_analyzer_exposition_errors",
        "perf_analyzer_series_dropped",
    )
    return sum(1 for name, _ in samples if not name.startswith(own))


@pytest.mark.slow
def test_series_budget_cuts_in_order_and_counts(live, exporter_for):
    dsn, _ = live

    def counted(samples: dict) -> int:  # the budget bounds the whole output, process_* too
        return len(samples)

    full = scrape(exporter_for(dsn).url, timeout_header=120)
    budget = counted(full) - 100
    config = dataclasses.replace(Config(), exporter=ExporterConfig(max_series=budget))
    cut = scrape(exporter_for(dsn, config=config).url, timeout_header=120)
    dropped = {
        dict(labels)["kind"]: v
        for (n, labels), v in cut.items()
        if n == "perf_analyzer_series_dropped"
    }
    assert counted(cut) == budget
    assert dropped["node"] == 0  # the cut classes were enough
    assert 80 <= sum(dropped.values()) <= 120  # the two exporters ran seconds apart
    assert dropped["container_anomaly_zero"] > 0  # the first to go
    assert dropped["anomaly"] == 0  # the worst anomalies stay
    for node in ("node-01", "node-02"):
        assert value(cut, "health_score", node=node) == value(full, "health_score", node=node)


def test_budget_order_exactly():
    from exporter.exposition import apply_budget
    from exporter.samples import ANOMALY_HIGH, ANOMALY_ZERO, CONTAINER_ZERO, CORRELATION, sample

    samples = [
        sample("health_score", 4, node="a"),
        sample("anomaly_score", 9.0, ANOMALY_HIGH, 9.0, node="a", container="", metric="x"),
        sample("anomaly_score", 5.0, ANOMALY_HIGH, 5.0, node="a", container="", metric="y"),
        sample("metric_correlation", 0.9, CORRELATION, 0.9, node="a", metric_a="x", metric_b="y"),
        sample("metric_correlation", 0.7, CORRELATION, 0.7, node="a", metric_a="x", metric_b="z"),
        sample("anomaly_score", 0, ANOMALY_ZERO, node="a", container="", metric="z"),
        sample("anomaly_score", 0, CONTAINER_ZERO, node="a", container="c", metric="z"),
    ]
    kept, dropped = apply_budget(samples, 3)
    assert [s.value for s in kept] == [4, 9.0, 5.0]
    assert dropped["container_anomaly_zero"] == dropped["anomaly_zero"] == 1
    assert dropped["correlation"] == 2
    kept, dropped = apply_budget(samples, 2)
    assert [s.value for s in kept] == [4, 9.0]  # the smaller anomaly goes first
    assert apply_budget(samples, 100) == (samples, dict.fromkeys(dropped, 0))


def test_http_routes(warm, live, exporter_for):
    dsn, _ = live
    running = exporter_for(dsn)
    with urllib.request.urlopen(running.url + "/-/healthy") as r:
        assert r.status == 200
    with urllib.request.urlopen(running.url + "/") as r:
        page = r.read().decode()
    assert "/metrics" in page and "monitor_samples_ring" in page and "postgres@" not in page
    for path, method, status in (("/nope", "GET", 404), ("/metrics", "POST", 405)):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(running.url + path, method=method))
        assert err.value.code == status
    request = urllib.request.Request(
        running.url + "/metrics",
        headers={
            "Accept": "application/openmetrics-text; version=1.0.0",
            "X-Prometheus-Scrape-Timeout-Seconds": "60",
        },
    )
    with urllib.request.urlopen(request) as r:
        body = r.read().decode()
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF")
    with urllib.request.urlopen(running.url + "/-/ready") as r:
        assert r.status == 200


def _body(url: str, accept: str) -> str:
    request = urllib.request.Request(
        url + "/metrics", headers={"Accept": accept, "X-Prometheus-Scrape-Timeout-Seconds": "120"}
    )
    with urllib.request.urlopen(request) as r:
        return r.read().decode()


@pytest.mark.slow
def test_warm_scrapes_join_parts_rendered_once_in_each_format(live, exporter_for, monkeypatch):
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as openmetrics_families,
    )

    import exporter.collector as collector_module

    dsn, _ = live
    slow = {a.name: 300 for a in registry.served()}  # no new result during the test
    running = exporter_for(dsn, config=Config(exporter=ExporterConfig(refresh=slow)))
    openmetrics = "application/openmetrics-text; version=1.0.0"
    text_first = _body(running.url, "text/plain")
    om_first = _body(running.url, openmetrics)
    for _ in range(600):  # the last run's own build (after every run) is done, too
        if all(job.future is None for job in running.scheduler.jobs.values()):
            break
        time.sleep(0.1)
    with running.collector._building:
        pass
    rendered = []
    real_render = collector_module.render
    monkeypatch.setattr(
        collector_module, "render", lambda m, e: rendered.append(len(m)) or real_render(m, e)
    )
    text, om = _body(running.url, "text/plain"), _body(running.url, openmetrics)
    # a warm scrape renders only the exporter's own metrics, once per scrape
    assert len(rendered) == 2
    assert len(text.splitlines()) == len(text_first.splitlines()) > 1000

    def samples(families) -> set:
        return {  # NaN (an unknown SLI) compared as text: NaN is never equal to NaN
            (s.name, tuple(sorted(s.labels.items())), repr(s.value))
            for f in families
            for s in f.samples
        }

    own = (
        "perf_analyzer_analysis_",
        "perf_analyzer_database_up",
        "perf_analyzer_build",
        "perf_analyzer_http_",  # the connection counters count these very scrapes
    )
    own += ("process_", "python_")  # read at every scrape
    # the strict OpenMetrics parser refuses a family split in two or a missing/extra # EOF
    assert om.count("# EOF") == 1 and om_first.count("# EOF") == 1
    om_samples = samples(openmetrics_families(om))
    text_samples = samples(text_string_to_metric_families(text))
    assert {s for s in om_samples if not s[0].startswith(own)} == {
        s for s in text_samples if not s[0].startswith(own)
    }


@pytest.mark.slow
def test_a_scrape_does_not_wait_for_the_body_a_run_is_building(live, exporter_for):
    """After each run the next body is built in the background; a scrape that arrives
    meanwhile gets the body it replaces at once, instead of waiting (at fleet scale, for the
    rendering of thousands of series)."""
    dsn, _ = live
    slow = {a.name: 300 for a in registry.served()}  # no new result during the test
    running = exporter_for(dsn, config=Config(exporter=ExporterConfig(refresh=slow)))
    first = _body(running.url, "text/plain")  # waits until every analysis has a result
    building = running.collector._building
    assert building.acquire(timeout=30)  # as the build after a run holds it
    try:
        started = time.monotonic()
        second = _body(running.url, "text/plain")
        elapsed = time.monotonic() - started
    finally:
        building.release()
    assert elapsed < 2, elapsed

    def analysis_lines(body: str) -> list[str]:
        own = ("perf_analyzer_analysis_", "perf_analyzer_http_", "process_", "python_")
        return [line for line in body.splitlines() if not line.startswith(own)]

    assert analysis_lines(second) == analysis_lines(first)
    assert len(analysis_lines(first)) > 1000


def test_readme_documents_every_metric():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for metric in METRICS:
        assert f"`{metric.name}`" in readme, metric.name
