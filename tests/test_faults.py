"""Faults, end to end: a real PostgreSQL that flaps, dies mid-scrape or holds a
table lock, and the real HTTP server in front of it; no mocks.

The module runs its own PostgreSQL (the tests stop and start it) with a 3-node, 1-day fleet
ending now. Scrapes send Prometheus's X-Prometheus-Scrape-Timeout-Seconds header, and
every one must answer 200 before that timeout whatever the database is doing.
`pytest -s` prints the figures: outage detection and recovery times, the most exporter
connections seen in pg_stat_activity, how long cancelled statements lived.

Timing facts the bounds allow for: an outage shows as database_up 0 once the runs that
meet it give up waiting for a connection (Store's 5 s connect timeout); after a restart,
fresh results wait for the connection pool, which retries with an exponential backoff
(1, 2, 4 ... s), so they can lag database_up 1 by seconds, more after a longer outage.
"""

from __future__ import annotations

import base64
import socket
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from exporter import registry
from exporter.config import Config, ExporterConfig
from exporter.embedded import FAST_UNSAFE_SETTINGS, EmbeddedPostgres
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store
from tests.test_exporter import BackendWatch, exporter_for, names, scrape, value  # noqa: F401
from tests.test_webconfig import _hash

SCRAPE_TIMEOUT = 2.0  # Prometheus's scrape timeout (header): the exporter answers 0.5 s sooner
NODES = ("node-01", "node-02", "node-03")
FRESH = ("current", "emergency")  # refreshed on every scrape in these tests
EVERY_SCRAPE = {"current": 0, "emergency": 0}  # a scrape waits for them
FAULTS = Config(exporter=ExporterConfig(refresh=EVERY_SCRAPE, retry_seconds=0))
LOCK = "LOCK TABLE monitor_samples_ring IN ACCESS EXCLUSIVE MODE"

Samples = dict[tuple, float]


@pytest.fixture(scope="module")
def own_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """This module's own PostgreSQL (kept on disk across stops), with a small live fleet."""
    data = tmp_path_factory.mktemp("faults") / "data"
    pg = EmbeddedPostgres(data, settings=FAST_UNSAFE_SETTINGS).start()
    try:
        with Store(pg.dsn) as store:
            load_fleet(store, FleetSpec(nodes=len(NODES), containers=1, days=1))
        yield pg
    finally:
        pg.stop()


@pytest.fixture
def pg(own_pg: EmbeddedPostgres) -> Iterator[EmbeddedPostgres]:
    """The module's PostgreSQL, running; started again after a test that stopped it."""
    if not own_pg.is_running():
        own_pg.start()
    yield own_pg
    if not own_pg.is_running():
        own_pg.start()


# --------------------------------------------------------------------------- helpers


def timed(url: str, timeout: float = SCRAPE_TIMEOUT) -> tuple[Samples, float]:
    """A scrape with Prometheus's timeout header, and the seconds it took."""
    started = time.monotonic()
    samples = scrape(url, timeout_header=timeout)
    return samples, time.monotonic() - started


def scrape_until(
    url: str, condition: Callable[[Samples], bool], *, within: float
) -> tuple[Samples, float]:
    """Scrape until `condition` holds; every scrape must answer inside its timeout.
    Returns the samples and the seconds it took."""
    started = time.monotonic()
    while True:
        samples, took = timed(url)
        assert took < SCRAPE_TIMEOUT, f"a scrape took {took:.2f} s (timeout {SCRAPE_TIMEOUT} s)"
        if condition(samples):
            return samples, time.monotonic() - started
        assert time.monotonic() - started < within, f"condition not met after {within} s"
        time.sleep(0.1)


def successes(samples: Samples) -> dict[str, float]:
    """analysis -> perf_analyzer_analysis_last_success_timestamp_seconds."""
    return {
        dict(labels)["analysis"]: v
        for (name, labels), v in samples.items()
        if name == "perf_analyzer_analysis_last_success_timestamp_seconds"
    }


def failures(samples: Samples) -> float:
    return sum(value(samples, "analysis_errors_total", analysis=a) for a in FRESH)


def up(samples: Samples) -> bool:
    return value(samples, "database_up") == 1


def health(samples: Samples) -> dict[str, float]:
    return {node: value(samples, "health_score", node=node) for node in NODES}


def wait_for(condition: Callable[[], bool], *, within: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within, f"{what}: not after {within} s"
        time.sleep(0.05)
    return time.monotonic() - started


def http(port: int, method: str, path: str, headers: str = "", body: bytes = b""):
    """One raw HTTP/1.1 exchange: (status, headers, body bytes exactly as sent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, content = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), fields, content


# --------------------------------------------------------------------------- the database flaps


@pytest.mark.slow
def test_database_flapping(pg, exporter_for):  # noqa: F811
    running = exporter_for(pg.dsn, config=FAULTS)
    good = scrape(running.url, timeout_header=60)
    assert up(good)
    served = names(good) - {"perf_analyzer_series_dropped"}
    for flap in (1, 2, 3):
        errors = failures(good)
        pg.stop()
        stopped = time.time()
        down, detected = scrape_until(running.url, lambda s: not up(s), within=15)
        # down for a couple of seconds, scraped throughout: the last good results are
        # served, and no success timestamp moves (nothing can succeed without a database)
        checked = 0
        while checked < 2 or time.time() - stopped < 2:
            if checked:
                time.sleep(0.3)
                down, took = timed(running.url)
                assert took < SCRAPE_TIMEOUT
            assert not up(down)
            assert health(down) == health(good)
            assert names(down) >= served
            assert max(successes(down).values()) <= stopped
            checked += 1
        assert failures(down) > errors
        pg.start()
        restarted = time.time()
        _, recovery = scrape_until(running.url, up, within=15)
        good, fresh = scrape_until(
            running.url,
            lambda s, since=restarted: all(successes(s)[a] > since for a in FRESH),
            within=20,  # the pool's reconnection backoff: see above
        )
        assert up(good) and names(good) >= served
        assert all(value(good, "analysis_last_run_success", analysis=a) == 1 for a in FRESH)
        print(
            f"\nflap {flap}: database_up 0 {detected:.1f} s after the stop; after the start, "
            f"database_up 1 in {recovery:.1f} s, fresh results in {fresh:.1f} s"
        )


@pytest.mark.slow
def test_database_stops_mid_scrape(pg, exporter_for):  # noqa: F811
    running = exporter_for(pg.dsn, config=FAULTS)
    before = scrape(running.url, timeout_header=60)
    assert up(before)
    watch = BackendWatch(pg.dsn, running.name)
    timeout = 3.0
    locker = psycopg.connect(pg.dsn)
    try:
        locker.execute(LOCK)
        with ThreadPoolExecutor(1) as pool:
            inflight = pool.submit(timed, running.url, timeout)
            wait_for(
                lambda: any(r["wait_event_type"] == "Lock" for r in watch.now()),
                within=timeout - 1,
                what="the scrape's analyses waiting on the lock",
            )
            assert not inflight.done(), "the scrape should wait for its blocked analyses"
            pg.stop()  # a fast shutdown ends every session: the blocked ones, the locker's
            during, took = inflight.result(timeout=30)
    finally:
        locker.close()
    assert took < timeout, f"the in-flight scrape took {took:.2f} s (timeout {timeout} s)"
    assert health(during) == health(before)
    print(f"\nthe scrape the database stopped under answered in {took:.2f} s")
    for _ in range(2):  # the next scrapes know the database is gone, and answer in time
        after, next_took = timed(running.url)
        assert next_took < SCRAPE_TIMEOUT
        assert not up(after)
        assert health(after) == health(before)


# --------------------------------------------------------------------------- locks and timeouts


@pytest.mark.slow
def test_statement_timeout_cancels_blocked_queries(pg, exporter_for, caplog):  # noqa: F811
    statement_timeout = 1.0
    # alert-config: its own test below
    due = [a.name for a in registry.served() if a.name != "alert-config"]
    config = Config(
        exporter=ExporterConfig(
            refresh={**dict.fromkeys(due, 0), "alert-config": 900},
            statement_timeout_seconds=statement_timeout,
            retry_seconds=0,
        )
    )
    running = exporter_for(pg.dsn, config=config)
    assert up(scrape(running.url, timeout_header=60))
    errors = {j.name: j.errors for j in running.scheduler.snapshot()}
    log = pg._log_file
    log_offset = log.stat().st_size
    with psycopg.connect(pg.dsn) as locker:
        locker.execute(LOCK)
        with BackendWatch(pg.dsn, running.name) as watch:
            with ThreadPoolExecutor(6) as pool:
                results = list(pool.map(lambda _: timed(running.url, 3.0), range(6)))
            assert all(took < 3.0 for _, took in results)
            assert all(up(s) for s, _ in results)  # a locked table is not a database outage
            # every due analysis is cancelled once (3 workers: three waves)
            wait_for(
                lambda: all(
                    j.errors > errors[j.name] for j in running.scheduler.snapshot() if j.name in due
                ),
                within=20,
                what="every due analysis cancelled",
            )
            time.sleep(0.3)
        left = watch.now()
        holder = locker.execute(
            "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()"
            " AND mode = 'AccessExclusiveLock' AND granted"
        ).fetchone()[0]
        assert holder >= 1  # the lock is still held ...
        assert [r for r in left if r["state"] != "idle"] == []  # ... and nothing of ours runs
    blocked: dict[tuple, float] = {}  # (pid, query_start) -> the oldest age seen
    for rows in watch.seen:
        assert len(rows) <= running.connections  # the pool's and the worker process's
        active = [r for r in rows if r["state"] == "active"]
        assert len(active) <= running.connections - 1  # analysis threads and the worker
        for r in active:
            # no statement outlives the timeout, blocked or running (a loaded machine can
            # keep a statement of this small fleet on the CPU for longer than usual)
            assert r["age"] <= statement_timeout + 1.0, r
            if r["wait_event_type"] == "Lock":
                key = (r["pid"], r["query_start"])
                blocked[key] = max(blocked.get(key, 0.0), r["age"])
    lived = sorted(blocked.values())
    print(
        f"\nstatement timeout {statement_timeout} s: {len(lived)} blocked statements lived "
        f"{lived[0]:.2f}-{lived[-1]:.2f} s; at most {watch.most} exporter connections "
        f"(pool {running.pool_size})"
    )
    assert len(lived) >= len(due)
    assert statement_timeout - 0.5 < lived[-1] < statement_timeout + 1.0
    cancelled = log.read_text(errors="replace")[log_offset:]
    assert cancelled.count("canceling statement due to statement timeout") >= len(due)
    assert sum("was cancelled" in r.getMessage() for r in caplog.records) >= len(due)
    released = time.time()
    after, _ = scrape_until(
        running.url, lambda s: all(successes(s)[a] > released for a in due), within=15
    )
    assert all(value(after, "analysis_last_run_success", analysis=a) == 1 for a in due)
    assert all(value(after, "analysis_errors_total", analysis=a) > errors[a] for a in due)
    assert up(after)


def test_thresholds_honour_the_configured_statement_timeout(pg):
    from exporter import PerformanceAnalyzer
    from exporter.store import StoreError

    with (
        PerformanceAnalyzer(Store(pg.dsn, statement_timeout=1.0)) as analyzer,
        psycopg.connect(pg.dsn) as locker,
        ThreadPoolExecutor(1) as pool,
    ):
        locker.execute(LOCK)
        run = pool.submit(analyzer.generate_alert_config)
        try:
            with pytest.raises(StoreError):  # cancelled, or refused the lock, in time
                run.result(timeout=3)
        finally:
            locker.rollback()  # let a blocked run finish
            run.exception(timeout=60)


# --------------------------------------------------------------------------- HTTP


@pytest.mark.parametrize("path", ["/metrics", "/nope"])
def test_only_get_and_head_are_allowed(pg, exporter_for, path):  # noqa: F811
    """Every resource here is read-only, so any other method is 405 with `Allow` wherever
    it is sent, an unknown path included (server.py checks the method before routing);
    GET on an unknown path stays 404."""
    running = exporter_for(pg.dsn)
    port = running.server.port
    methods = ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "FOO", "get")
    statuses = {}
    for method in methods:
        status, headers, body = http(port, method, path, body=b"x=1" * (method != "TRACE"))
        statuses[method] = status
        assert status == 405, method
        assert headers["Allow"] == "GET, HEAD", method
        assert body == b"Method Not Allowed\n", method
    print(f"\n{path}: {statuses}")
    if path != "/metrics":
        assert http(port, "GET", path)[0] == 404


def test_head_metrics_is_headers_only(pg, exporter_for):  # noqa: F811
    running = exporter_for(pg.dsn)
    timeout = "X-Prometheus-Scrape-Timeout-Seconds: 60\r\n"
    status, headers, body = http(running.server.port, "GET", "/metrics", timeout)
    assert status == 200 and int(headers["Content-Length"]) == len(body) > 1000
    status, head, content = http(running.server.port, "HEAD", "/metrics", timeout)
    assert status == 200 and content == b""
    assert head["Content-Type"] == headers["Content-Type"]
    assert int(head["Content-Length"]) == pytest.approx(len(body), rel=0.05)  # values move


@pytest.mark.parametrize("path", ["/", "/-/healthy", "/nope"])
def test_head_elsewhere_is_headers_only(pg, exporter_for, path):  # noqa: F811
    running = exporter_for(pg.dsn)
    _, headers, content = http(running.server.port, "HEAD", path)
    assert int(headers["Content-Length"]) > 0
    assert content == b""


def test_basic_auth_failures_take_the_same_time(pg, exporter_for, tmp_path):  # noqa: F811
    """Over HTTP, through the whole app: an unknown user costs a bcrypt check too, so the
    time of a 401 does not tell which user names exist (test_webconfig checks BasicAuth
    alone with fewer samples; this also covers the request path in front of it)."""
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{_hash('s3cret', cost=7)}'\n")
    running = exporter_for(pg.dsn, web_config=str(web), protect_probes=True)
    url = running.url + "/-/healthy"  # protected: the auth path without running analyses

    def attempt(user: str, password: str) -> tuple[int, float]:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                status = r.status
        except urllib.error.HTTPError as err:
            status = err.code
        return status, time.perf_counter() - started

    # a failed pair is remembered, so each attempt guesses anew: every failure costs bcrypt
    cases = {
        "unknown user, a real password": ("nobody{i}", "s3cret"),
        "unknown user, wrong password": ("nobody", "guess{i}"),
        "right user, wrong password": ("prometheus", "guess{i}"),
        "right user, right password": ("prometheus", "s3cret"),  # cached after the first
    }
    times: dict[str, list[float]] = {case: [] for case in cases}
    for i in range(33):  # interleaved, so load from elsewhere hits every case alike
        for case, (user, password) in cases.items():
            status, took = attempt(user.format(i=i), password.format(i=i))
            assert status == (200 if case.startswith("right user, right") else 401), case
            if i >= 3:  # warm-up
                times[case].append(took)
    # the lower quartile: what a check costs, without the stalls other load adds to some
    medians = {case: statistics.quantiles(t, n=4)[0] for case, t in times.items()}
    print("\nlower-quartile ms: " + ", ".join(f"{c}: {1000 * m:.1f}" for c, m in medians.items()))
    reference = medians["right user, wrong password"]
    for case in ("unknown user, a real password", "unknown user, wrong password"):
        assert 0.6 < medians[case] / reference < 1.6, (case, medians)
    # the check can see a skipped bcrypt: a request without one is several times faster
    assert medians["right user, right password"] * 3 < reference, medians
