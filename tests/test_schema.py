"""`db init` and `db check` against real tables."""

from __future__ import annotations

import psycopg
import pytest

from exporter.schema import COLUMN_NAMES, INDEXES, OPTIONAL_COLUMNS, init_table
from exporter.store import Store
from exporter.tablecheck import check_table


def test_init_creates_contract_table_and_indexes(fresh_dsn: str) -> None:
    with Store(fresh_dsn) as store:
        init_table(store)
        init_table(store)  # idempotent
        report = check_table(store)
    assert report.usable and report.findings == []
    with psycopg.connect(fresh_dsn) as conn:
        cols = [
            r[0]
            for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'monitor_samples_ring'::regclass"
                " AND attnum > 0 ORDER BY attnum"
            )
        ]
        n_indexes = conn.execute(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'monitor_samples_ring'::regclass"
        ).fetchone()[0]
    assert tuple(cols) == COLUMN_NAMES + tuple(c.name for c in OPTIONAL_COLUMNS)
    assert n_indexes == len(INDEXES)


def test_check_names_each_problem(fresh_dsn: str) -> None:
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE broken (sample_time timestamptz, node_name text, container_name text,"
            " node_flag boolean, cpu_total_pct text)"
        )
    with Store(fresh_dsn, "broken") as store:
        report = check_table(store)
    messages = {f.message: f.level for f in report.findings}
    assert not report.usable
    text = "\n".join(messages)
    assert 'column "sample_time" has type timestamp with time zone, expected bigint' in text
    assert 'column "cpu_total_pct" has type text, expected double precision' in text
    assert 'column "mem_available_mb" (memory available, MiB) is missing' in text
    assert "ADD COLUMN" in text and "ALTER COLUMN" in text
    index_warnings = [m for m, level in messages.items() if "no index on" in m]
    assert len(index_warnings) == len(INDEXES)
    assert all(messages[m] == "warning" for m in index_warnings)


def test_check_missing_table(fresh_dsn: str) -> None:
    with Store(fresh_dsn, "absent") as store:
        report = check_table(store)
    assert not report.usable
    assert report.findings[0].message.startswith('table "absent" does not exist')


@pytest.mark.parametrize("sample_time_type", ["integer", "bigint"])
def test_original_readme_schema_is_usable(fresh_dsn: str, sample_time_type: str) -> None:
    """A plain DDL (varchar, FLOAT, INTEGER time) passes, indexes aside."""
    metrics = ", ".join(f"{c} FLOAT" for c in COLUMN_NAMES[4:])
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE orig (sample_time {sample_time_type}, node_name VARCHAR(255), "
            f"container_name VARCHAR(255), node_flag BOOLEAN, {metrics})"
        )
    with Store(fresh_dsn, "orig") as store:
        report = check_table(store)
        assert report.usable
        assert {f.level for f in report.findings} == {"warning"}
        init_table(store)  # adds the missing indexes to the existing table
        assert check_table(store).findings == []
