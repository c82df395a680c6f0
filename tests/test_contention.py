"""Resource contention against the simulator's injected noisy neighbour and memory pressure."""

from __future__ import annotations

import json

import numpy as np
import psycopg
import pytest
from psycopg import sql

from exporter import PerformanceAnalyzer
from exporter.analyses import contention
from exporter.analyses.common import (
    CONTAINER_ROW,
    NODE_ROW,
    clean,
    window_rows,
)
from exporter.analyses.contention import (
    ContentionState,
    resource_contention_analysis,
    to_samples,
    victims_and_grower,
)
from exporter.analyses.unit import ResultView
from exporter.config import Config
from exporter.schema import init_table
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store

from .conftest import FLEET_END

END = 1_700_006_400


def _entry(result: dict, node: str, resource: str) -> dict:
    return next(n for n in result["nodes"] if n["node_name"] == node and n["resource"] == resource)


@pytest.fixture(scope="module")
def result(analyzer):
    r = analyzer.resource_contention_analysis(1, now=FLEET_END)
    json.dumps(r, allow_nan=False)
    return r


def test_noisy_neighbour_is_the_top_cpu_consumer(fleet_db, result):
    truth = fleet_db.fleet.truth_for("noisy_neighbour")
    cpu = _entry(result, truth["node"], "cpu")
    assert cpu["top_consumer"] == truth["container"]
    share = next(c for c in cpu["containers"] if c["container_name"] == truth["container"])
    assert share["share"] == pytest.approx(truth["share_of_node_cpu"], abs=0.05)
    assert cpu["contention_score"] > 0.5
    assert cpu["top_grower"] == truth["container"]
    assert share["share_change"] > 0.2  # it grew into the pressure
    assert cpu["pressure_samples"] == truth["window"]["samples"]
    # the simulator leaves the other containers' own use unchanged: their share fell only
    # because the neighbour grew, which does not make them victims
    assert cpu["victims"] == []


def test_healthy_node_has_no_contention(result):
    for resource in ("cpu", "memory"):
        e = _entry(result, "node-01", resource)
        assert e["contention_score"] == 0.0
        assert e["pressure_samples"] == 0
        assert e["top_consumer"] is None


def test_memory_pressure_scores(fleet_db, result):
    truth = fleet_db.fleet.truth_for("memory_exhausted")
    mem = _entry(result, truth["node"], "memory")
    assert mem["contention_score"] > 0
    assert mem["pressure_samples"] == truth["window"]["samples"]  # its last 20 minutes
    assert mem["top_consumer"] in fleet_db.fleet.truth["nodes"][truth["node"]]["containers"]
    assert _entry(result, truth["node"], "cpu")["contention_score"] == 0.0


def _rows(dsn: str, rows: list[tuple]) -> None:
    with psycopg.connect(dsn) as conn:
        conn.cursor().executemany(
            "INSERT INTO monitor_samples_ring (sample_time, node_name, container_name,"
            " node_flag, cpu_total_pct, c_rss_mb, mem_available_mb, mem_total_mb)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


def test_nan_rows_are_ignored(fresh_dsn):
    with Store(fresh_dsn) as s:
        init_table(s)
    rows = []
    for i in range(60):
        t = END - 60 * i
        rows.append((t, "n", None, True, 90.0, None, 8000.0, 16000.0))
        rows.append((t, "n", "hog", False, 60.0 if i % 2 else float("nan"), 100.0, None, None))
        rows.append((t + 1, "n", None, True, float("inf"), None, float("nan"), 16000.0))
    _rows(fresh_dsn, rows)
    with PerformanceAnalyzer(fresh_dsn) as a:
        r = a.resource_contention_analysis(1, now=END)
    json.dumps(r, allow_nan=False)
    cpu = _entry(r, "n", "cpu")
    assert cpu["top_consumer"] == "hog"
    # 30 valid container samples of 60 % over 60 pressure samples at 90 %
    assert cpu["containers"][0]["share"] == pytest.approx(30 * 60 / (60 * 90), abs=1e-6)
    assert cpu["pressure_samples"] == 60


def test_only_containers_and_no_containers(fresh_dsn):
    with Store(fresh_dsn) as s:
        init_table(s)
    _rows(fresh_dsn, [(END - 60 * i, "c", "x", False, 50.0, 10.0, None, None) for i in range(30)])
    with PerformanceAnalyzer(fresh_dsn) as a:
        assert a.resource_contention_analysis(1, now=END)["nodes"] == []
        _rows(
            fresh_dsn,
            [(END - 60 * i, "m", None, True, 95.0, None, 100.0, 1000.0) for i in range(60)],
        )
        r = a.resource_contention_analysis(1, now=END)
    cpu = _entry(r, "m", "cpu")
    assert cpu["top_consumer"] is None and cpu["containers"] == []
    # a node without containers is under pressure, not in contention
    assert cpu["contention_score"] == 0.0
    assert cpu["pressure_fraction"] == pytest.approx(1.0)
    assert _entry(r, "m", "memory")["pressure_samples"] == 60


# --------------------------------------------------------------------------- hand-built rows
# Rows the way a sampler writes them: node rows at a jittered interval, container rows a
# few seconds after their node row, autocorrelated noise, a few node rows lost, a few NULL
# container values. The expected answers are computed here with numpy from the same arrays.


def _ar1(rng: np.random.Generator, n: int, sd: float, phi: float = 0.8) -> np.ndarray:
    z = np.empty(n)
    z[0] = rng.normal(0, sd)
    for i in range(1, n):
        z[i] = phi * z[i - 1] + rng.normal(0, sd * np.sqrt(1 - phi**2))
    return z


def _build(interval: int, offset: int, *, small_after: float = 10.0, seed: int = 1) -> dict:
    """7 h of one node with containers `hog` and `small`: calm for 6 h (node 40 %, hog
    20 %, small 10 %), then 1 h under CPU pressure (node 92 %, hog 60 %, small
    `small_after`)."""
    rng = np.random.default_rng(seed)
    n = 7 * 3600 // interval - 1  # all inside (END - 7 h, END], container rows too
    t = END - 7 * 3600 + interval * np.arange(1, n + 1) + rng.integers(-2, 3, n)
    hot = t > END - 3600
    node = np.where(hot, 92.0, 40.0) + _ar1(rng, n, 1.5)
    hog = np.where(hot, 60.0, 20.0) + _ar1(rng, n, 1.0)
    small = np.where(hot, small_after, 10.0) + _ar1(rng, n, 0.5)
    lost = rng.random(n) < 0.03  # node rows that never arrived
    small_null = rng.random(n) < 0.05  # NULL container values
    rows = []
    for i in range(n):
        ti = int(t[i])
        if not lost[i]:
            rows.append((ti, "n1", None, True, float(node[i]), 2.0, None, 8000.0, 16000.0))
        rows.append((ti + offset, "n1", "hog", False, float(hog[i]), None, 500.0, None, None))
        s_cpu = None if small_null[i] else float(small[i])
        rows.append((ti + offset, "n1", "small", False, s_cpu, None, 200.0, None, None))
    return {
        "rows": rows,
        "t": t,
        "keep": ~lost,
        "pressure": hot & ~lost & (node > 80),
        "node": node,
        "hog": hog,
        "small": np.where(small_null, np.nan, small),
        "lost": int(lost.sum()),
    }


def _insert(dsn: str, rows: list[tuple]) -> None:
    with Store(dsn) as s:
        init_table(s)
    with psycopg.connect(dsn) as conn:
        conn.cursor().executemany(
            "INSERT INTO monitor_samples_ring (sample_time, node_name, container_name,"
            " node_flag, cpu_total_pct, cpu_iowait_pct, c_rss_mb, mem_available_mb,"
            " mem_total_mb) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


@pytest.mark.parametrize(("interval", "offset"), [(15, 1), (60, 3)])
def test_container_rows_a_few_seconds_late_are_attributed(fresh_dsn, interval, offset):
    d = _build(interval, offset)
    _insert(fresh_dsn, d["rows"])
    with PerformanceAnalyzer(fresh_dsn) as a:
        r = a.resource_contention_analysis(1, now=END)
    cpu = _entry(r, "n1", "cpu")
    p, in_window = d["pressure"], d["t"] > END - 3600
    samples = int((in_window & d["keep"]).sum())
    fraction = p.sum() / samples
    hog_share = d["hog"][p].sum() / d["node"][p].sum()
    small_share = np.nansum(d["small"][p]) / d["node"][p].sum()
    assert cpu["top_consumer"] == "hog"
    assert cpu["pressure_samples"] == int(p.sum())
    assert cpu["pressure_fraction"] == pytest.approx(fraction, abs=1e-6)
    shares = {c["container_name"]: c["share"] for c in cpu["containers"]}
    assert shares["hog"] == pytest.approx(hog_share, abs=1e-6)
    assert shares["small"] == pytest.approx(small_share, abs=1e-6)
    assert cpu["contention_score"] == pytest.approx(fraction * hog_share, abs=1e-5)
    # a container row whose node row was lost has no node row within half an interval
    assert cpu["unmatched_rows"] == 2 * d["lost"]
    assert cpu["top_grower"] == "hog"
    assert cpu["victims"] == []  # small's own use did not change


def test_a_container_whose_use_fell_beside_a_grower_is_a_victim(fresh_dsn):
    d = _build(15, 1, small_after=5.0)
    _insert(fresh_dsn, d["rows"])
    with PerformanceAnalyzer(fresh_dsn) as a:
        cpu = _entry(a.resource_contention_analysis(1, now=END), "n1", "cpu")
    assert cpu["victims"] == ["small"]
    small = next(c for c in cpu["containers"] if c["container_name"] == "small")
    calm = d["keep"] & ~(d["t"] > END - 3600)
    expected = np.nanmean(d["small"][d["pressure"]]) / np.nanmean(d["small"][calm]) - 1
    assert small["use_change"] == pytest.approx(expected, abs=1e-6)


def test_a_node_without_containers_has_pressure_and_no_contention(fresh_dsn):
    rng = np.random.default_rng(3)
    t = END - 3600 + 30 * np.arange(1, 121) + rng.integers(-3, 4, 120)
    cpu = 95.0 + _ar1(rng, 120, 1.0)
    _insert(
        fresh_dsn,
        [
            (int(ti), "bare", None, True, float(c), 1.0, None, 8000.0, 16000.0)
            for ti, c in zip(t, cpu, strict=True)
        ],
    )
    with PerformanceAnalyzer(fresh_dsn) as a:
        r = a.resource_contention_analysis(1, now=END)
    e = _entry(r, "bare", "cpu")
    assert e["contention_score"] == 0.0
    assert e["pressure_fraction"] == pytest.approx(float((cpu > 80).mean()))
    served = {
        (s.metric, dict(s.labels)["resource"]): s.value
        for s in to_samples(r, ResultView(Config(), {}))
        if dict(s.labels)["node"] == "bare"
    }
    assert served[("contention_score", "cpu")] == 0.0
    assert served[("node_pressure_ratio", "cpu")] == pytest.approx(float((cpu > 80).mean()))


def test_victim_rule_error_rates_under_autocorrelated_noise():
    """Monte Carlo of the victim rule over one hour of 60 s samples (60 under pressure,
    360 calm), per-sample noise 15 % of the use with AR(1) phi 0.9: an unchanged
    container is called a victim rarely, one that lost 40 % nearly always."""
    rng = np.random.default_rng(7)
    drop = Config().contention.victim_drop
    trials, phi, sd = 4000, 0.9, 0.15
    z = np.empty((trials, 420))
    z[:, 0] = rng.normal(0, sd, trials)
    for i in range(1, 420):
        z[:, i] = phi * z[:, i - 1] + rng.normal(0, sd * np.sqrt(1 - phi**2), trials)
    use = 10.0 * (1 + z)
    rates = {}
    for loss in (0.0, 0.4):
        change = use[:, 360:].mean(axis=1) * (1 - loss) / use[:, :360].mean(axis=1) - 1
        called = [
            "c" in victims_and_grower({"c": float(c), "g": 1.0}, {"c": 0.0, "g": 5.0}, drop)[0]
            for c in change
        ]
        rates[loss] = float(np.mean(called))
    assert rates[0.0] < 0.02  # false victims
    assert rates[0.4] > 0.95  # real victims found


# --------------------------------------------------------------------------- against SQL

NODE_COLUMNS = ("cpu_total_pct", "cpu_iowait_pct", "mem_available_mb", "mem_total_mb")

_ORACLE_FLAGGED = sql.SQL(
    "SELECT node_name, sample_time, sample_time > %(wstart)s AS inw, cpu,"
    " total, total - avail AS used,"
    " coalesce(cpu > %(cpu_pct)s, false) OR coalesce(iowait > %(iowait_pct)s, false) AS cpu_p,"
    " coalesce(avail < total * %(mem_pct)s / 100.0, false) AS mem_p"
    " FROM (SELECT node_name, sample_time, {cpu} AS cpu, {iowait} AS iowait,"
    " {avail} AS avail, {total} AS total FROM {rows} r WHERE {node}) n"
)

_ORACLE_NODE_SQL = sql.SQL(
    "WITH f AS ({flagged}) SELECT node_name,"
    " count(*) FILTER (WHERE inw) AS samples,"
    " count(*) FILTER (WHERE inw AND cpu_p) AS cpu_pressure,"
    " count(*) FILTER (WHERE inw AND mem_p) AS mem_pressure,"
    " sum(cpu) FILTER (WHERE inw AND cpu_p) AS cpu_use_p,"
    " sum(cpu) FILTER (WHERE NOT cpu_p) AS cpu_use_b,"
    " count(cpu) FILTER (WHERE inw AND cpu_p) AS cpu_n_p,"
    " sum(used) FILTER (WHERE inw AND mem_p) AS mem_use_p,"
    " sum(used) FILTER (WHERE NOT mem_p) AS mem_use_b,"
    " count(used) FILTER (WHERE inw AND mem_p) AS mem_n_p,"
    " avg(total) FILTER (WHERE inw) AS mem_total"
    " FROM f GROUP BY node_name"
)

# Each container row goes to the nearest node row of its node (ties: the earlier), if that
# row lies within half the node's median interval. The previous and next node times come
# from running max/min over the node's rows and container rows in time order (a sort, not a
# join of every container row with every node row). Rows matched to one node row are
# averaged, so a container sampled more often than its node is not counted twice.
_ORACLE_MATCHED = sql.SQL(
    "half AS (SELECT node_name, percentile_cont(0.5) WITHIN GROUP (ORDER BY dt) / 2.0 AS half"
    " FROM (SELECT node_name, sample_time - lag(sample_time) OVER"
    " (PARTITION BY node_name ORDER BY sample_time) AS dt FROM f) d"
    " WHERE dt > 0 GROUP BY node_name),"
    " u AS (SELECT node_name, NULL::text AS container_name, sample_time, NULL::float8 AS cpu,"
    " NULL::float8 AS rss, false AS is_c, sample_time AS nt FROM f"
    " UNION ALL SELECT node_name, container_name, sample_time, {ccpu}, {rss}, true, NULL"
    " FROM {rows} r WHERE {container}),"
    " w AS (SELECT node_name, container_name, sample_time, cpu, rss, is_c,"
    " max(nt) OVER (PARTITION BY node_name ORDER BY sample_time, is_c"
    " ROWS UNBOUNDED PRECEDING) AS prev_t,"
    " min(nt) OVER (PARTITION BY node_name ORDER BY sample_time DESC, is_c"
    " ROWS UNBOUNDED PRECEDING) AS next_t"
    " FROM u),"
    " near AS (SELECT w.*, CASE WHEN next_t IS NULL"
    " OR (prev_t IS NOT NULL AND sample_time - prev_t <= next_t - sample_time)"
    " THEN prev_t ELSE next_t END AS nt FROM w WHERE is_c),"
    " m AS (SELECT near.node_name, container_name, near.nt,"
    " coalesce(abs(near.sample_time - near.nt) <= coalesce(half.half, 0), false) AS ok,"
    " avg(cpu) AS cpu, avg(rss) AS rss, count(*) AS n"
    " FROM near LEFT JOIN half ON half.node_name = near.node_name"
    " GROUP BY near.node_name, container_name, near.nt, ok)"
)

# Container use over the node samples it matched (parameters as _ORACLE_FLAGGED).
_ORACLE_CONTAINER_SQL = sql.SQL(
    "WITH f AS ({flagged}), {matched} SELECT m.node_name, m.container_name,"
    " sum(m.n) FILTER (WHERE m.ok) AS matched, sum(m.n) FILTER (WHERE NOT m.ok) AS unmatched,"
    " sum(m.cpu) FILTER (WHERE f.inw AND f.cpu_p AND f.cpu IS NOT NULL) AS cpu_use_p,"
    " sum(m.cpu) FILTER (WHERE NOT f.cpu_p AND f.cpu IS NOT NULL) AS cpu_use_b,"
    " avg(m.cpu) FILTER (WHERE f.inw AND f.cpu_p) AS cpu_mean_p,"
    " avg(m.cpu) FILTER (WHERE NOT f.cpu_p) AS cpu_mean_b,"
    " sum(m.rss) FILTER (WHERE f.inw AND f.mem_p AND f.used IS NOT NULL) AS mem_use_p,"
    " sum(m.rss) FILTER (WHERE NOT f.mem_p AND f.used IS NOT NULL) AS mem_use_b,"
    " avg(m.rss) FILTER (WHERE f.inw AND f.mem_p) AS mem_mean_p,"
    " avg(m.rss) FILTER (WHERE NOT f.mem_p) AS mem_mean_b"
    " FROM m LEFT JOIN f ON f.node_name = m.node_name AND f.sample_time = m.nt AND m.ok"
    " GROUP BY m.node_name, m.container_name"
)


def _oracle_sql(ctx, template: sql.SQL) -> sql.Composed:
    flagged = _ORACLE_FLAGGED.format(
        cpu=clean("cpu_total_pct"),
        iowait=clean("cpu_iowait_pct"),
        avail=clean("mem_available_mb"),
        total=clean("mem_total_mb"),
        rows=window_rows(ctx.store, NODE_COLUMNS),
        node=NODE_ROW,
    )
    matched = _ORACLE_MATCHED.format(
        ccpu=clean("cpu_total_pct"),
        rss=clean("c_rss_mb"),
        rows=window_rows(ctx.store, ("cpu_total_pct", "c_rss_mb")),
        container=CONTAINER_ROW,
    )
    return template.format(flagged=flagged, matched=matched)


def _oracle(ctx, now: int) -> list[dict]:
    """The analysis's result with its aggregates computed by the SQL above."""
    cfg = ctx.config.contention
    wstart = now - 3600
    params = {
        "start": wstart - int(cfg.baseline_hours * 3600),
        "now": now,
        "wstart": wstart,
        "cpu_pct": cfg.cpu_pct,
        "iowait_pct": cfg.iowait_pct,
        "mem_pct": cfg.mem_available_pct,
    }
    with ctx.store.read() as cur:
        cur.execute(_oracle_sql(ctx, _ORACLE_NODE_SQL), params)
        nodes = cur.fetchall()
        cur.execute(_oracle_sql(ctx, _ORACLE_CONTAINER_SQL), params)
        containers = cur.fetchall()
    window = {"start": wstart, "end": now, "baseline_start": params["start"]}
    return [
        contention._entry(
            n,
            [c for c in containers if c["node_name"] == n["node_name"]],
            resource,
            cfg.victim_drop,
            window,
        )
        for n in sorted(nodes, key=lambda r: r["node_name"])
        if n["samples"]
        for resource in ("cpu", "memory")
    ]


@pytest.mark.slow
def test_the_kept_rows_give_what_sql_over_the_table_gives(fresh_dsn):
    """Realistic samplers (15 s to 5 min, jitter, late stamps, missed samples, container
    offsets, NULL columns) plus duplicates and invalid values: at several instants, from
    scratch and from kept rows, the same entries as the SQL definition."""
    end = 1_790_000_040
    with Store(fresh_dsn) as store:
        load_fleet(store, FleetSpec(nodes=5, containers=2, days=0.5, end=end, realistic=True))
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute(  # duplicates: a copy of some rows with CPU dropped, and invalid values
            "INSERT INTO monitor_samples_ring (sample_time, node_name, container_name,"
            " node_flag, mem_available_mb, mem_total_mb, c_rss_mb)"
            " SELECT sample_time, node_name, container_name, node_flag, mem_available_mb,"
            " mem_total_mb, c_rss_mb FROM monitor_samples_ring WHERE sample_time % 7 = 0"
        )
        conn.execute(
            "UPDATE monitor_samples_ring SET cpu_total_pct = 'NaN'"
            " WHERE sample_time % 11 = 0 AND cpu_total_pct IS NOT NULL"
        )
    state = ContentionState()
    with PerformanceAnalyzer(fresh_dsn) as a:
        for now in (end - 5 * 3600 + 17, end - 3600, end - 3600 + 60, end - 1800, end):
            expected = _oracle(a.ctx, now)
            assert any(e["matched_rows"] for e in expected)
            scratch = a.resource_contention_analysis(1, now=now)
            kept = resource_contention_analysis(a.ctx, hours=1, now=now, state=state)
            assert scratch["nodes"] == expected
            assert kept["nodes"] == expected
