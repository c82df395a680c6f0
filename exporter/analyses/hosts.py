"""Facts about each node that several analyses need: when it reported first and last, how
often it reports, and how many CPUs it has."""

from __future__ import annotations

from psycopg import sql

from .common import DAY, Context, clean, snap_cpu_count

# Loose index scan over (node_name, sample_time): one index probe per node instead of a
# scan of the table's history (see docs/performance.md). The shard filter
# applies to the nodes found, not inside the walk (there it would read the skipped nodes).
_SPAN_SQL = """
WITH RECURSIVE nodes AS (
    (SELECT node_name FROM {t} WHERE node_name IS NOT NULL ORDER BY node_name LIMIT 1)
    UNION ALL
    SELECT (SELECT n.node_name FROM {t} n WHERE n.node_name > nodes.node_name
             ORDER BY n.node_name LIMIT 1)
      FROM nodes WHERE nodes.node_name IS NOT NULL
)
SELECT node_name,
       (SELECT min(sample_time) FROM {t} s
         WHERE s.node_name = nodes.node_name AND s.sample_time <= %(now)s) AS first_seen,
       (SELECT max(sample_time) FROM {t} s
         WHERE s.node_name = nodes.node_name AND s.sample_time <= %(now)s) AS last_seen
  FROM nodes WHERE node_name IS NOT NULL AND {shard}
"""


def node_spans(ctx: Context, now: int) -> dict[str, tuple[int, int]]:
    """{node: (first sample time, newest sample time)} over rows up to `now`."""
    with ctx.store.read() as cur:
        query = sql.SQL(_SPAN_SQL).format(t=ctx.store.table, shard=ctx.store.shard_filter)
        cur.execute(query, {"now": now})
        return {
            r["node_name"]: (int(r["first_seen"]), int(r["last_seen"]))
            for r in cur.fetchall()
            if r["last_seen"] is not None
        }


# CPU count from the data: on a CPU-bound Linux host the 1-minute load is close to the
# number of busy CPUs, so load / (cpu% / 100) estimates the CPU count. The median over the
# last day's samples with CPU above 20 % (below, load is dominated by noise) is snapped to
# the nearest common core count (1, 2, 4, 6, 8, 12, 16, ...).
_CPU_SQL = """
SELECT node_name,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY {load} / ({cpu} / 100.0)) AS ratio
  FROM {t}
 WHERE node_flag IS TRUE AND sample_time > %(start)s AND sample_time <= %(now)s
   AND {cpu} > 20 AND {load} IS NOT NULL AND {shard}
 GROUP BY node_name
"""


def cpu_count_of(ctx: Context, now: int) -> dict[str, int]:
    """{node: estimated CPU count} (cached per hour); nodes without a usable estimate
    (idle all day) are absent. Callers prefer `ctx.cpu_count` when the user gave one."""
    key = now // 3600
    cached = ctx.caches.get("cpu_counts")
    if cached and cached[0] == key:
        return cached[1]
    query = sql.SQL(_CPU_SQL).format(
        t=ctx.store.table,
        cpu=clean("cpu_total_pct"),
        load=clean("load_1m"),
        shard=ctx.store.shard_filter,
    )
    with ctx.store.read() as cur:
        cur.execute(query, {"start": now - DAY, "now": now})
        counts = {
            r["node_name"]: n
            for r in cur.fetchall()
            if (n := snap_cpu_count(r["ratio"])) is not None
        }
    ctx.caches["cpu_counts"] = (key, counts)
    return counts
