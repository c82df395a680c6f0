"""CPU counts from the sampler's column first, else from load at moderate CPU; node names
that differ only in case or whitespace. Rows are built the way samplers write them: jittered
30 s intervals, AR(1) noise, a few lost rows, NULL values."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import psycopg
import pytest

from exporter import PerformanceAnalyzer
from exporter.analyses.common import snap_cpu_count
from exporter.sampler import usable_cpus
from exporter.schema import init_table
from exporter.store import Store
from exporter.tablecheck import check_table

END = 1_700_006_400
DAY = 86400


def _ar1(rng: np.random.Generator, n: int, sd: float, phi: float = 0.9) -> np.ndarray:
    z = np.empty(n)
    z[0] = rng.normal(0, sd)
    for i in range(1, n):
        z[i] = phi * z[i - 1] + rng.normal(0, sd * np.sqrt(1 - phi**2))
    return z


def _node(name: str, kind: str, *, cpus: int | None, seed: int) -> dict:
    """A day of one 8-CPU node: 8 calm hours (CPU 40 %, load ~0.9 x busy CPUs), then 16
    hours saturated (CPU 97 %, load 24) or I/O-bound (CPU 30 %, iowait 40 %, load 40)."""
    rng = np.random.default_rng(seed)
    n = DAY // 30 - 1
    t = END - DAY + 30 * np.arange(1, n + 1) + rng.integers(-3, 4, n)
    late = t > END - 16 * 3600
    cpu = np.where(late, 97.0 if kind == "saturated" else 30.0, 40.0) + _ar1(rng, n, 1.0)
    iowait = np.where(late & (kind == "io"), 40.0, 1.5) + _ar1(rng, n, 0.5)
    load = np.where(late, 24.0 if kind == "saturated" else 40.0, 0.9 * 8 * 0.4)
    load = np.clip(load * (1 + _ar1(rng, n, 0.05)), 0, None)
    cpu, iowait = np.clip(cpu, 0, 100), np.clip(iowait, 0, 100)
    keep = rng.random(n) > 0.02
    rows = [
        (
            int(t[i]),
            name,
            True,
            float(cpu[i]),
            float(iowait[i]),
            None if i % 37 == 0 else float(load[i]),
            cpus,
        )
        for i in range(n)
        if keep[i]
    ]
    moderate = keep & (cpu >= 20) & (cpu <= 75) & (iowait < 5) & (np.arange(n) % 37 != 0)
    old = keep & (cpu > 20) & (np.arange(n) % 37 != 0)
    return {
        "rows": rows,
        "estimate": snap_cpu_count(float(np.median(load[moderate] / (cpu[moderate] / 100)))),
        "old_estimate": snap_cpu_count(float(np.median(load[old] / (cpu[old] / 100)))),
    }


def _load(dsn: str, rows: list[tuple], *, column: bool) -> None:
    with Store(dsn) as s:
        init_table(s)
    with psycopg.connect(dsn) as conn:
        if not column:
            conn.execute("ALTER TABLE monitor_samples_ring DROP COLUMN cpu_count")
            rows = [r[:-1] for r in rows]
        cols = "sample_time, node_name, node_flag, cpu_total_pct, cpu_iowait_pct, load_1m"
        cols += ", cpu_count" if column else ""
        marks = ", ".join(["%s"] * len(rows[0]))
        conn.cursor().executemany(
            f"INSERT INTO monitor_samples_ring ({cols}) VALUES ({marks})", rows
        )


@pytest.fixture
def nodes() -> dict:
    return {
        "sat": _node("sat", "saturated", cpus=8, seed=1),
        "io": _node("io", "io", cpus=8, seed=2),
    }


def _cpus(dsn: str) -> dict:
    with PerformanceAnalyzer(dsn) as a:
        return {n["node_name"]: (n["cpus"], n["source"]) for n in a.run("cpus", now=END)["nodes"]}


def test_the_column_gives_the_count(fresh_dsn, nodes):
    _load(fresh_dsn, nodes["sat"]["rows"] + nodes["io"]["rows"], column=True)
    assert _cpus(fresh_dsn) == {"sat": (8, "column"), "io": (8, "column")}


def test_without_the_column_the_estimate_ignores_saturated_and_io_bound_samples(fresh_dsn, nodes):
    # the old ratio over every sample above 20 % CPU reads the run queue and the I/O waiters
    assert nodes["sat"]["old_estimate"] == 24
    assert nodes["io"]["old_estimate"] >= 48
    assert nodes["sat"]["estimate"] == nodes["io"]["estimate"] == 8
    _load(fresh_dsn, nodes["sat"]["rows"] + nodes["io"]["rows"], column=False)
    assert _cpus(fresh_dsn) == {"sat": (8, "estimate"), "io": (8, "estimate")}
    with PerformanceAnalyzer(fresh_dsn) as a:
        result = a.emergency_health_check(now=END)
    load = next(c for c in result["threats"] if c["node_name"] == "sat" and c["check"] == "load")
    assert load["value"] == pytest.approx(24 / 8, rel=0.1)  # the load check sees saturation
    assert load["level"] >= 2


def test_an_idle_vm_gets_no_estimate_and_config_wins(fresh_dsn):
    rng = np.random.default_rng(5)
    n = DAY // 60 - 1
    t = END - DAY + 60 * np.arange(1, n + 1) + rng.integers(-5, 6, n)
    cpu = np.clip(4 + _ar1(rng, n, 2.0), 0.1, 100)  # a 2-vCPU VM, idle all day
    load = np.clip(0.3 + _ar1(rng, n, 0.2), 0, None)
    _load(
        fresh_dsn,
        [(int(t[i]), "vm", True, float(cpu[i]), 0.5, float(load[i]), None) for i in range(n)],
        column=True,
    )
    assert _cpus(fresh_dsn) == {"vm": (None, None)}
    with PerformanceAnalyzer(fresh_dsn, cpu_count=2) as a:
        served = a.run("cpus", now=END)["nodes"]
    assert served == [{"node_name": "vm", "cpus": 2, "source": "config"}]


def test_db_check_says_what_the_column_gives_and_warns_about_names(fresh_dsn, caplog):
    rows = [
        (END - 60 * i, name, True, 50.0, 1.0, 4.0, None)
        for i in range(5)
        for name in ("Node-A", "node-a", "node-a ", "node-b")
    ]
    _load(fresh_dsn, rows, column=False)
    with Store(fresh_dsn) as s:
        report = check_table(s, now=END)
    assert report.usable
    assert any('optional column "cpu_count" is absent' in n for n in report.notes)
    clash = [f.message for f in report.findings if "differ only in case" in f.message]
    assert len(clash) == 1 and "'Node-A', 'node-a', 'node-a '" in clash[0]
    with caplog.at_level(logging.WARNING), PerformanceAnalyzer(fresh_dsn) as a:
        first = a.run("cpus", now=END)
        a.run("cpus", now=END)
    assert first["name_clashes"] == [["Node-A", "node-a", "node-a "]]
    warned = [r for r in caplog.records if "differ only in case" in r.getMessage()]
    assert len(warned) == 1  # once per process


def test_usable_cpus_reads_the_cgroup_quota(tmp_path: Path):
    proc, sys_root = tmp_path / "proc", tmp_path / "sys"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text("0::/kubepods/pod1/ctr\n")
    group = sys_root / "fs" / "cgroup" / "kubepods" / "pod1" / "ctr"
    group.mkdir(parents=True)
    (group / "cpu.max").write_text("max 100000\n")
    (group.parent / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs on the pod
    assert usable_cpus(proc, sys_root) == min(2, len(__import__("os").sched_getaffinity(0)))
    (group.parent / "cpu.max").write_text("max 100000\n")
    assert usable_cpus(proc, sys_root) == len(__import__("os").sched_getaffinity(0))


@pytest.mark.parametrize("column", [True, False])
def test_the_sampler_writes_the_count_when_the_table_has_the_column(fresh_dsn, column):
    from exporter.sampler import write_rows

    with Store(fresh_dsn) as s:
        init_table(s)
        if not column:
            with s.write() as cur:
                cur.execute("ALTER TABLE monitor_samples_ring DROP COLUMN cpu_count")
        row = {"sample_time": END, "node_name": "h", "node_flag": True, "cpu_count": 6}
        assert write_rows(s, [row]) == 1  # a table without the column still takes the row
    with psycopg.connect(fresh_dsn) as conn:
        cur = conn.execute("SELECT * FROM monitor_samples_ring")
        got = cur.fetchall()
        names = [d.name for d in cur.description or ()]
    assert len(got) == 1
    if column:
        assert got[0][names.index("cpu_count")] == 6
