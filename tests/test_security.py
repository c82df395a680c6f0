"""Least privilege, slow clients and packaging: the exporter works with SELECT only and
writes nothing; a silent client does not block scrapes; the Dockerfile passes hadolint."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import sql
from psycopg.conninfo import make_conninfo

from exporter import PerformanceAnalyzer
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store
from exporter.tablecheck import check_table
from tests.conftest import require_program
from tests.test_exporter import Running, scrape, value

ROOT = Path(__file__).parents[1]
METHODS = (
    "emergency_health_check", "system_availability_check", "detect_anomalies",
    "resource_contention_analysis", "correlation_analysis", "capacity_planning_analysis",
    "workload_pattern_analysis", "daily_health_report", "weekly_performance_summary",
    "generate_alert_config", "export_metrics_summary",
)  # fmt: skip


@pytest.fixture(scope="module")
def readonly(pg_server):
    """A fleet, a canary table, and a role with only CONNECT, USAGE and SELECT on the table."""
    name = pg_server.create_database("ro")
    dsn = pg_server.dsn_for(name)
    with Store(dsn) as store:
        load_fleet(store, FleetSpec(nodes=4, containers=1, days=2))
    role = f"pa_ro_{name}"[:63]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE canary (v int)")
        conn.execute("INSERT INTO canary VALUES (1)")
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(name), sql.Identifier(role)))  # fmt: skip
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT SELECT ON monitor_samples_ring TO {}").format(
            sql.Identifier(role)))  # fmt: skip
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    yield dsn, make_conninfo(dsn, user=role)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    pg_server.drop_database(name)
    with psycopg.connect(pg_server.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def writes(dsn: str) -> tuple:
    """Rows written to any table, as PostgreSQL's statistics count them."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = conn.execute(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
            " ORDER BY relname"
        ).fetchall()
        canary = conn.execute("SELECT v FROM canary").fetchall()
    return rows, canary


@pytest.mark.slow
def test_select_only_role_runs_everything_and_writes_nothing(readonly):
    owner_dsn, ro_dsn = readonly
    time.sleep(1.1)  # let the load's own statistics reach the counters
    before = writes(owner_dsn)
    with Store(ro_dsn) as store:
        assert check_table(store).usable
    with PerformanceAnalyzer(ro_dsn) as analyzer:
        for method in METHODS:
            getattr(analyzer, method)()
    running = Running(ro_dsn)
    try:
        samples = scrape(running.url, timeout_header=120)
        assert value(samples, "database_up") == 1
        assert value(samples, "health_grade", node="node-02", grade="critical") == 1
        assert all(v == 1 for (n, _), v in samples.items()
                   if n == "perf_analyzer_analysis_last_run_success")  # fmt: skip
    finally:
        running.close()
    time.sleep(1.1)
    assert writes(owner_dsn) == before


def test_a_silent_client_does_not_block_scrapes(readonly):
    _, ro_dsn = readonly
    running = Running(ro_dsn)
    try:
        host, port = "127.0.0.1", running.server.port
        stalled = [socket.create_connection((host, port)) for _ in range(20)]
        for s in stalled:  # half a request line, then nothing (slowloris)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        with urllib.request.urlopen(running.url + "/-/healthy", timeout=5) as r:
            assert r.status == 200
        assert time.monotonic() - started < 1
        big = socket.create_connection((host, port), timeout=20)
        big.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
        assert big.recv(100).split(b"\r\n")[0].endswith(b" 431 Line too long")  # at once
        for s in (*stalled, big):
            s.close()
    finally:
        running.close()


def test_dockerfile_passes_hadolint_and_follows_the_conventions():
    hadolint = require_program("hadolint")
    result = subprocess.run([hadolint, "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "Dockerfile").read_text()
    # multi-stage from one slim base, which a release pins by digest with --build-arg
    assert "ARG PYTHON_IMAGE=python:3.12-slim\n" in text
    assert text.count("FROM ${PYTHON_IMAGE}") == 2
    assert "USER 10001" in text and "EXPOSE 10610" in text
    assert "HEALTHCHECK" in text and "/-/healthy" in text
    assert 'ENTRYPOINT ["perf-analyzer"]' in text and 'CMD ["serve"]' in text
    assert "embedded" not in text.split("FROM ${PYTHON_IMAGE}\n")[-1]


def test_deploy_examples_parse_and_use_the_least_privilege_dsn():
    documents = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yml").read_text()))
    kinds = [d["kind"] for d in documents]
    assert kinds == ["Deployment", "Service", "ServiceMonitor"]
    container = documents[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert {"name": "PERF_ANALYZER_DSN_FILE", "value": "/etc/perf-analyzer/dsn"} in container["env"]
    unit = (ROOT / "deploy" / "perf-analyzer.service").read_text()
    assert "PERF_ANALYZER_DSN_FILE" in unit and "User=perf-analyzer" in unit
