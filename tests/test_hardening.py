"""Hardening of the exporter's edges: its HTTP connection counters as metrics, and a
database whose encoding is not UTF8 refused in one sentence."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from importlib import metadata
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
import pytest
from packaging.requirements import Requirement
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from exporter.analyzer import PerformanceAnalyzer
from exporter.collector import PerfAnalyzerCollector, Scheduler
from exporter.config import Config
from exporter.embedded import free_port
from exporter.exposition import MAX_LABEL_CHARS, apply_budget, shorten, shorten_names
from exporter.samples import Sample, sample
from exporter.schema import init_table
from exporter.server import ExporterApp, ExporterServer
from exporter.shard import Shard
from exporter.simulate import FleetSpec, copy_fleet, simulate
from exporter.store import Store, StoreError
from exporter.webconfig import load_web_config
from tests.conftest import Server
from tests.junk_fleet import load_junk


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("perf_analyzer_http_")
    }


def test_connection_counters_are_served(dsn: str) -> None:
    """Cap 2, head deadline 1 s: a third silent connection evicts the first, the other two
    miss the deadline, and a scrape (the fourth connection) reports exactly that."""
    config = Config()
    with Store(dsn) as store:
        init_table(store)
        scheduler = Scheduler(PerformanceAnalyzer(store, config=config), config)
        app = ExporterApp(PerfAnalyzerCollector(scheduler), load_web_config(None))
        server = ExporterServer(app, "127.0.0.1:0", max_connections=2, head_deadline=1.0)
        server.start()
        silent = []
        try:
            for _ in range(3):
                silent.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
                time.sleep(0.2)  # admitted in order: the first is the oldest
            until = time.monotonic() + 10
            while server.limits.counts["head_timeout"] < 2 and time.monotonic() < until:
                time.sleep(0.1)
            metrics = scrape(f"http://127.0.0.1:{server.port}/metrics")
        finally:
            for sock in silent:
                sock.close()
            server.stop()
    assert metrics == {
        "perf_analyzer_http_connections_accepted_total": 4.0,
        "perf_analyzer_http_connections_refused_total": 0.0,
        "perf_analyzer_http_connections_evicted_total": 1.0,
        "perf_analyzer_http_connections_head_timeout_total": 2.0,
        "perf_analyzer_http_accept_errors_total": 0.0,
    }


# --------------------------------------------------------------------------- encodings


@pytest.fixture
def ascii_dsn(pg_server: Server) -> Iterator[str]:
    name = f"pa_ascii_{os.getpid()}"
    with psycopg.connect(pg_server.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL(
                "CREATE DATABASE {} ENCODING 'SQL_ASCII' TEMPLATE template0 "
                "LC_COLLATE 'C' LC_CTYPE 'C'"
            ).format(sql.Identifier(name))
        )
    try:
        yield pg_server.dsn_for(name)
    finally:
        pg_server.drop_database(name)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


ENCODING_SENTENCE = "has the server encoding SQL_ASCII, and perf-analyzer needs UTF8"


def test_sql_ascii_database_is_refused_in_one_sentence(ascii_dsn: str) -> None:
    store = Store(ascii_dsn)
    try:
        with pytest.raises(StoreError, match=ENCODING_SENTENCE) as refused:
            store.check_encoding()
        assert refused.value.permanent
        with pytest.raises(StoreError, match=ENCODING_SENTENCE), store.read() as cur:
            cur.execute("SELECT 1")
        with pytest.raises(StoreError, match=ENCODING_SENTENCE), store.write() as cur:
            cur.execute("SELECT 1")
    finally:
        store.close()


@pytest.mark.slow
def test_serve_and_db_check_refuse_sql_ascii(ascii_dsn: str, dsn: str) -> None:
    for args in (
        ("serve", "--dsn", ascii_dsn, "--web.listen-address", "127.0.0.1:0"),
        ("db", "check", "--dsn", ascii_dsn),
    ):
        done = cli(*args)
        assert done.returncode == 1, done.stderr
        assert done.stderr.count("\n") == 1 and ENCODING_SENTENCE in done.stderr, done.stderr
    with Store(dsn) as store:
        init_table(store)
    done = cli("db", "check", "--dsn", dsn)
    assert "server encoding UTF8" in done.stdout + done.stderr, done.stdout + done.stderr


# --------------------------------------------------------------------------- the budget


def node_samples(node: str, newest: float, n: int) -> list[Sample]:
    """`n` kept series of one node, one of them its newest sample time."""
    out = [sample("node_last_sample_timestamp_seconds", newest, node=node)]
    out += [
        sample("node_cpu_usage_percent", float(i), node=node, window=str(i)) for i in range(n - 1)
    ]
    return out


def test_budget_cuts_whole_nodes_oldest_first_after_the_classes() -> None:
    fleet = [sample("build_info", 1, version="x")]  # no node label: never cut
    fleet += node_samples("fresh", 1000.0, 4) + node_samples("stale", 10.0, 4)
    fleet += node_samples("older", 5.0, 3) + node_samples("mid", 500.0, 4)
    fleet += [sample("node_cpu_usage_percent", 1.0, 3, 0.5, node="fresh", window="c")]  # cut class
    # 17 series, budget 10: the class cut takes 1, then "older" (3) and "stale" (4) go whole
    kept, dropped = apply_budget(fleet, 10)
    assert len(kept) == 9
    assert {next((v for k, v in s.labels if k == "node"), None) for s in kept} == {
        None,
        "fresh",
        "mid",
    }
    assert dropped["node"] == 7 and sum(dropped.values()) == 8
    # within budget nothing is cut
    assert apply_budget(fleet, 17) == (fleet, dict.fromkeys(dropped, 0))


def current_result(nodes: int) -> dict[str, Any]:
    """A `current` result of `nodes` nodes, each with node values, two SLIs, one
    container (a cut class) and a different newest sample; two names over the label cap."""
    names = [f"n{i:03}" + ("x" * 200 if i % 37 == 0 else "") for i in range(nodes)]
    return {
        "spans": {n: (0, 1000 + (i * 7) % nodes) for i, n in enumerate(names)},
        "sli": {
            "nodes": [
                {"node_name": n, "availability": 1.0, "performance": 0.5, "capacity": None}
                for n in names
            ]
        },
        "summary": {
            "generated_at": 0,
            "window": {"start": 0, "end": 0},
            "nodes": [
                {
                    "node_name": n,
                    "samples": 3,
                    "metrics": {"cpu_total_pct": {"avg": 10.0 + i}, "load_1m": {"avg": 0.5}},
                    "containers": [
                        {"container_name": "c", "samples": 3, "metrics": {"c_rss_mb": {"avg": i}}}
                    ],
                }
                for i, n in enumerate(names)
            ],
        },
    }


@pytest.mark.parametrize("nodes, budget", [(300, 200), (300, 40), (1000, 999), (80, 79)])
def test_budget_builds_only_the_nodes_that_stay(nodes: int, budget: int) -> None:
    """More nodes than the budget: samples are built for the freshest nodes only, and
    what is served is what cutting every node's samples would serve; the dropped counts
    are exact for the nodes built and extrapolated for the others (within 5 %)."""
    from exporter.exposition import SampleCache

    results = {"current": current_result(nodes)}
    every = SampleCache(Config()).samples(results)
    expected, exact = apply_budget(every, budget)
    cache = SampleCache(Config())
    assert cache.too_many_nodes(results, budget)
    kept, dropped = cache.budget(results, budget)
    assert kept == expected
    assert dropped.keys() == exact.keys()
    for kind, n in exact.items():
        assert abs(dropped[kind] - n) <= 0.05 * n, (kind, dropped[kind], n)
    assert len({s for s in cache._few["current"][2]}) < len(every)  # not the whole fleet
    assert cache.budget(results, budget) == (kept, dropped)  # the same cut again
    # 12 series a node at the least (10 emergency checks, newest sample, node_forgotten)
    assert not SampleCache.too_many_nodes(results, 12 * nodes)


def test_long_names_are_shortened_stably_and_stay_distinct() -> None:
    a, b = "n" * 300 + "-a", "n" * 300 + "-b"
    short_a, short_b = shorten(a), shorten(b)
    assert len(short_a) == len(short_b) == MAX_LABEL_CHARS
    assert short_a != short_b and short_a == shorten(a)
    assert short_a.startswith("n" * 100)
    assert short_a.endswith(hashlib.sha256(a.encode()).hexdigest()[:8])
    assert shorten("web-1") == "web-1"
    s = shorten_names(sample("container_cpu_usage_percent", 1.0, node=a, container=b, window=a))
    assert dict(s.labels) == {"node": short_a, "container": short_b, "window": a}


# --------------------------------------------------------------------------- database_up


@pytest.mark.slow
def test_database_up_drops_within_the_documented_bound(tmp_path: Path) -> None:
    """`perf-analyzer serve` with the default configuration, scraped every second: after
    the database stops, `perf_analyzer_database_up` is 0 within 16 s (docs/reliability.md):
    the next run of the most frequent analyses (every 10 s) plus the pool's 5 s connect
    timeout, plus the 1 s between scrapes."""
    from exporter.embedded import FAST_UNSAFE_SETTINGS, EmbeddedPostgres, free_port
    from exporter.simulate import FleetSpec, load_fleet

    pg = EmbeddedPostgres(tmp_path / "pg", settings=FAST_UNSAFE_SETTINGS).start()
    port = free_port()
    process = None
    try:
        with Store(pg.dsn) as store:
            load_fleet(store, FleetSpec(nodes=3, containers=1, days=1))
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter.cli", "serve", "--dsn", pg.dsn,
             "--web.listen-address", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/metrics"
        until = time.monotonic() + 60
        while time.monotonic() < until:
            try:
                if database_up(url) == 1.0:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert database_up(url) == 1.0
        pg.stop()
        stopped = time.monotonic()
        while database_up(url) != 0.0 and time.monotonic() - stopped < 30:
            time.sleep(1.0)
        took = time.monotonic() - stopped
        assert database_up(url) == 0.0
        assert took < 16.0, took
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
        pg.stop()


def database_up(url: str) -> float:
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    (value,) = [
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "perf_analyzer_database_up"
    ]
    return float(value)


# --------------------------------------------------------------------------- image lock


def test_image_dependencies_are_locked_to_the_tested_versions() -> None:
    """Every runtime dependency of the package (and theirs) is pinned in requirements.lock
    at the version installed here, and the Dockerfile builds with it."""
    root = Path(__file__).parents[1]
    pins = {
        Requirement(line).name.lower(): str(Requirement(line).specifier)
        for line in (root / "requirements.lock").read_text().splitlines()
        if line and not line.startswith("#")
    }
    needed: set[str] = set()

    def add(name: str, extras: set[str]) -> None:
        """`name` and what it requires, with its `extras` (markers of this platform)."""
        needed.add(name)
        for line in metadata.requires(name) or []:
            req = Requirement(line)
            environments = [{"extra": e} for e in extras | {""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in environments):
                dep = req.name.lower().replace("_", "-")
                if dep not in needed:
                    add(dep, set(req.extras))

    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        req = Requirement(line)
        add(req.name.lower().replace("_", "-"), set(req.extras))
    assert needed <= set(pins), needed - set(pins)
    for name in needed:
        assert pins[name] == f"=={metadata.version(name)}", name
    dockerfile = (root / "Dockerfile").read_text()
    assert "--constraint requirements.lock" in dockerfile
    assert "requirements.lock" in dockerfile.split("RUN pip wheel")[0]


# --------------------------------------------------------------------------- junk nodes

JUNK_NODES, JUNK_BUDGET = 2_000, 1_000  # the 20,000 / 10,000 case scaled by 10 (docs)
# a served node costs at least 12 series (10 emergency checks, its newest-sample time and
# node_forgotten), so 1,000 series serve at most 83 nodes: the documented default guard
JUNK_MAX_NODES = 83


def rss_with_children(pid: int) -> float:
    """MiB resident in `pid` and its child processes (the worker process)."""
    pids, total = [pid], 0.0
    while pids:
        p = pids.pop()
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * 4096 / 2**20
            for task in Path(f"/proc/{p}/task").iterdir():
                pids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total


@pytest.mark.slow
def test_junk_node_names_stay_within_the_budget(pg_server: Server) -> None:
    """2,000 junk node names, `--max-series 1000`: the node guard reads only the 83 names
    that have reported longest (ties by name) and says it ignores the 1,917 others; at most
    1,000 series in the whole body (the process and interpreter series too), whole nodes
    cut among the 83, those with the newest samples kept, every scrape under 2 s, also
    those right after `current` and `emergency` change (every 10 s), and the exporter with
    its worker process under 300 MiB once the analyses have run."""
    name = pg_server.create_database("junk")
    dsn = pg_server.dsn_for(name)
    port = free_port()
    process = None
    try:
        with Store(dsn) as store:
            init_table(store)
            newest = load_junk(store, JUNK_NODES)
            spans = _spans_by_sql(store)
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter.cli", "serve", "--dsn", dsn, "--max-series",
             str(JUNK_BUDGET), "--web.listen-address", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/metrics"
        until = time.monotonic() + 240
        families: list[Any] = []
        while time.monotonic() < until:  # every analysis has run once
            try:
                families = list(text_string_to_metric_families(fetch(url)))
            except OSError:
                time.sleep(1)
                continue
            runs = [s for f in families for s in f.samples if s.name.endswith("last_run_success")]
            if runs and all(s.value == 1 for s in runs) and len(runs) == served_analyses():
                break
            time.sleep(2)
        took = 0.0
        until = time.monotonic() + 12  # across a change of `current` and `emergency`
        while time.monotonic() < until:
            started = time.monotonic()
            families = list(text_string_to_metric_families(fetch(url)))
            took = max(took, time.monotonic() - started)
            time.sleep(0.2)
        rss_mib = rss_with_children(process.pid)
    finally:
        if process is not None:
            process.terminate()
            _, stderr = process.communicate(timeout=60)
        pg_server.drop_database(name)
    samples = [s for f in families for s in f.samples]
    dropped = {s.labels["kind"]: s.value for s in samples if s.name.endswith("series_dropped")}
    served = {s.labels["node"] for s in samples if "node" in s.labels}
    ignored = [s.value for s in samples if s.name == "perf_analyzer_nodes_ignored"]
    assert len(samples) <= JUNK_BUDGET
    assert dropped["node"] > 0 and 0 < len(served) < JUNK_MAX_NODES
    assert ignored == [JUNK_NODES - JUNK_MAX_NODES]
    # the guard: every name reported in the last hour, so the longest spans, then by name
    kept = set(sorted(spans, key=lambda n: (spans[n][0] - spans[n][1], n))[:JUNK_MAX_NODES])
    assert served <= kept
    # whole nodes, the oldest newest sample first: every served node is at least as fresh
    assert min(newest[n] for n in served) >= max(newest[n] for n in kept - served)
    guard_lines = re.findall(r"node guard \(exporter.max_nodes (\d+)\): (\d+) of (\d+)", stderr)
    assert guard_lines == [("83", "1917", "2000")], stderr
    assert took < 2.0, took
    assert rss_mib < 300, rss_mib
    # one line per change of the cut, none per scrape: the last one names the final cut (a
    # count can come back: the two formats may be cut from results a run apart)
    logged = [int(n) for n in re.findall(r"exceeded: (\d+) nodes not served", stderr)]
    assert logged and all(a != b for a, b in pairwise(logged)), stderr
    assert len(logged) < 20, stderr
    assert logged[-1] == JUNK_MAX_NODES - len(served)


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read().decode()


def served_analyses() -> int:
    from exporter import registry

    return sum(1 for a in registry.served() if a.serve is not None)


def test_junk_node_names_get_no_anomaly_grids(pg_server: Server) -> None:
    """Names with too few hours for any baseline are counted, never gridded: the anomaly
    model holds no series for them (its memory was series x hours x metrics each)."""
    from exporter.analyses.anomalies import _fit_kind
    from exporter.rollups import rollups_of

    name = pg_server.create_database("junkfit")
    try:
        with Store(pg_server.dsn_for(name)) as store:
            init_table(store)
            now = 1_790_000_040
            load_junk(store, 300, now)
            with PerformanceAnalyzer(store) as analyzer:
                result = analyzer.detect_anomalies(hours=24, now=now)
                cfg = analyzer.config.anomalies
                view = rollups_of(analyzer.ctx).view("node", now - 28 * 86400, now)
                model = _fit_kind("node", view, cfg, now - 28 * 86400, now - 86400, now)
    finally:
        pg_server.drop_database(name)
    assert model is not None and model.keys == [] and model.unjudged == 300
    quality = result["data_quality"]
    assert quality["series"] == 300 and quality["evaluated"] == 0
    assert quality["without_baseline"] == 300 * len(model.metrics)
    assert result["anomalies"] == [] and result["scores"] == []


# --------------------------------------------------------------------------- node guard

GUARD_NOW = 1_790_000_040
GUARD_JUNK = 2_000
REAL_NODES = ("node-01", "node-02", "node-03", "node-04", "node-05")
# analyses whose whole result must not change when the junk beside the real nodes is
# ignored: they read only the rows of the nodes they report
GUARDED_RESULTS = ("current", "emergency", "availability", "contention", "summary")


def _real_fleet(store: Store) -> None:
    """Five nodes written the way real samplers write (15 s to 5 min intervals, jitter, late
    and missed rows, container offsets, AR(1) noise, a NULL column), for two days up to
    GUARD_NOW."""
    spec = FleetSpec(nodes=5, containers=1, days=2, realistic=True, findings=False)
    copy_fleet(store, simulate(dataclasses.replace(spec, end=GUARD_NOW)))


def _spans_by_sql(store: Store) -> dict[str, tuple[int, int]]:
    with store.read() as cur:
        cur.execute(
            sql.SQL(
                "SELECT node_name, min(sample_time) AS a, max(sample_time) AS b FROM {}"
                " WHERE node_name IS NOT NULL GROUP BY node_name"
            ).format(store.table)
        )
        return {r["node_name"]: (int(r["a"]), int(r["b"])) for r in cur}


def _with_limit(max_nodes: int | None) -> Config:
    config = Config()
    return dataclasses.replace(
        config, exporter=dataclasses.replace(config.exporter, max_nodes=max_nodes)
    )


@pytest.fixture(scope="module")
def guard_dbs(pg_server: Server) -> Iterator[tuple[str, str]]:
    """(real nodes and 2,000 junk names, the same real nodes alone)."""
    mixed, alone = pg_server.create_database("guard"), pg_server.create_database("alone")
    try:
        with Store(pg_server.dsn_for(alone)) as store:
            _real_fleet(store)
        with Store(pg_server.dsn_for(mixed)) as store:
            _real_fleet(store)
            load_junk(store, GUARD_JUNK, GUARD_NOW)
        yield pg_server.dsn_for(mixed), pg_server.dsn_for(alone)
    finally:
        pg_server.drop_database(mixed)
        pg_server.drop_database(alone)


def _stable(value: Any) -> Any:
    """`value` without the wall-clock stamps of when it was made."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k != "generated_at"}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _run(dsn: str, config: Config, names: tuple[str, ...]) -> tuple[dict[str, Any], Store]:
    store = Store(dsn)
    analyzer = PerformanceAnalyzer(store, config=config)
    return {n: analyzer.run(n, now=GUARD_NOW) for n in names}, store


@pytest.mark.slow
def test_node_guard_reads_only_the_nodes_it_keeps(guard_dbs: tuple[str, str]) -> None:
    """max_nodes 5 over 5 real nodes and 2,000 junk names: every result is exactly the
    result over the real nodes alone (the junk is not read), and 2,000 are ignored."""
    mixed, alone = guard_dbs
    guarded, store = _run(mixed, _with_limit(5), GUARDED_RESULTS)
    truth, other = _run(alone, Config(), GUARDED_RESULTS)
    try:
        assert store.node_guard.kept == frozenset(REAL_NODES)
        assert store.node_guard.ignored == GUARD_JUNK
        assert other.node_guard.kept is None and other.node_guard.ignored == 0
    finally:
        store.close()
        other.close()
    for name in GUARDED_RESULTS:
        assert _stable(guarded[name]) == _stable(truth[name]), name
    assert sorted(guarded["current"]["spans"]) == list(REAL_NODES)


@pytest.mark.slow
def test_node_guard_keeps_the_longest_reporting_then_by_name(
    guard_dbs: tuple[str, str],
) -> None:
    """max_nodes 8: the 5 real nodes (days of samples) and the 3 junk names with the
    longest span (ties by name), as the table's own min and max say; everything else is
    left out of the results. Below the limit (the default, 12,500 nodes) the queries are
    those of an unguarded store and every node is reported."""
    mixed, _ = guard_dbs
    with Store(mixed) as store:
        spans = _spans_by_sql(store)
    assert len(spans) == GUARD_JUNK + len(REAL_NODES)
    fresh = [n for n, (_, last) in spans.items() if last >= GUARD_NOW - 3600]
    assert set(fresh) == set(spans)  # every name reported in the last hour
    by_span = sorted(spans, key=lambda n: (-(spans[n][1] - spans[n][0]), n))
    expected = set(by_span[:8])
    assert set(REAL_NODES) < expected
    results, store = _run(mixed, _with_limit(8), ("current", "emergency"))
    try:
        assert store.node_guard.kept == expected
        assert store.node_guard.ignored == len(spans) - 8
    finally:
        store.close()
    assert set(results["current"]["spans"]) == expected
    assert {c["node_name"] for c in results["emergency"]["checks"]} == expected

    # a new choice reaches the queries composed and cached under the previous one
    store = Store(mixed)
    try:
        analyzer = PerformanceAnalyzer(store, config=_with_limit(5))
        assert {c["node_name"] for c in analyzer.run("emergency", now=GUARD_NOW)["checks"]} == (
            set(REAL_NODES)
        )
        analyzer.ctx.config = _with_limit(8)
        again = analyzer.run("emergency", now=GUARD_NOW)
    finally:
        store.close()
    assert _stable(again) == _stable(results["emergency"])

    results, store = _run(mixed, Config(), ("emergency",))
    try:
        assert store.node_guard.kept is None and store.node_guard.ignored == 0
        with store.read() as cur:  # the query text is the unguarded one
            assert store.shard_filter.as_bytes(cur) == store.shard_predicate.as_bytes(cur)
    finally:
        store.close()
    assert len({c["node_name"] for c in results["emergency"]["checks"]}) == len(spans)


def test_max_nodes_is_validated_in_one_sentence(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from exporter.cli import main
    from exporter.config import ConfigError, load_config

    path = tmp_path / "c.yml"
    path.write_text("exporter:\n  max_nodes: 0\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "max_nodes" in str(caught.value) and "\n" not in str(caught.value)
    path.write_text("exporter:\n  max_nodes: 40\n")
    assert load_config(path).exporter.max_nodes == 40
    result = CliRunner().invoke(main, ["serve", "--max-nodes", "0"])
    assert result.exit_code == 2 and "--max-nodes" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_node_guard_counts_and_keeps_within_the_shard(guard_dbs: tuple[str, str]) -> None:
    """`--shard 1/2` and max_nodes 3: the guard ranks the shard's nodes only (the other
    shard's are neither kept nor counted as ignored), and both predicates hold."""
    mixed, _ = guard_dbs
    with Store(mixed) as store:
        spans = _spans_by_sql(store)
        with store.read() as cur:  # shard 1 of 2, as PostgreSQL's text hash partitions it
            cur.execute(
                sql.SQL(
                    "SELECT DISTINCT node_name FROM {} WHERE node_name IS NOT NULL"
                    " AND mod(hashtextextended(node_name, 0) & 9223372036854775807, 2) = 0"
                ).format(store.table)
            )
            mine = {r["node_name"] for r in cur}
    assert 0 < len(mine) < len(spans)
    ranked = sorted(mine, key=lambda n: (-(spans[n][1] - spans[n][0]), n))
    store = Store(mixed, shard=Shard(1, 2))
    try:
        analyzer = PerformanceAnalyzer(store, config=_with_limit(3))
        current = analyzer.run("current", now=GUARD_NOW)
        assert store.node_guard.kept == set(ranked[:3])
        assert store.node_guard.ignored == len(mine) - 3
    finally:
        store.close()
    assert set(current["spans"]) == set(ranked[:3])
