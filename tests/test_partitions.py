"""Tables partitioned by day: `db init --partitioned`, the writers' own partitions,
`db prune`, `db check`, and analyses that answer exactly as on a plain table."""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest
from psycopg import sql

from exporter import PerformanceAnalyzer
from exporter.partitions import DAY, ensure_partitions, init_partitioned_table, partition_name
from exporter.retention import prune
from exporter.sampler import write_rows
from exporter.schema import INDEXES, init_table
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store, StoreError
from exporter.tablecheck import check_table

from .test_cli import assert_one_clear_line, run
from .test_replay import assert_same

END = 1_790_000_040  # 2026-09-21 14:14 UTC, in the past: --at and now= pin the clock
SPEC = FleetSpec(nodes=3, containers=1, days=3, end=END)


def partitions(dsn: str, table: str) -> dict[str, tuple[int, int]]:
    """{partition name: (from, to)} of `table` (schema.table or table), from the catalog."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)",
            (sql.Identifier(*table.split(".")).as_string(conn),),
        ).fetchall()
    out = {}
    for name, bound in rows:
        lo, hi = bound.removeprefix("FOR VALUES FROM ('").removesuffix("')").split("') TO ('")
        out[name] = (int(lo), int(hi))
    return out


def rows_per_day(dsn: str, table: str) -> dict[int, int]:
    with psycopg.connect(dsn) as conn:
        query = sql.SQL(
            "SELECT sample_time / 86400 * 86400, count(*) FROM {} GROUP BY 1 ORDER BY 1"
        ).format(sql.Identifier(*table.split(".")))
        return dict(conn.execute(query).fetchall())


def days_of(lo: int, hi: int) -> list[int]:
    return list(range(lo // DAY * DAY, hi // DAY * DAY + DAY, DAY))


# --------------------------------------------------------------------------- init


def test_init_partitioned_makes_days_with_their_bounds_and_indexes(fresh_dsn: str) -> None:
    table = 'ops.Samples "x"'  # schema-qualified, mixed case, a quote and a space
    with Store(fresh_dsn, table) as store:
        created = init_partitioned_table(store, premake_days=3, now=END)
        assert init_partitioned_table(store, premake_days=3, now=END) == []  # idempotent
        earlier = init_partitioned_table(store, premake_days=3, since=END - 2 * DAY, now=END)
    today = END // DAY * DAY
    assert created == [partition_name('Samples "x"', today + i * DAY) for i in range(4)]
    assert created[0] == 'Samples "x"_p20260921'
    assert earlier == [partition_name('Samples "x"', today - i * DAY) for i in (2, 1)]
    bounds = partitions(fresh_dsn, table)
    assert sorted(bounds.values()) == [
        (d, d + DAY) for d in days_of(today - 2 * DAY, today + 3 * DAY)
    ]
    with psycopg.connect(fresh_dsn) as conn:
        kind = conn.execute(
            "SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)",
            (sql.Identifier("ops", 'Samples "x"').as_string(conn),),
        ).fetchone()
        per_partition = conn.execute(
            "SELECT c.relname, count(i.indexrelid) FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace LEFT JOIN pg_index i ON i.indrelid = c.oid"
            " WHERE n.nspname = 'ops' AND c.relkind = 'r' GROUP BY 1"
        ).fetchall()
    assert kind == ("p",)
    assert len(per_partition) == 6 and all(n == len(INDEXES) for _, n in per_partition)
    with Store(fresh_dsn, table) as store:
        report = check_table(store, now=END)
    assert report.usable and report.findings == []
    assert report.notes[0].startswith("partitioned by day on sample_time: 6 partitions")


def test_init_partitioned_refuses_a_plain_table(fresh_dsn: str) -> None:
    with Store(fresh_dsn) as store:
        init_table(store)
    result = run("db", "init", "--partitioned", "--dsn", fresh_dsn)
    assert_one_clear_line(result, "already exists and is not partitioned", "swap the names")
    result = run("db", "init", "--dsn", fresh_dsn, "--from", "2026-01-01")
    assert result.returncode == 2 and "--from only applies with --partitioned" in result.stderr


# --------------------------------------------------------------------------- writers


def test_sample_rows_create_their_day_once_under_concurrency(fresh_dsn: str) -> None:
    with Store(fresh_dsn) as store:
        init_partitioned_table(store, premake_days=0, now=END)  # only 2026-09-21
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        row = {"sample_time": END + DAY + i, "node_name": f"n{i}", "node_flag": True}
        try:
            with Store(fresh_dsn) as store:
                write_rows(store, [row])
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(partitions(fresh_dsn, "monitor_samples_ring")) == [
        "monitor_samples_ring_p20260921",
        "monitor_samples_ring_p20260922",
    ]
    assert sum(rows_per_day(fresh_dsn, "monitor_samples_ring").values()) == 6


def test_partitions_are_made_while_the_exporter_reads(fresh_dsn: str) -> None:
    """ATTACH PARTITION takes SHARE UPDATE EXCLUSIVE: an open read does not block it."""
    with Store(fresh_dsn) as store:
        init_partitioned_table(store, premake_days=0, now=END)
        with psycopg.connect(fresh_dsn) as reader:
            reader.execute("SELECT count(*) FROM monitor_samples_ring")  # transaction stays open
            t0 = time.monotonic()
            assert len(ensure_partitions(store, END, END + 2 * DAY)) == 2
            assert time.monotonic() - t0 < 3
            reader.rollback()


def test_absurd_times_are_refused_in_one_sentence(fresh_dsn: str) -> None:
    with Store(fresh_dsn) as store:
        init_partitioned_table(store, premake_days=0, now=END)
        with pytest.raises(StoreError, match="would create 36,500 daily partitions"):
            ensure_partitions(store, END + DAY, END + 36_500 * DAY)


# --------------------------------------------------------------------------- analyses


@pytest.fixture(scope="module")
def both(dsn: str) -> tuple[str, str]:
    """The same fleet in a plain table and in one partitioned by day."""
    with Store(dsn, "plain") as store:
        load_fleet(store, SPEC)
    with Store(dsn, "parted") as store:
        init_partitioned_table(store, premake_days=1, now=END)
        load_fleet(store, SPEC)
    return "plain", "parted"


ANALYSES = [
    ("emergency_health_check", {}),
    ("system_availability_check", {}),
    ("capacity_planning_analysis", {"days": 3}),
    ("resource_contention_analysis", {}),
    ("export_metrics_summary", {}),
]


def test_analyses_answer_the_same_on_a_partitioned_table(dsn: str, both) -> None:
    plain, parted = both
    spans = partitions(dsn, parted)
    assert sorted(spans.values()) == [(d, d + DAY) for d in days_of(SPEC.end - 3 * DAY, END + DAY)]
    assert rows_per_day(dsn, plain) == rows_per_day(dsn, parted)
    answers = {}
    for table in both:
        with PerformanceAnalyzer(dsn, table_name=table) as analyzer:
            answers[table] = {
                method: json.loads(json.dumps(getattr(analyzer, method)(now=END, **kw)))
                for method, kw in ANALYSES
            }
    for method, _ in ANALYSES:
        for result in answers.values():
            result[method].pop("generated_at", None)
        assert_same(answers[plain][method], answers[parted][method], method)
    emergency = answers[parted]["emergency_health_check"]
    assert emergency["status"] == "CRITICAL" and emergency["nodes"] == 3
    grades = {
        n["node_name"]: n["grade"] for n in answers[parted]["system_availability_check"]["nodes"]
    }
    assert grades["node-02"] == "CRITICAL"


def test_recent_window_reads_one_partition(dsn: str, both) -> None:
    """The emergency check's 5-minute read: partition pruning leaves one partition."""
    with psycopg.connect(dsn) as conn:
        plan = conn.execute(
            "EXPLAIN (FORMAT JSON) SELECT node_name, count(*) FROM parted"
            " WHERE sample_time > %s AND sample_time <= %s GROUP BY node_name",
            (END - 300, END),
        ).fetchone()[0]
    scanned = set()

    def walk(node: dict) -> None:
        if "Relation Name" in node:
            scanned.add(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    assert scanned == {"parted_p20260921"}


# --------------------------------------------------------------------------- prune


def test_prune_drops_exactly_the_old_days(fresh_dsn: str) -> None:
    spec = FleetSpec(nodes=2, containers=0, days=6, end=END)
    with Store(fresh_dsn) as store:
        init_partitioned_table(store, premake_days=0, now=END)
        fleet = load_fleet(store, spec)
    before = rows_per_day(fresh_dsn, "monitor_samples_ring")
    parts_before = partitions(fresh_dsn, "monitor_samples_ring")
    assert sorted(lo for lo, _ in parts_before.values()) == sorted(before)  # one per day
    keep = 3
    cutoff = END - keep * DAY
    doomed = {lo: n for lo, n in before.items() if lo + DAY <= cutoff}
    assert len(doomed) == 3 and fleet.start < min(doomed) + DAY

    dry = run("db", "prune", "--dsn", fresh_dsn, "--keep-days", "3", "--at", str(END), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing changed" in dry.stdout and "would drop 3 partitions" in dry.stdout
    assert partitions(fresh_dsn, "monitor_samples_ring") == parts_before
    assert rows_per_day(fresh_dsn, "monitor_samples_ring") == before

    result = run(
        "db", "prune", "--dsn", fresh_dsn, "--keep-days", "3", "--at", str(END),
        "--premake-days", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for lo, n in doomed.items():
        name = partition_name("monitor_samples_ring", lo)
        assert (
            f'dropped partition "{name}" ({time.strftime("%Y-%m-%d", time.gmtime(lo))}): {n:,} rows'
            in result.stdout
        )
    assert f"dropped 3 partitions ({sum(doomed.values()):,} rows)" in result.stdout
    after = rows_per_day(fresh_dsn, "monitor_samples_ring")
    assert after == {lo: n for lo, n in before.items() if lo not in doomed}
    today = END // DAY * DAY
    kept = sorted(partitions(fresh_dsn, "monitor_samples_ring").values())
    assert kept == [(d, d + DAY) for d in days_of(min(after), today + 2 * DAY)]
    assert "created 2 partitions ahead" in result.stdout

    with Store(fresh_dsn) as store:  # nothing left to drop, nothing to make
        again = prune(store, keep, now=END, premake_days=2)
    assert again.dropped == [] and again.created == [] and again.kept == len(kept)


def test_prune_refuses_a_plain_table_unless_told(fresh_dsn: str) -> None:
    with Store(fresh_dsn) as store:
        load_fleet(store, FleetSpec(nodes=1, containers=0, days=2, end=END))
    before = rows_per_day(fresh_dsn, "monitor_samples_ring")
    cutoff = END - DAY
    with psycopg.connect(fresh_dsn) as conn:
        old = conn.execute(
            "SELECT count(*) FROM monitor_samples_ring WHERE sample_time < %s", (cutoff,)
        ).fetchone()[0]
    assert 500 < old < sum(before.values())
    result = run("db", "prune", "--dsn", fresh_dsn, "--keep-days", "1", "--at", str(END))
    assert_one_clear_line(
        result, 'table "monitor_samples_ring" is not partitioned', "--allow-delete"
    )
    assert rows_per_day(fresh_dsn, "monitor_samples_ring") == before

    result = run(
        "db", "prune", "--dsn", fresh_dsn, "--keep-days", "1", "--at", str(END),
        "--allow-delete", "--batch-rows", "500",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with psycopg.connect(fresh_dsn) as conn:
        first, left = conn.execute(
            "SELECT min(sample_time), count(*) FROM monitor_samples_ring"
        ).fetchone()
    assert f"deleted {old:,} rows" in result.stdout and "VACUUM" in result.stdout
    assert f"in {-(-old // 500)} batches" in result.stdout
    assert first >= cutoff and left == sum(before.values()) - old


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--keep-days", "-1"], "-1 is not in the range"),
        (["--keep-days", "3", "--table", "absent"], 'table "absent" does not exist'),
    ],
)
def test_prune_bad_input(dsn: str, args: list[str], message: str) -> None:
    result = run("db", "prune", "--dsn", dsn, *args)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert message in result.stderr


# --------------------------------------------------------------------------- check


def test_check_explains_layout_and_recommends(fresh_dsn: str) -> None:
    with Store(fresh_dsn, "big") as store:
        load_fleet(store, FleetSpec(nodes=1, containers=0, days=15, end=END))
    result = run("db", "check", "--dsn", fresh_dsn, "--table", "big")
    assert result.returncode == 0, result.stderr
    assert "info: plain table (not partitioned)" in result.stdout
    recommendation = next(
        line for line in result.stdout.splitlines() if line.startswith("recommendation:")
    )
    assert "15 days" in recommendation and "is not partitioned" in recommendation
    assert "retention by DELETE will bloat it" in recommendation
    assert "db init --partitioned" in recommendation

    with Store(fresh_dsn, "parted") as store:
        init_partitioned_table(store, premake_days=0, now=END - 2 * DAY)
        load_fleet(store, FleetSpec(nodes=1, containers=0, days=2, end=END))
    result = run("db", "check", "--dsn", fresh_dsn, "--table", "parted")
    assert result.returncode == 0, result.stderr  # warnings do not fail
    assert (
        "info: partitioned by day on sample_time: 3 partitions from 2026-09-19 to 2026-09-21"
        in result.stdout
    )
    assert "warning: no partition holds the current time" in result.stdout  # the data is old
    assert "partitioned by day" in result.stdout and "is usable" in result.stdout
    with Store(fresh_dsn, "parted") as store:
        init_partitioned_table(store)  # today and the next 7 days
        report = check_table(store)
    assert report.usable and report.findings == []
    assert "days in between have none" in report.notes[0]  # 2026-09-22 .. yesterday


def test_the_readme_migration(fresh_dsn: str) -> None:
    """Plain table -> partitioned copy -> swap names; init again builds no duplicate index."""
    with Store(fresh_dsn) as store:
        load_fleet(store, FleetSpec(nodes=1, containers=0, days=2, end=END))
    before = rows_per_day(fresh_dsn, "monitor_samples_ring")
    with Store(fresh_dsn, "monitor_samples_new") as store:
        init_partitioned_table(store, since=min(before), now=END)
    with psycopg.connect(fresh_dsn) as conn:
        conn.execute("INSERT INTO monitor_samples_new SELECT * FROM monitor_samples_ring")
        conn.execute("ALTER TABLE monitor_samples_ring RENAME TO monitor_samples_old")
        conn.execute("ALTER TABLE monitor_samples_new RENAME TO monitor_samples_ring")
        conn.execute("DROP TABLE monitor_samples_old")
    with Store(fresh_dsn) as store:
        assert init_partitioned_table(store, now=END) == []
        init_table(store)
        report = check_table(store, now=END)
    assert report.usable and report.findings == []
    assert rows_per_day(fresh_dsn, "monitor_samples_ring") == before
    with psycopg.connect(fresh_dsn) as conn:
        parent_indexes = conn.execute(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'monitor_samples_ring'::regclass"
        ).fetchone()[0]
    assert parent_indexes == len(INDEXES)
