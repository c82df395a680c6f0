"""The command line as a user runs it: a real process, real exit codes, real stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import pytest


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PERF_ANALYZER_"))}
    return subprocess.run(
        [sys.executable, "-m", "exporter.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **(env or {})},
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.slow
def test_unreachable_server() -> None:
    result = run("db", "check", "--dsn", "postgresql://bob:pa55word@127.0.0.1:1/db")
    assert_one_clear_line(result, "cannot reach PostgreSQL at bob@127.0.0.1:1/db")
    assert "pa55word" not in result.stderr + result.stdout


def test_bad_dsn() -> None:
    result = run("db", "init", "--dsn", "host=x password=pa55word port")
    assert_one_clear_line(result, "connection string is not valid")
    assert "pa55word" not in result.stderr


def test_dsn_from_environment_file(tmp_path, dsn: str) -> None:
    secret = tmp_path / "dsn"
    secret.write_text(dsn + "\n")
    result = run("db", "check", "--table", "nope", env={"PERF_ANALYZER_DSN_FILE": str(secret)})
    assert result.returncode == 1
    assert 'error: table "nope" does not exist' in result.stdout


def test_missing_table(dsn: str) -> None:
    result = run("synth", "--dsn", dsn, "--table", "a.b.c")
    assert_one_clear_line(result, "more than one dot")
    result = run("db", "check", "--dsn", dsn, "--table", "missing")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert 'table "missing" does not exist' in result.stdout


def test_bad_flag_is_a_usage_error() -> None:
    result = run("synth", "--nodes", "zero")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "'zero' is not a valid integer" in result.stderr


def test_db_init_check_and_synth(dsn: str, tmp_path) -> None:
    truth_file = tmp_path / "truth.json"
    result = run("db", "init", "--dsn", dsn)
    assert result.returncode == 0, result.stderr
    result = run("db", "check", "--dsn", dsn)
    assert result.returncode == 0 and "is usable" in result.stdout
    result = run("synth", "--dsn", dsn, "--nodes", "3", "--days", "0.5", "--truth", str(truth_file))
    assert result.returncode == 0, result.stderr
    truth = json.loads(truth_file.read_text())
    assert [f["kind"] for f in truth["findings"]] == ["cpu_saturation", "memory_exhausted"]
    with psycopg.connect(dsn) as conn:
        nodes = conn.execute(
            "SELECT count(DISTINCT node_name) FROM monitor_samples_ring"
        ).fetchone()[0]
    assert nodes == 3


@pytest.mark.parametrize("command", ["db", "synth", "demo"])
def test_help_works(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0 and "Usage:" in result.stdout


@pytest.mark.slow
def test_sample_writes_this_host(fresh_dsn):
    assert run("db", "init", "--dsn", fresh_dsn).returncode == 0
    result = run(
        "sample", "--dsn", fresh_dsn, "--interval", "1", "--count", "2", "--node-name", "this-host"
    )
    assert result.returncode == 0, result.stderr
    with psycopg.connect(fresh_dsn) as conn:
        rows = conn.execute(
            "SELECT count(*), min(cpu_total_pct), max(mem_total_mb) FROM monitor_samples_ring"
            " WHERE node_name = 'this-host' AND node_flag"
        ).fetchone()
    assert rows[0] == 2 and 0 <= rows[1] <= 100 and rows[2] > 0
