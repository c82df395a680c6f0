"""Hardening of the exporter's edges: its HTTP connection counters as metrics."""

from __future__ import annotations

import socket
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from exporter.analyzer import PerformanceAnalyzer
from exporter.collector import PerfAnalyzerCollector, Scheduler
from exporter.config import Config
from exporter.schema import init_table
from exporter.server import ExporterApp, ExporterServer
from exporter.store import Store
from exporter.webconfig import load_web_config


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
