"""Host facts: disk and inode forecasts, the disk-full emergency, the sampler's readers, and
tables without the optional columns."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from psycopg import sql

from exporter import PerformanceAnalyzer
from exporter.analyses.capacity import ANALYSIS
from exporter.analyses.unit import ResultView
from exporter.config import CapacityConfig, Config, from_dict
from exporter.sampler import data_mounts, filesystem_use, parse_psi
from exporter.schema import HOST_FACTS, init_table
from exporter.store import Store
from exporter.tablecheck import check_table

DAY = 86400
END = 1_790_000_000 // DAY * DAY + 13 * 3600 + 1234  # mid-afternoon UTC, off any grid

# The simulated filesystem: fills at RATE of its blocks per day, is USED_AT_END full at END,
# and a daily churn (logs written through the night, rotated in the morning) adds up to
# CHURN at 02:00 UTC. Inodes fill at INODE_RATE from INODES_AT_END.
RATE, USED_AT_END, CHURN, CHURN_HOUR = 0.005, 0.80, 0.003, 2.0
INODE_RATE, INODES_AT_END = 0.003, 0.55
NOISE_SD, NOISE_PHI = 0.0005, 0.9  # AR(1) noise of the used share, per 5-minute sample


def _fill_rows(node: str, days: float, seed: int) -> list[tuple]:
    """5-minute node rows of a filling filesystem as a sampler writes them: jitter of up to
    +-20 s, 3 % missed, 1 % sent twice, 2 % with NULL host facts, AR(1) noise."""
    rng = np.random.default_rng(seed)
    grid = np.arange(END - int(days * DAY), END + 1, 300, dtype=np.int64)
    t = grid + rng.integers(-20, 21, grid.size)
    t = t[(rng.random(t.size) > 0.03) & (t <= END)]
    e = rng.standard_normal(t.size)
    noise = np.empty(t.size)
    noise[0] = e[0]
    for i in range(1, t.size):
        noise[i] = NOISE_PHI * noise[i - 1] + np.sqrt(1 - NOISE_PHI**2) * e[i]
    churn = CHURN * np.cos(2 * np.pi * ((t % DAY) / 3600.0 - CHURN_HOUR) / 24.0)
    disk = USED_AT_END + RATE * (t - END) / DAY + churn + NOISE_SD * noise
    inodes = INODES_AT_END + INODE_RATE * (t - END) / DAY + NOISE_SD * noise
    rows = []
    for i in range(t.size):
        null = rng.random() < 0.02
        row = (int(t[i]), node, True, 30.0, None if null else float(disk[i]))
        rows.append((*row, None if null else float(inodes[i])))
        if rng.random() < 0.01:
            rows.append(rows[-1])  # a late duplicate
    return rows


def _load(dsn: str, table: str, rows: list[tuple], *, facts: bool = True) -> None:
    """Rows (sample_time, node, flag, cpu, disk, inodes) into a fresh table; without
    `facts` the table lacks every optional host-fact column (an older table)."""
    with Store(dsn, table) as store:
        init_table(store)
        with store.write() as cur:
            if not facts:
                for column in HOST_FACTS:
                    cur.execute(
                        sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(
                            store.table, sql.Identifier(column.name)
                        )
                    )
            cols = ["sample_time", "node_name", "node_flag", "cpu_total_pct"]
            cols += ["disk_used_ratio", "inodes_used_ratio"] if facts else []
            statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                store.table, sql.SQL(", ").join(map(sql.Identifier, cols))
            )
            with cur.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row[: len(cols)])


def _forecast(result: dict, node: str, resource: str) -> dict:
    found = [
        f for f in result["forecasts"] if f["node_name"] == node and f["resource_type"] == resource
    ]
    assert len(found) == 1, (node, resource, found)
    return found[0]


@pytest.fixture(scope="module")
def filling(dsn: str) -> str:
    _load(dsn, "fill", _fill_rows("filling", 30, seed=11))
    return dsn


def _truth(limit: float, level_at_end: float, rate: float, churn: float) -> float:
    """Days until the daily peak (level plus the churn's crest) reaches `limit`, by hand."""
    return (limit - (level_at_end + churn)) / rate


def test_disk_days_to_full_within_two_percent(filling: str) -> None:
    with PerformanceAnalyzer(filling, "fill") as a:
        result = a.capacity_planning_analysis(days=30, now=END)
    json.dumps(result, allow_nan=False)
    disk = _forecast(result, "filling", "disk")
    truth = _truth(0.95, USED_AT_END, RATE, CHURN)  # 29.4 days to the default P1 level
    assert disk["status"] == "exhaustion"
    assert disk["days_to_exhaustion"] == pytest.approx(truth, rel=0.02)
    assert disk["trend_per_day"] == pytest.approx(100 * RATE, rel=0.02)
    assert disk["limit"] == pytest.approx(95.0)
    low, high = disk["days_to_exhaustion_interval"]
    assert low <= truth <= high
    inodes = _forecast(result, "filling", "inodes")
    assert inodes["status"] == "exhaustion"
    inode_truth = _truth(0.95, INODES_AT_END, INODE_RATE, 0.0)  # 133 days
    assert inodes["days_to_exhaustion"] == pytest.approx(inode_truth, rel=0.02)


def test_disk_limit_is_configurable(filling: str) -> None:
    config = Config(capacity=CapacityConfig(disk_limit_ratio=1.0))
    with PerformanceAnalyzer(filling, "fill", config=config) as a:
        result = a.capacity_planning_analysis(days=30, now=END)
    disk = _forecast(result, "filling", "disk")
    assert disk["days_to_exhaustion"] == pytest.approx(
        _truth(1.0, USED_AT_END, RATE, CHURN), rel=0.02
    )


def test_disk_forecast_is_exported_with_the_capacity_metrics(filling: str) -> None:
    with PerformanceAnalyzer(filling, "fill") as a:
        result = a.capacity_planning_analysis(days=30, now=END)
    assert ANALYSIS.serve is not None
    samples = list(ANALYSIS.serve.to_samples(result, ResultView(Config(), {})))
    tte = [
        s
        for s in samples
        if s.metric == "time_to_exhaustion_seconds" and ("resource", "disk") in s.labels
    ]
    assert len(tte) == 1
    assert tte[0].value == pytest.approx(_truth(0.95, USED_AT_END, RATE, CHURN) * DAY, rel=0.02)


# --------------------------------------------------------------------------- emergency


def _recent(node: str, disk: float | None, inodes: float | None, n: int) -> list[tuple]:
    """`n` node rows 60 s apart (jittered) ending at END."""
    rng = np.random.default_rng(len(node))
    return [
        (END - 60 * i - int(rng.integers(0, 5)), node, True, 20.0, disk, inodes) for i in range(n)
    ]


@pytest.fixture(scope="module")
def full_disks(dsn: str) -> str:
    rows = [
        *_recent("full", 0.965, 0.40, 5),  # P1 disk
        *_recent("nearly", 0.92, 0.40, 5),  # P2 disk
        *_recent("files", 0.50, 0.97, 5),  # P1 inodes
        *_recent("fine", 0.60, 0.30, 5),
        *_recent("newcomer", 0.99, 0.99, 2),  # too few samples to raise anything
        *_recent("unknown", None, None, 5),  # no host facts
    ]
    _load(dsn, "full_disks", rows)
    return dsn


def _threat(result: dict, node: str, check: str) -> dict | None:
    found = [t for t in result["threats"] if t["node_name"] == node and t["check"] == check]
    return found[0] if found else None


def test_disk_full_emergency(full_disks: str) -> None:
    with PerformanceAnalyzer(full_disks, "full_disks") as a:
        result = a.emergency_health_check(now=END)
    full = _threat(result, "full", "disk")
    assert full is not None and full["priority"] == "P1-CRITICAL"
    assert full["value"] == pytest.approx(0.965) and full["threshold"] == 0.95
    assert "96.5% used" in full["message"]
    assert any(x.startswith("full: Free space") for x in result["immediate_actions"])
    nearly = _threat(result, "nearly", "disk")
    assert nearly is not None and nearly["priority"] == "P2-WARNING"
    files = _threat(result, "files", "inodes")
    assert files is not None and files["priority"] == "P1-CRITICAL"
    assert _threat(result, "files", "disk") is None
    for node in ("fine", "newcomer", "unknown"):
        assert [t for t in result["threats"] if t["node_name"] == node] == []
    assert result["status"] == "CRITICAL"
    levels = {(c["node_name"], c["check"]): c["level"] for c in result["checks"]}
    assert levels[("full", "disk")] == 3 and levels[("unknown", "disk")] == 0


def test_disk_full_levels_are_configurable(full_disks: str) -> None:
    config = from_dict({"emergency": {"disk_used_ratio": {"p3": 0.5, "p2": 0.6, "p1": 0.97}}})
    with PerformanceAnalyzer(full_disks, "full_disks", config=config) as a:
        result = a.emergency_health_check(now=END)
    full = _threat(result, "full", "disk")
    assert full is not None and full["priority"] == "P2-WARNING"


# --------------------------------------------------------------------------- older tables


def test_a_table_without_the_host_fact_columns(dsn: str) -> None:
    _load(dsn, "no_facts", _fill_rows("old", 6, seed=3), facts=False)
    with PerformanceAnalyzer(dsn, "no_facts") as a:
        capacity = a.capacity_planning_analysis(days=30, now=END)
        emergency = a.emergency_health_check(now=END)
    assert {f["resource_type"] for f in capacity["forecasts"]} == {"cpu"}
    assert emergency["status"] == "OK"
    with Store(dsn, "no_facts") as s:
        report = check_table(s, now=END)
    assert report.usable
    for column in HOST_FACTS:
        assert any(f'optional column "{column.name}" is absent' in n for n in report.notes)


# --------------------------------------------------------------------------- sampler


def test_data_mounts_keep_writable_data_filesystems_once() -> None:
    mounts = "\n".join(
        [
            "proc /proc proc rw,nosuid 0 0",
            "sysfs /sys sysfs rw 0 0",
            "tmpfs /run tmpfs rw 0 0",
            "/dev/sda1 / ext4 rw,relatime 0 0",
            "/dev/sda1 /var/lib/bind ext4 rw,relatime 0 0",  # a bind mount of the same device
            "/dev/sdb1 /data\\040disk xfs rw 0 0",
            "/dev/loop3 /snap/core/1 squashfs ro 0 0",
            "/dev/sdc1 /mnt/ro ext4 ro,relatime 0 0",
            "overlay /var/lib/docker/overlay2/a/merged overlay rw 0 0",
            "overlay /var/lib/docker/overlay2/b/merged overlay rw 0 0",
            "server:/x /nfs nfs4 rw 0 0",
            "garbage",
        ]
    )
    assert data_mounts(mounts) == [
        "/",
        "/data disk",
        "/var/lib/docker/overlay2/a/merged",
        "/var/lib/docker/overlay2/b/merged",
    ]


def test_filesystem_use_matches_statvfs(tmp_path: Path) -> None:
    st = os.statvfs(tmp_path)
    used = st.f_blocks - st.f_bfree
    use = filesystem_use([str(tmp_path), str(tmp_path / "gone")])
    assert use is not None and use.disk_mount == str(tmp_path)
    assert use.disk_used_ratio == pytest.approx(used / (used + st.f_bavail), abs=1e-3)
    if st.f_files:
        assert use.inodes_used_ratio == pytest.approx(1 - st.f_ffree / st.f_files, abs=1e-3)
    assert filesystem_use([str(tmp_path / "gone")]) is None


def test_parse_psi() -> None:
    text = (
        "some avg10=1.50 avg60=12.25 avg300=3.00 total=123456\n"
        "full avg10=0.00 avg60=4.00 avg300=0.00 total=1\n"
    )
    assert parse_psi(text) == 12.25
    assert parse_psi(None) is None
    assert parse_psi("some avg10=1 avg60=x") is None
    assert parse_psi("full avg60=3.0") is None
