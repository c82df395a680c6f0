"""`db check`: compare an existing table with the samples table (README, "The samples
table") and describe how it is stored, in plain sentences that each say what to do.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg import sql

from .analyses.hosts import describe_clash, name_clashes
from .errors import StoreError
from .partitions import (
    DAY,
    PREMAKE_DAYS,
    Layout,
    read_layout,
    utc_day,
    utc_minute,
)
from .schema import COLUMN_NAMES, COLUMNS, INDEXES, INT_TYPES, OPTIONAL_COLUMNS, PARTITION_KEY

if TYPE_CHECKING:
    import psycopg

    from .store import Store


@dataclass(frozen=True)
class Finding:
    level: str  # "error": the analyses cannot run; "warning": they run, but slowly or partly
    message: str


@dataclass
class CheckReport:
    table: str
    quoted: str = ""  # the table as a quoted identifier, for SQL in the messages
    findings: list[Finding] = field(default_factory=list)
    rows_estimate: int | None = None
    layout: Layout | None = None
    size_bytes: int | None = None
    first_sample: float | None = None  # oldest and newest sample_time (None: not read)
    last_sample: float | None = None
    notes: list[str] = field(default_factory=list)  # what the table is, for people
    recommendations: list[str] = field(default_factory=list)  # what to do before it hurts

    @property
    def usable(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

    @property
    def span_days(self) -> float | None:
        if self.first_sample is None or self.last_sample is None:
            return None
        return (self.last_sample - self.first_sample) / DAY

    def error(self, message: str) -> None:
        self.findings.append(Finding("error", message))

    def warning(self, message: str) -> None:
        self.findings.append(Finding("warning", message))


_COLUMNS_SQL = """
SELECT a.attname AS name,
       regexp_replace(format_type(a.atttypid, a.atttypmod), '\\(.*\\)', '') AS type
  FROM pg_attribute a
 WHERE a.attrelid = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped
"""

_INDEX_COLUMNS = """array(SELECT a.attname
               FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              ORDER BY k.ord)::text[]"""

_INDEXES_SQL = f"""
SELECT ic.relname AS name, am.amname AS method, {_INDEX_COLUMNS} AS columns
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_am am ON am.oid = ic.relam
 WHERE i.indrelid = %(oid)s
"""

# the leaf partitions' own indexes (a partition attached by hand may lack the parent's)
_PARTITION_INDEXES_SQL = f"""
SELECT t.relid AS oid, {_INDEX_COLUMNS} AS columns
  FROM pg_partition_tree(%(oid)s) t
  LEFT JOIN pg_index i ON i.indrelid = t.relid
 WHERE t.isleaf
"""

# size and row estimate of the table, or of all its partitions (a partitioned table's
# parent has no storage of its own); reltuples < 0: never vacuumed nor analyzed
_SIZE_SQL = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint AS bytes,
       coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint AS rows,
       count(*) FILTER (WHERE c.reltuples < 0 AND pg_relation_size(c.oid) > 0) AS unanalyzed,
       count(*) AS leaves
  FROM pg_class c
 WHERE c.oid IN (SELECT relid FROM pg_partition_tree(%(oid)s) WHERE isleaf)
    OR (c.oid = %(oid)s AND c.relkind <> 'p')
"""

# Distinct node names by a loose index scan over (node_name, ...): one probe per name.
_NODE_NAMES_SQL = """
WITH RECURSIVE nodes AS (
    (SELECT node_name FROM {t} WHERE node_name IS NOT NULL ORDER BY node_name LIMIT 1)
    UNION ALL
    SELECT (SELECT n.node_name FROM {t} n WHERE n.node_name > nodes.node_name
             ORDER BY n.node_name LIMIT 1)
      FROM nodes WHERE nodes.node_name IS NOT NULL
)
SELECT node_name FROM nodes WHERE node_name IS NOT NULL
"""
MAX_NAMES_READ = 100_000  # a walk this long is no longer cheap: stop there

# Thresholds of the recommendations
PARTITION_ADVICE_ROWS = 1_000_000  # a plain table this big (or this old) should be
PARTITION_ADVICE_DAYS = 14  # partitioned before old rows are removed
KEEP_DAYS_ADVICE = 35  # the analyses read at most 30 days (capacity planning), plus slack
AHEAD_WARNING_DAYS = 2  # fewer days of partitions ahead than this: writes soon fail


def check_table(store: Store, *, now: float | None = None) -> CheckReport:
    """Compare the table with the expected columns and describe how it is stored (plain or
    partitioned, size, rows, time span); every finding says what to do."""
    now = time.time() if now is None else now
    name = store.table_name
    report = CheckReport(name)
    with store.read() as cur:
        quoted = report.quoted = store.relation.as_string(cur)
        # under a column mapping (--columns) the table's names are read as the contract's
        ours = {theirs: contract for contract, theirs in store.columns.items()}
        encoding = cur.connection.info.parameter_status("server_encoding")
        cur.execute(
            "SELECT c.oid, c.relkind, c.reltuples::bigint AS rows, "
            "has_table_privilege(c.oid, 'SELECT') AS can_select "
            "FROM pg_class c WHERE c.oid = to_regclass(%s)",
            (quoted,),
        )
        table = cur.fetchone()
        if table is None:
            report.error(
                f'table "{name}" does not exist in {store.target}; create it with '
                f"`perf-analyzer db init --table {name}`"
            )
            return report
        report.rows_estimate = max(table["rows"], 0)
        if not table["can_select"]:
            report.error(
                f'the connecting role may not read table "{name}"; grant it with '
                f"GRANT SELECT ON {quoted} TO <exporter role>"
            )
        oid = {"oid": table["oid"]}
        cur.execute(_COLUMNS_SQL, oid)
        present = {ours.get(row["name"], row["name"]): row["type"] for row in cur.fetchall()}
        cur.execute(_INDEXES_SQL, oid)
        indexes = cur.fetchall()
        for ix in indexes:
            ix["columns"] = [ours.get(c, c) for c in ix["columns"] or ()]
        layout = report.layout = read_layout(cur, store.table)
        unanalyzed = 0
        if layout.kind in ("plain", "partitioned"):
            cur.execute(_SIZE_SQL, oid)
            size = _one_row(cur)
            report.size_bytes = size["bytes"]
            unanalyzed = size["unanalyzed"] if size["leaves"] else 0
            if layout.kind == "partitioned":
                report.rows_estimate = size["rows"]
        partition_indexes: dict[int, list[tuple[str, ...]]] = {}
        if layout.kind == "partitioned":
            cur.execute(_PARTITION_INDEXES_SQL, oid)
            for row in cur.fetchall():
                partition_indexes.setdefault(row["oid"], [])
                if row["columns"]:
                    columns = tuple(ours.get(c, c) for c in row["columns"])
                    partition_indexes[row["oid"]].append(columns)
        time_type = present.get(PARTITION_KEY)
        time_indexed = any(tuple(ix["columns"][:1]) == (PARTITION_KEY,) for ix in indexes)
        # a mapped table is read through a subquery, which fails if one column is missing
        readable = table["can_select"] and (
            not store.columns or all(c in present for c in (*COLUMN_NAMES, *store.columns))
        )
        if readable and time_indexed and time_type in INT_TYPES:
            # min and max along the index: two probes (per partition), not a scan
            cur.execute(
                sql.SQL(
                    "SELECT min({k})::float8 AS first, max({k})::float8 AS last FROM {t}"
                ).format(k=sql.Identifier(PARTITION_KEY), t=store.table)
            )
            span = _one_row(cur)
            report.first_sample, report.last_sample = span["first"], span["last"]
        names_indexed = any(tuple(ix["columns"][:1]) == ("node_name",) for ix in indexes)
        if readable and names_indexed and "node_name" in present:
            query = sql.SQL(_NODE_NAMES_SQL + " LIMIT {n}").format(
                t=store.table, n=sql.Literal(MAX_NAMES_READ)
            )
            cur.execute(query)
            _check_names(report, [r["node_name"] for r in cur.fetchall()])
    _check_columns(report, present, store.columns)
    _check_indexes(report, indexes, store.columns)
    _describe(report, layout, unanalyzed, time_indexed)
    _check_optional(report, present)
    if layout.kind == "partitioned":
        _check_partitions(report, layout, partition_indexes, indexes, now)
    _recommend(report, layout, now)
    report.notes.append(f"server encoding {encoding} (perf-analyzer needs UTF8)")
    return report


def _one_row(cur: psycopg.Cursor[dict[str, Any]]) -> dict[str, Any]:
    """The row an aggregate query always returns."""
    row = cur.fetchone()
    if row is None:
        raise StoreError("an aggregate query on the catalog returned no row")
    return row


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'s' * (n != 1)}"


def _count(n: float) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} M"
    if n >= 10_000:
        return f"{n / 1e3:.0f} k"
    return f"{n:,.0f}"


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _describe(report: CheckReport, layout: Layout, unanalyzed: int, time_indexed: bool) -> None:
    """One note saying what the table is: layout, size, rows, time span."""
    parts = []
    if layout.kind == "plain":
        parts.append("plain table (not partitioned)")
    elif layout.by_time:
        ranges = layout.ranges
        text = (
            f"partitioned by day on {PARTITION_KEY}: {_plural(len(layout.partitions), 'partition')}"
        )
        if ranges:
            last = ranges[-1]
            last_day = utc_day(last.hi - 1) if math.isfinite(last.hi) else "MAXVALUE"
            first_day = utc_day(ranges[0].lo) if math.isfinite(ranges[0].lo) else "MINVALUE"
            text += f" from {first_day} to {last_day}"
            if math.isfinite(ranges[0].lo) and math.isfinite(last.hi):
                holes = layout.uncovered(int(ranges[0].lo), int(last.hi))
                missing = sum(b - a for a, b in holes) / DAY
                text += f" ({missing:,.0f} days in between have none)" if holes else ""
        if layout.default is not None:
            text += f" and a DEFAULT partition ({layout.default.name})"
        parts.append(text)
    else:
        parts.append(layout.describe())
    if report.size_bytes is not None:
        parts.append(_size(report.size_bytes))
    if report.rows_estimate:
        rows = f"about {_count(report.rows_estimate)} rows"
        if unanalyzed:
            rows += f" (not counting {unanalyzed} never analyzed)"
        parts.append(rows)
    elif unanalyzed:
        parts.append("row count unknown until ANALYZE has run")
    if report.first_sample is not None and report.last_sample is not None:
        parts.append(
            f"samples from {utc_minute(report.first_sample)} to {utc_minute(report.last_sample)}"
            f" ({report.span_days:.1f} days)"
        )
    elif not time_indexed:
        parts.append("time span not read (no index on sample_time)")
    report.notes.append(", ".join(parts))


def _check_partitions(
    report: CheckReport,
    layout: Layout,
    partition_indexes: dict[int, list[tuple[str, ...]]],
    parent_indexes: list[dict[str, Any]],
    now: float,
) -> None:
    name = report.table
    if not layout.by_time:
        report.warning(
            f"table is {layout.describe()}, not by RANGE ({PARTITION_KEY}): the analyses run, "
            "but a time window's read may scan every partition, and `perf-analyzer db prune` "
            "and the automatic daily partitions of `synth` and `sample` do not apply"
        )
        return
    if not layout.partitions:
        report.warning(
            "the table has no partition yet, so writes fail unless the writer creates its "
            f"own (`synth` and `sample` do); `perf-analyzer db init --partitioned --table {name}`"
            f" creates today's and the next {PREMAKE_DAYS} days' partitions"
        )
    elif layout.default is None:
        ahead = _covered_until(layout, now)
        if ahead is None:
            report.warning(
                f"no partition holds the current time ({utc_minute(now)}): writes of new "
                "samples fail with 'no partition of relation found for row'; "
                f"`perf-analyzer db init --partitioned --table {name}` creates today's and the "
                f"next {PREMAKE_DAYS} days' partitions (`synth` and `sample` create their own)"
            )
        elif ahead - now < AHEAD_WARNING_DAYS * DAY:
            report.warning(
                f"the partitions end at {utc_minute(ahead)}, in {(ahead - now) / 3600:.0f} "
                "hours: writes after that fail unless the writer makes its own (`synth` and "
                f"`sample` do); schedule `perf-analyzer db prune --table {name} --keep-days "
                f"{KEEP_DAYS_ADVICE}` daily, it also creates the next {PREMAKE_DAYS} days"
            )
    else:
        report.warning(
            f'the DEFAULT partition "{layout.default.name}" takes rows no daily partition '
            "holds: `perf-analyzer db prune` never drops it, so its rows are never removed, "
            "and new daily partitions are not created while it exists; move its rows into "
            "daily partitions and drop it"
        )
    for p in layout.partitions:
        if p.detach_pending:
            report.warning(
                f'partition "{p.name}" is half detached (an interrupted DETACH ... CONCURRENTLY);'
                f" `perf-analyzer db prune --table {name}` finishes it, or run ALTER TABLE "
                f"{report.quoted} DETACH PARTITION {p.identifier.as_string(None)} FINALIZE"
            )
    for spec in INDEXES:
        width = len(spec.columns)
        if not any(tuple(ix["columns"][:width]) == spec.columns for ix in parent_indexes):
            continue  # said once for the whole table already
        lacking = sum(
            not any(cols[:width] == spec.columns for cols in found)
            for found in partition_indexes.values()
        )
        if lacking:
            report.warning(
                f"{lacking} of {len(partition_indexes)} partitions lack the index on "
                f"({', '.join(spec.columns)}): reads of their days scan them whole; "
                f"{spec.why}. CREATE INDEX ON {report.quoted} ({', '.join(spec.columns)}) "
                "adds it to every partition"
            )


def _covered_until(layout: Layout, now: float) -> float | None:
    """The end of the partitions' unbroken coverage from `now` on (None: `now` uncovered)."""
    end: float | None = None
    for p in layout.ranges:
        if p.lo <= (now if end is None else end) < p.hi:
            end = p.hi
    return end


def _recommend(report: CheckReport, layout: Layout, now: float) -> None:
    rows = report.rows_estimate or 0
    days = report.span_days or 0.0
    if layout.kind == "plain" and (rows >= PARTITION_ADVICE_ROWS or days >= PARTITION_ADVICE_DAYS):
        if rows:
            holds = f"has {_count(rows)} rows" + (f" over {days:.0f} days" if days else "")
        else:
            holds = f"holds {days:.0f} days of samples"
        report.recommendations.append(
            f"table {holds} and is not partitioned: retention by DELETE "
            "will bloat it (dead rows that only VACUUM reclaims, holes that scatter new rows); "
            f"consider `perf-analyzer db init --partitioned` on a new table and migrating "
            f"(README: Retention), then `perf-analyzer db prune --keep-days {KEEP_DAYS_ADVICE}`"
            " daily"
        )
    if layout.by_time:
        cutoff = now - KEEP_DAYS_ADVICE * DAY
        old = [p for p in layout.ranges if p.hi <= cutoff]
        if old:
            report.recommendations.append(
                f"{_plural(len(old), 'partition')} hold only samples older than "
                f"{KEEP_DAYS_ADVICE} days, "
                "more than the analyses read (capacity planning: 30 days); schedule "
                f"`perf-analyzer db prune --table {report.table} --keep-days "
                f"{KEEP_DAYS_ADVICE}` daily: it drops whole old days and creates the next "
                f"{PREMAKE_DAYS}"
            )


def _check_columns(
    report: CheckReport, present: dict[str, str], mapped: dict[str, str] | None = None
) -> None:
    for column in COLUMNS:
        found = present.get(column.name)
        theirs = (mapped or {}).get(column.name)
        if found is None and theirs is not None:
            report.error(
                f'column "{theirs}", which the column mapping reads as {column.name} '
                f"({column.help}), is missing from the table; correct the mapping"
            )
        elif found is None:
            report.error(
                f'column "{column.name}" ({column.help}) is missing; add it with '
                f'ALTER TABLE {report.quoted} ADD COLUMN "{column.name}" {column.sql_type}'
            )
        elif found not in column.accepted:
            report.error(
                f'column "{column.name}" has type {found}, expected {column.sql_type}; '
                f'change it with ALTER TABLE {report.quoted} ALTER COLUMN "{column.name}" '
                f'TYPE {column.sql_type} USING "{column.name}"::{column.sql_type}'
            )


def _check_names(report: CheckReport, names: list[str]) -> None:
    for group in name_clashes(names):
        report.warning(
            f"node names {describe_clash(group)} differ only in case or surrounding "
            "whitespace, so the analyses count them as separate nodes; make the samplers "
            "write one name (and UPDATE the old rows to it)"
        )


# What the analyses miss without each optional column.
_WITHOUT = {
    "cpu_count": "CPU counts are estimated from load",
    "disk_used_ratio": "disk space is neither forecast nor checked for a disk-full emergency",
    "inodes_used_ratio": "inodes are neither forecast nor checked for exhaustion",
    "psi_cpu_some_avg60": "CPU pressure stall is not recorded",
    "psi_memory_some_avg60": "memory pressure stall is not recorded",
    "psi_io_some_avg60": "I/O pressure stall is not recorded",
}


def _check_optional(report: CheckReport, present: dict[str, str]) -> None:
    """Optional columns: absent is fine (the note says what it would give), a wrong type
    is a warning (the analyses ignore the column then)."""
    for column in OPTIONAL_COLUMNS:
        found = present.get(column.name)
        if found is None:
            report.notes.append(
                f'optional column "{column.name}" is absent, so {_WITHOUT[column.name]}; '
                "`perf-analyzer sample` fills it: "
                f'ALTER TABLE {report.quoted} ADD COLUMN "{column.name}" {column.sql_type}'
            )
        elif found not in column.accepted:
            report.warning(
                f'optional column "{column.name}" has type {found}, expected '
                f"{column.sql_type}, and is ignored; change it with ALTER TABLE "
                f'{report.quoted} ALTER COLUMN "{column.name}" TYPE {column.sql_type}'
            )


def _check_indexes(
    report: CheckReport, indexes: list[dict[str, Any]], mapped: dict[str, str] | None = None
) -> None:
    for spec in INDEXES:
        width = len(spec.columns)
        if not any(tuple(ix["columns"][:width]) == spec.columns for ix in indexes):
            theirs = ", ".join(f'"{(mapped or {}).get(c, c)}"' for c in spec.columns)
            fix = "" if mapped else " (or run `perf-analyzer db init`, which adds missing indexes)"
            report.warning(
                f"no index on ({', '.join(spec.columns)}): analyses still run, but every "
                f"read scans the whole table; {spec.why}. Create it with "
                f"CREATE INDEX ON {report.quoted} ({theirs}){fix}"
            )
