"""`--columns`: a table whose columns are named differently reads as the standard one."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from exporter import PerformanceAnalyzer
from exporter.config import ConfigError, from_dict
from exporter.schema import COLUMN_NAMES, OPTIONAL_COLUMNS
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store
from tests.test_cli import assert_one_clear_line, run

END = 1_790_000_040
THEIRS = "their_samples"
# the renamed columns; the others keep the standard names
MAPPING = {
    "sample_time": "ts",
    "node_name": "host",
    "container_name": "ctr",
    "node_flag": "is_node",
    "cpu_total_pct": "cpu",
    "mem_available_mb": "mem_free",
    "temperature_c": "temp",
    "net_rx_errs_s": "rx_err",
    # the optional columns too: under a mapping only those it names are read
    "cpu_count": "cpus",
    "disk_used_ratio": "disk_used",
    "inodes_used_ratio": "inodes_used",
    "psi_cpu_some_avg60": "psi_cpu",
    "psi_memory_some_avg60": "psi_mem",
    "psi_io_some_avg60": "psi_io",
}


@pytest.fixture(scope="module")
def dsn(pg_server) -> Iterator[str]:
    """The same realistic rows in the standard table and in `their_samples`, whose columns
    are renamed, with the two indexes on the renamed columns."""
    name = pg_server.create_database("columns")
    dsn = pg_server.dsn_for(name)
    with Store(dsn) as store:
        load_fleet(store, FleetSpec(nodes=14, containers=1, days=2, end=END, realistic=True))
    select = ", ".join(
        f'{ours} AS "{MAPPING[ours]}"' if ours in MAPPING else ours
        for ours in (*COLUMN_NAMES, *(c.name for c in OPTIONAL_COLUMNS))
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {THEIRS} AS SELECT {select} FROM monitor_samples_ring")
        conn.execute(f"CREATE INDEX their_ts ON {THEIRS} (ts)")
        conn.execute(f"CREATE INDEX their_host_ts ON {THEIRS} (host, ts)")
        conn.execute(f"ANALYZE {THEIRS}")
        conn.execute("ANALYZE monitor_samples_ring")
    yield dsn
    pg_server.drop_database(name)


@pytest.fixture
def columns_file(tmp_path: Path) -> str:
    path = tmp_path / "columns.yml"
    path.write_text(yaml.safe_dump(MAPPING))
    return str(path)


def test_emergency_and_availability_match_the_standard_table(dsn: str) -> None:
    with PerformanceAnalyzer(dsn) as standard:
        expected = (
            standard.emergency_health_check(now=END),
            standard.system_availability_check(now=END),
        )
    with PerformanceAnalyzer(Store(dsn, THEIRS, columns=MAPPING)) as mapped:
        got = (mapped.emergency_health_check(now=END), mapped.system_availability_check(now=END))
    assert got == expected
    threats = {(t["node_name"], t["check"]) for t in got[0]["threats"]}
    # the fleet's injected P1s, read through renamed node, time, CPU, memory and heat columns
    assert {("node-02", "cpu"), ("node-03", "memory"), ("node-04", "temperature")} <= threats


@pytest.mark.slow
def test_a_report_through_the_command_line_is_the_same(dsn: str, columns_file: str) -> None:
    standard = run("report", "daily", "--dsn", dsn, "--at", str(END), "--format", "json")
    mapped = run(
        "report", "daily", "--dsn", dsn, "--table", THEIRS, "--columns", columns_file,
        "--at", str(END), "--format", "json",
    )  # fmt: skip
    assert standard.returncode == 0, standard.stderr
    assert mapped.returncode == 0, mapped.stderr
    assert mapped.stdout == standard.stdout
    assert '"node-02"' in mapped.stdout


@pytest.mark.slow
def test_the_config_key_maps_the_columns_too(dsn: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"table": {"columns": MAPPING}}))
    standard = run("report", "emergency", "--dsn", dsn, "--at", str(END), "--format", "json")
    mapped = run(
        "report", "emergency", "--dsn", dsn, "--table", THEIRS, "--config", str(config),
        "--at", str(END), "--format", "json",
    )  # fmt: skip
    assert mapped.returncode == 0, mapped.stderr
    assert mapped.stdout == standard.stdout


def test_predicates_reach_the_real_tables_indexes(dsn: str) -> None:
    with Store(dsn, THEIRS, columns=MAPPING) as store, store.read() as cur:
        query = psycopg.sql.SQL(
            "EXPLAIN SELECT max(sample_time) FROM {} s WHERE s.node_name = 'node-02' "
            "AND s.sample_time > %s"
        ).format(store.table)
        cur.execute(query, (END - 300,))
        plan = "\n".join(next(iter(r.values())) for r in cur.fetchall())
    # the time and node predicates reach the real table, which is read through an index
    # (an index-only scan once the table is vacuumed, a plain index scan before)
    assert re.search(r"Index (Only )?Scan", plan) and " on their_samples" in plan, plan
    assert "ts > " in plan and "host = " in plan, plan
    assert "Seq Scan" not in plan, plan


def test_db_check_reads_the_real_table_under_the_mapping(dsn: str, columns_file: str) -> None:
    checked = run("db", "check", "--dsn", dsn, "--table", THEIRS, "--columns", columns_file)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    unmapped = run("db", "check", "--dsn", dsn, "--table", THEIRS)
    assert unmapped.returncode != 0
    assert "sample_time" in unmapped.stdout + unmapped.stderr
    wrong = Path(columns_file)
    wrong.write_text(yaml.safe_dump({**MAPPING, "sample_time": "tstamp"}))
    misnamed = run("db", "check", "--dsn", dsn, "--table", THEIRS, "--columns", str(wrong))
    assert misnamed.returncode != 0
    said = misnamed.stdout + misnamed.stderr
    assert '"tstamp", which the column mapping reads as sample_time' in said, said
    assert 'ADD COLUMN "sample_time"' not in said, said
    assert 'CREATE INDEX ON "their_samples" ("tstamp")' in said, said


def test_writing_commands_refuse_the_mapping(dsn: str, columns_file: str) -> None:
    result = run("db", "init", "--dsn", dsn, "--table", THEIRS, "--columns", columns_file)
    assert_one_clear_line(result, "for reading only", "without --columns")


@pytest.mark.slow
def test_bad_mappings_are_one_sentence(tmp_path: Path, dsn: str) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"ts": "sample_time"}))
    result = run("report", "emergency", "--dsn", dsn, "--columns", str(bad))
    assert_one_clear_line(result, "names no column of the samples table: ts")
    bad.write_text("- sample_time\n")
    result = run("report", "emergency", "--dsn", dsn, "--columns", str(bad))
    assert_one_clear_line(result, "must map standard column names")
    with pytest.raises(ConfigError, match="reads column 'ts' twice"):
        from_dict({"table": {"columns": {"sample_time": "ts", "node_name": "ts"}}})
