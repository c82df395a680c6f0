"""The host sampler: exact values from a fake /proc and /sys with known counters, sane values
from this machine's own /proc, and rows that reach PostgreSQL even across an outage."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo
import pytest
from psycopg import sql

from exporter.sampler import (
    HostSampler,
    PendingRows,
    Snapshot,
    next_tick,
    run,
    select_disks,
    select_interfaces,
    write_rows,
)
from exporter.schema import COLUMN_NAMES, HOST_FACTS, NODE_METRICS, OPTIONAL_COLUMNS, init_table
from exporter.store import Store, StoreError

MIB = 1 << 20
DOCKER_ID = "a1" * 32
KUBE_ID = "b2" * 32
PODMAN_ID = "c3" * 32
LATE_ID = "d4" * 32
WALL = 1_700_000_000


# --------------------------------------------------------------------------- a fake host


@dataclass
class HostState:
    """Counters of one moment on the fake host; `later()` makes the second moment."""

    cpu: tuple[int, ...] = (100, 0, 50, 800, 50, 0, 0, 0, 0, 0)
    ctxt: int = 1_000
    sda: tuple[int, int] = (10_000, 20_000)  # sectors read, written
    nvme: tuple[int, int] = (5_000, 0)
    partitions: tuple[int, int] = (10_000, 20_000)  # sda1 and nvme0n1p1: ignored
    eth0: tuple[int, ...] = (10 * MIB, 10, 20, 5 * MIB, 1, 2)  # rx bytes errs drops, tx ...
    docker0: tuple[int, ...] = (50 * MIB, 0, 0, 50 * MIB, 0, 0)  # virtual: ignored
    containers: dict[str, tuple[int, int]] = field(
        default_factory=lambda: {DOCKER_ID: (1_000_000, 100 * MIB), KUBE_ID: (0, 20 * MIB)}
    )
    temps: tuple[str, ...] = ("45000", "61500", "garbage")


def later(state: HostState) -> HostState:
    """Two seconds on: 1000 jiffies (400 busy, 100 iowait), 5000 context switches, 2 MiB read
    and 2 MiB written on whole disks, 3 MiB in / 1 MiB out on eth0, 4 rx errors, 6 rx drops,
    2 CPU-seconds in the docker container (25 % of 4 CPUs)."""
    c = state.cpu
    return HostState(
        cpu=(c[0] + 300, c[1], c[2] + 100, c[3] + 500, c[4] + 100, *c[5:]),
        ctxt=state.ctxt + 5_000,
        sda=(state.sda[0] + 2048, state.sda[1] + 4096),
        nvme=(state.nvme[0] + 2048, state.nvme[1]),
        partitions=(state.partitions[0] + 999_999, state.partitions[1] + 999_999),
        eth0=(
            state.eth0[0] + 3 * MIB,
            state.eth0[1] + 4,
            state.eth0[2] + 6,
            state.eth0[3] + 1 * MIB,
            state.eth0[4],
            state.eth0[5],
        ),
        docker0=tuple(v + 999 * MIB for v in state.docker0),
        containers={
            DOCKER_ID: (state.containers[DOCKER_ID][0] + 2_000_000, 100 * MIB),
            KUBE_ID: (state.containers[KUBE_ID][0] + 400_000, 30 * MIB),
            LATE_ID: (5_000_000, MIB),  # started between the reads: no row yet
        },
        temps=state.temps,
    )


def write_host(root: Path, s: HostState) -> tuple[Path, Path, Path]:
    """Write /proc, /sys and /var/lib/docker for state `s` under root."""
    proc, sys, docker = root / "proc", root / "sys", root / "docker"
    files: dict[str, str] = {
        "proc/stat": (
            "cpu  "
            + " ".join(map(str, s.cpu))
            + "\n"
            + "".join(f"cpu{i} 1 2 3 4 5 6 7 8 0 0\n" for i in range(4))
            + "intr 12345 0 0\n"
            + f"ctxt {s.ctxt}\nbtime 1699990000\nprocesses 42\n"
        ),
        "proc/meminfo": (
            "MemTotal:       16777216 kB\nMemFree:         1000000 kB\n"
            "MemAvailable:    4194304 kB\nSwapTotal:       2097152 kB\n"
            "SwapFree:        1048576 kB\n"
        ),
        "proc/loadavg": "1.50 1.20 0.90 3/456 7890\n",
        "proc/diskstats": "".join(
            f"   8 {minor} {name} 1 0 {r} 0 1 0 {w} 0 0 0 0 0 0 0 0 0 0\n"
            for minor, name, (r, w) in [
                (0, "sda", s.sda),
                (1, "sda1", s.partitions),
                (2, "nvme0n1", s.nvme),
                (3, "nvme0n1p1", s.partitions),
                (4, "loop0", s.partitions),
                (5, "dm-0", s.partitions),
            ]
        ),
        "proc/net/dev": (
            "Inter-|   Receive                            |  Transmit\n"
            " face |bytes packets errs drop fifo frame compressed multicast|bytes ...\n"
            + "".join(
                f"{name:>6}: {v[0]} 7 {v[1]} {v[2]} 0 0 0 0 {v[3]} 7 {v[4]} {v[5]} 0 0 0 0\n"
                for name, v in [("lo", (999 * MIB,) * 6), ("eth0", s.eth0), ("docker0", s.docker0)]
            )
        ),
        "sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory pids\n",
        f"docker/containers/{DOCKER_ID}/config.v2.json": json.dumps({"Name": "/web"}),
    }
    for i, temp in enumerate(s.temps):
        files[f"sys/class/thermal/thermal_zone{i}/temp"] = temp + "\n"
    cg = "sys/fs/cgroup"
    groups = {
        DOCKER_ID: f"{cg}/system.slice/docker-{DOCKER_ID}.scope",
        KUBE_ID: f"{cg}/kubepods.slice/kubepods-burstable.slice/"
        f"kubepods-burstable-pod1.slice/cri-containerd-{KUBE_ID}.scope",
        LATE_ID: f"{cg}/machine.slice/libpod-{LATE_ID}.scope",
    }
    for cid, (usage, rss) in s.containers.items():
        files[f"{groups[cid]}/cpu.stat"] = f"usage_usec {usage}\nuser_usec 1\nsystem_usec 1\n"
        if cid == KUBE_ID:
            files[f"{groups[cid]}/memory.current"] = f"{rss}\n"  # no memory.stat: fallback
        else:
            files[f"{groups[cid]}/memory.stat"] = f"anon {rss}\nfile 12345678\n"
    # conmon's scope is not a container; a service is not a container either
    files[f"{cg}/machine.slice/libpod-conmon-{PODMAN_ID}.scope/cpu.stat"] = "usage_usec 9\n"
    files[f"{cg}/system.slice/sshd.service/cpu.stat"] = "usage_usec 9\n"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for disk in ("sda", "nvme0n1", "loop0", "dm-0"):  # /sys/block lists whole devices
        (sys / "block" / disk).mkdir(parents=True, exist_ok=True)
    for nic in ("lo", "docker0"):
        (sys / "devices" / "virtual" / "net" / nic).mkdir(parents=True, exist_ok=True)
    return proc, sys, docker


def fake_sampler(root: Path, monos: list[float], walls: list[float]) -> HostSampler:
    proc, sys, docker = root / "proc", root / "sys", root / "docker"
    return HostSampler(
        "node-a",
        proc,
        sys,
        docker_root=docker,
        clock=iter(monos).__next__,
        wall_clock=iter(walls).__next__,
    )


def two_reads(tmp_path: Path, first: HostState, second: HostState) -> list[dict[str, Any]]:
    sampler = fake_sampler(tmp_path, [100.0, 102.0], [WALL + 0.7, WALL + 2.9])
    write_host(tmp_path, first)
    a = sampler.read()
    write_host(tmp_path, second)
    b = sampler.read()
    return sampler.rows(a, b)


# --------------------------------------------------------------------------- exact values


def test_node_row_from_known_counters(tmp_path: Path) -> None:
    first = HostState()
    node, *_ = two_reads(tmp_path, first, later(first))
    assert set(node) <= set(COLUMN_NAMES) | {c.name for c in OPTIONAL_COLUMNS}
    # the fake tree has no mounts and no /proc/pressure: those facts are NULL, not guessed
    assert [node[c.name] for c in HOST_FACTS] == [None] * len(HOST_FACTS)
    assert set(NODE_METRICS) <= set(node)
    assert node["sample_time"] == WALL + 2
    assert node["node_name"] == "node-a"
    assert node["node_flag"] is True and node["container_name"] is None
    assert node["cpu_total_pct"] == pytest.approx(40.0)
    assert node["cpu_iowait_pct"] == pytest.approx(10.0)
    assert node["mem_total_mb"] == 16384.0
    assert node["mem_available_mb"] == 4096.0
    assert node["swap_used_mb"] == 1024.0
    assert node["load_1m"] == 1.5
    assert node["temperature_c"] == 61.5
    assert node["ctx_switches_s"] == pytest.approx(2500.0)
    # sda 1 MiB + nvme 1 MiB read, sda 2 MiB written, over 2 s; partitions, loop, dm ignored
    assert node["disk_read_mb_s"] == pytest.approx(1.0)
    assert node["disk_write_mb_s"] == pytest.approx(1.0)
    # eth0 only: lo and the virtual docker0 bridge are left out
    assert node["net_rx_mb_s"] == pytest.approx(1.5)
    assert node["net_tx_mb_s"] == pytest.approx(0.5)
    assert node["net_rx_errs_s"] == pytest.approx(2.0)
    assert node["net_rx_drops_s"] == pytest.approx(3.0)
    assert node["net_tx_errs_s"] == 0.0
    assert node["net_tx_drops_s"] == 0.0


def test_container_rows_from_known_counters(tmp_path: Path) -> None:
    first = HostState()
    _, *containers = two_reads(tmp_path, first, later(first))
    by_name = {r["container_name"]: r for r in containers}
    # docker's own name; kubernetes by short id; the podman container that appeared between
    # the reads, conmon's scope and the sshd service give no row
    assert set(by_name) == {"web", KUBE_ID[:12]}
    web = by_name["web"]
    assert web["node_flag"] is False and web["node_name"] == "node-a"
    assert web["sample_time"] == WALL + 2
    assert web["cpu_total_pct"] == pytest.approx(25.0)  # 2 CPU-s in 2 s of 4 CPUs
    assert web["c_rss_mb"] == 100.0  # memory.stat anon, not the page cache
    kube = by_name[KUBE_ID[:12]]
    assert kube["cpu_total_pct"] == pytest.approx(5.0)  # 0.4 CPU-s / (2 s * 4)
    assert kube["c_rss_mb"] == 30.0  # memory.current fallback
    for row in containers:
        assert set(row) <= set(COLUMN_NAMES)


def test_counters_going_back_give_null_not_negative(tmp_path: Path) -> None:
    first = HostState()
    second = later(first)
    second.ctxt = 10  # reset (reboot-like)
    second.sda = (second.sda[0], 5)  # one disk's write counter wrapped
    second.eth0 = (1, *second.eth0[1:])  # the NIC's rx bytes were reset
    second.containers[DOCKER_ID] = (10, 100 * MIB)  # container restarted in place
    node, *containers = two_reads(tmp_path, first, second)
    assert node["ctx_switches_s"] is None
    assert node["disk_write_mb_s"] is None
    assert node["disk_read_mb_s"] == pytest.approx(1.0)  # the other counter is fine
    assert node["net_rx_mb_s"] is None
    assert node["net_tx_mb_s"] == pytest.approx(0.5)
    web = next(r for r in containers if r["container_name"] == "web")
    assert web["cpu_total_pct"] is None
    assert web["c_rss_mb"] == 100.0  # a gauge: no delta involved


def test_cpu_counters_going_back(tmp_path: Path) -> None:
    first = HostState()
    second = later(first)
    c = second.cpu
    second.cpu = (c[0], c[1], c[2], c[3], first.cpu[4] - 10, *c[5:])  # iowait steps back
    node, *_ = two_reads(tmp_path, first, second)
    assert node["cpu_iowait_pct"] is None
    assert node["cpu_total_pct"] is None  # its total is skewed too
    second.cpu = tuple(v // 2 for v in first.cpu)  # all of /proc/stat went back
    node, *_ = two_reads(tmp_path, first, second)
    assert node["cpu_total_pct"] is None and node["cpu_iowait_pct"] is None


def test_missing_sources_are_null(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "sys").mkdir()
    sampler = fake_sampler(tmp_path, [1.0, 2.0], [WALL, WALL + 1])
    node, *containers = sampler.rows(sampler.read(), sampler.read())
    assert containers == []  # no cgroup v2 hierarchy
    assert node["node_flag"] is True and node["sample_time"] == WALL + 1
    assert all(node[m] is None for m in NODE_METRICS)


def test_no_thermal_zone_gives_null_temperature(tmp_path: Path) -> None:
    first = HostState(temps=())
    node, *_ = two_reads(tmp_path, first, later(first))
    assert node["temperature_c"] is None


def test_sample_primes_then_returns_rows(tmp_path: Path) -> None:
    write_host(tmp_path, HostState())
    sampler = fake_sampler(tmp_path, [1.0, 3.0], [WALL, WALL + 2])
    assert sampler.sample() == []
    write_host(tmp_path, later(HostState()))
    rows = sampler.sample()
    assert rows[0]["cpu_total_pct"] == pytest.approx(40.0)


def test_disk_and_interface_selection(tmp_path: Path) -> None:
    no_sys = tmp_path / "nothing"
    names = ["sda", "sda1", "nvme0n1", "nvme0n1p2", "mmcblk0", "mmcblk0p1", "loop3", "dm-0"]
    assert select_disks(names, no_sys) == ["mmcblk0", "nvme0n1", "sda"]  # names alone
    assert select_disks(["loop0", "dm-0", "dm-1", "zram0"], no_sys) == ["dm-0", "dm-1"]
    assert select_disks(["loop0", "ram0"], no_sys) == []
    assert select_interfaces(["lo", "eth0", "veth1"], no_sys) == ["eth0", "veth1"]
    virtual = tmp_path / "sys" / "devices" / "virtual" / "net"
    for nic in ("lo", "veth1", "br0"):
        (virtual / nic).mkdir(parents=True)
    assert select_interfaces(["lo", "eth0", "veth1", "br0"], tmp_path / "sys") == ["eth0"]
    # inside a container eth0 is itself a veth: then the virtual ones are all there is
    (virtual / "eth0").mkdir()
    assert select_interfaces(["lo", "eth0"], tmp_path / "sys") == ["eth0"]


# --------------------------------------------------------------------------- this machine


def test_real_host_values_in_range() -> None:
    sampler = HostSampler()
    first = sampler.read()
    time.sleep(0.2)
    node, *containers = sampler.rows(first, sampler.read())
    assert node["node_name"] == socket.gethostname()
    assert abs(node["sample_time"] - time.time()) < 5
    meminfo = dict(
        (line.split(":")[0], int(line.split()[1]))
        for line in Path("/proc/meminfo").read_text().splitlines()
    )
    assert node["mem_total_mb"] == meminfo["MemTotal"] / 1024
    assert 0 < node["mem_available_mb"] <= node["mem_total_mb"]
    assert 0 <= node["swap_used_mb"] <= meminfo["SwapTotal"] / 1024
    for metric in ("cpu_total_pct", "cpu_iowait_pct"):  # None only if iowait stepped back
        assert node[metric] is None or 0 <= node[metric] <= 100
    assert node["load_1m"] >= 0
    assert node["ctx_switches_s"] > 0
    for metric in NODE_METRICS:
        value = node[metric]
        assert value is None or value >= 0, metric
    assert node["temperature_c"] is None or 0 < node["temperature_c"] < 150
    for row in containers:
        assert row["cpu_total_pct"] is None or 0 <= row["cpu_total_pct"] <= 100


# --------------------------------------------------------------------------- writing


def test_write_rows_refuses_unknown_columns() -> None:
    with pytest.raises(ValueError, match="bogus"):
        write_rows(Store("host=127.0.0.1 dbname=x"), [{"sample_time": 1, "bogus": 2}])
    assert write_rows(Store("host=127.0.0.1 dbname=x"), []) == 0  # nothing to do: no connection


def test_pending_rows_bounded_by_age_and_count(caplog: pytest.LogCaptureFixture) -> None:
    pending = PendingRows(max_age=3600, max_rows=5)
    pending.add([{"sample_time": WALL - 4000}, {"sample_time": WALL - 100}], now=WALL)
    assert [r["sample_time"] for r in pending.rows] == [WALL - 100]
    pending.add([{"sample_time": WALL + i} for i in range(6)], now=WALL + 5)
    assert [r["sample_time"] for r in pending.rows] == [WALL + i for i in range(1, 6)]
    assert pending.dropped == 3
    assert "dropped" in caplog.text


def test_next_tick_is_aligned() -> None:
    assert next_tick(119.0, 60) == 120
    assert next_tick(120.0, 60) == 180
    assert next_tick(119.5, 60, 1.0) == 180  # too close to 120 for a first delta
    assert next_tick(10.05, 0.2) == pytest.approx(10.2)


def count_rows(dsn: str) -> list[dict[str, Any]]:
    with Store(dsn) as store, store.read() as cur:
        cur.execute(sql.SQL("SELECT * FROM {} ORDER BY sample_time").format(store.table))
        return cur.fetchall()


def test_run_writes_rows_into_postgres(fresh_dsn: str) -> None:
    seen: list[list[dict[str, Any]]] = []
    with Store(fresh_dsn) as store:
        init_table(store)
        written = run(store, interval=0.2, count=2, node_name="sampler-test", on_rows=seen.append)
    assert len(seen) == 2
    assert written == sum(len(rows) for rows in seen)
    rows = [r for r in count_rows(fresh_dsn) if r["node_flag"]]
    assert len(rows) == 2
    assert {r["node_name"] for r in rows} == {"sampler-test"}
    assert all(r["container_name"] is None for r in rows)
    assert all(abs(r["sample_time"] - time.time()) < 10 for r in rows)
    for row in rows:
        assert 0 <= row["cpu_total_pct"] <= 100
        assert 0 < row["mem_available_mb"] <= row["mem_total_mb"]
        assert row["load_1m"] >= 0


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_outage_keeps_rows_and_delivers_them_later(
    fresh_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [
        {"sample_time": WALL + i, "node_name": "n", "node_flag": True, "cpu_total_pct": 1.0}
        for i in range(3)
    ]
    pending = PendingRows()
    pending.add(rows, now=WALL + 3)
    dead = Store(f"host=127.0.0.1 port={closed_port()} dbname=x user=x", connect_timeout=1)
    with caplog.at_level(logging.WARNING, logger="exporter.sampler"):
        assert pending.flush(dead) == 0
    assert len(pending) == 3
    warnings = [r for r in caplog.records if r.name == "exporter.sampler"]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    assert "cannot reach PostgreSQL" in warnings[0].getMessage()
    with Store(fresh_dsn) as store:
        init_table(store)
        assert pending.flush(store) == 3
    assert len(pending) == 0
    assert [r["sample_time"] for r in count_rows(fresh_dsn)] == [WALL, WALL + 1, WALL + 2]


class FlakyStore:
    """A store whose first `failures` writes fail as an unreachable database would."""

    def __init__(self, store: Store, failures: int) -> None:
        self.store = store
        self.table = store.table
        self.failures = failures

    @contextmanager
    def write(self) -> Iterator[Any]:
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("cannot reach PostgreSQL at test: connection refused")
        with self.store.write() as cur:
            yield cur


def test_run_survives_a_database_outage(fresh_dsn: str) -> None:
    with Store(fresh_dsn) as store:
        init_table(store)
        flaky = FlakyStore(store, failures=2)
        pending = PendingRows()
        written = run(flaky, interval=0.2, count=3, node_name="flaky", pending=pending)  # type: ignore[arg-type]
    node_rows = [r for r in count_rows(fresh_dsn) if r["node_flag"]]
    assert len(node_rows) == 3  # the two refused intervals were delivered with the third
    assert written == len(count_rows(fresh_dsn)) and len(pending) == 0
    # (sub-second intervals may share an integer sample_time; the CLI's are whole seconds)
    times = [r["sample_time"] for r in node_rows]
    assert times == sorted(times) and abs(times[-1] - time.time()) < 10


def test_hybrid_cgroups_and_cgroupfs_layout(tmp_path: Path) -> None:
    """A hybrid host (v2 in /sys/fs/cgroup/unified, memory still v1) with docker's cgroupfs
    driver (/docker/<id>) and no readable docker state: short id, v1 rss."""
    cg = tmp_path / "sys" / "fs" / "cgroup"
    group = cg / "unified" / "docker" / DOCKER_ID
    group.mkdir(parents=True)
    (cg / "unified" / "cgroup.controllers").write_text("\n")
    memory = cg / "memory" / "docker" / DOCKER_ID
    memory.mkdir(parents=True)
    (memory / "memory.stat").write_text(f"cache 5\nrss 7\ntotal_cache 5\ntotal_rss {8 * MIB}\n")
    (tmp_path / "proc").mkdir()
    sampler = fake_sampler(tmp_path, [0.0, 1.0], [WALL, WALL + 1])
    (group / "cpu.stat").write_text("usage_usec 100\n")
    first = sampler.read()
    (group / "cpu.stat").write_text("usage_usec 500100\n")
    _, row = sampler.rows(first, sampler.read())
    assert row["container_name"] == DOCKER_ID[:12]
    assert row["c_rss_mb"] == 8.0
    assert row["cpu_total_pct"] == pytest.approx(50.0 / (os.cpu_count() or 1))  # no /proc/stat


def test_snapshot_is_plain_data(tmp_path: Path) -> None:
    write_host(tmp_path, HostState())
    snap = fake_sampler(tmp_path, [1.0], [WALL]).read()
    assert isinstance(snap, Snapshot)
    assert snap.ncpu == 4
    assert sorted(snap.disks) == ["nvme0n1", "sda"]
    assert sorted(snap.nets) == ["eth0"]
    assert {c.name for c in snap.containers.values()} == {"web", KUBE_ID[:12]}


# --------------------------------------------------------------------------- hardening


def wait_for_rows(dsn: str, at_least: int, timeout: float = 60.0) -> int:
    """The table's row count once it holds `at_least` rows (a started sampler has written)."""
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(dsn) as conn:
            count = conn.execute("SELECT count(*) FROM monitor_samples_ring").fetchone()[0]
        if count >= at_least or time.monotonic() > deadline:
            assert count >= at_least, f"{count} rows after {timeout} s"
            return int(count)
        time.sleep(0.2)


def hold_lock(dsn: str, seconds: float, locked: threading.Event) -> None:
    """An ACCESS EXCLUSIVE lock on the samples table for `seconds`, as a long migration."""
    with psycopg.connect(dsn) as conn, conn.transaction():
        conn.execute("LOCK TABLE monitor_samples_ring IN ACCESS EXCLUSIVE MODE")
        locked.set()
        time.sleep(seconds)


@pytest.mark.slow
def test_a_table_lock_loses_no_sample(fresh_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    """Sampling keeps its clock while the writer waits for a lock held 5 s; everything is
    written after the release, and the per-sample log line counted the queue meanwhile."""
    interval, count, lock_seconds = 0.5, 18, 5.0
    with Store(fresh_dsn) as store:
        init_table(store)
        locked = threading.Event()
        holder = threading.Thread(target=hold_lock, args=(fresh_dsn, lock_seconds, locked))
        seen: list[list[dict[str, Any]]] = []
        ticks: list[float] = []

        def on_rows(rows: list[dict[str, Any]]) -> None:
            ticks.append(time.monotonic())
            seen.append(rows)
            if len(seen) == 2:
                holder.start()
                assert locked.wait(5)

        with caplog.at_level(logging.INFO, logger="exporter.sampler"):
            written = run(store, interval=interval, count=count, node_name="locked",
                          on_rows=on_rows)  # fmt: skip
        holder.join()
    assert len(seen) == count
    # the readings kept their clock: no gap near the lock's length
    assert max(b - a for a, b in itertools.pairwise(ticks)) < 3 * interval
    assert written == sum(len(rows) for rows in seen) == len(count_rows(fresh_dsn))
    assert len([r for r in count_rows(fresh_dsn) if r["node_flag"]]) == count
    queued = [
        int(m.group(1))
        for r in caplog.records
        if (m := re.search(r", (\d+) queued", r.getMessage()))
    ]
    # while the lock was held the queue grew by a sample's rows each interval
    assert max(queued) >= int(lock_seconds / interval) - 2


def run_sample_cli(dsn: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter.cli", "sample", "--dsn", dsn, "--interval", "1",
         "--node-name", "cli", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_no_insert_right_is_one_sentence_and_exit_1(fresh_dsn: str) -> None:
    role = f"sampler_ro_{os.getpid()}"
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} LOGIN")
    try:
        with Store(fresh_dsn) as store:
            init_table(store)
        with psycopg.connect(fresh_dsn, autocommit=True) as conn:
            conn.execute(f"GRANT SELECT ON monitor_samples_ring TO {role}")
        dsn = psycopg.conninfo.make_conninfo(fresh_dsn, user=role)
        started = time.monotonic()
        done = run_sample_cli(dsn, "--give-up-after", "2", "--count", "30")
        elapsed = time.monotonic() - started
        lines = done.stderr.strip().splitlines()
        final = lines[-1]
        assert done.returncode == 1, done.stderr
        assert final.startswith("perf-analyzer: samples cannot be written (permission denied")
        assert "Traceback" not in done.stderr
        assert elapsed < 15  # gave up after the 2 s retry, not after 30 samples
    finally:
        with psycopg.connect(fresh_dsn, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


@pytest.mark.slow
def test_missing_table_is_one_sentence_and_exit_1(fresh_dsn: str) -> None:
    done = run_sample_cli(fresh_dsn, "--give-up-after", "2", "--count", "30")
    assert done.returncode == 1, done.stderr
    final = done.stderr.strip().splitlines()[-1]
    assert final.startswith(
        'perf-analyzer: samples cannot be written (table "monitor_samples_ring" does'
    )
    assert "db init" in final and "Traceback" not in done.stderr


@pytest.mark.slow
def test_sigterm_flushes_the_queue_within_the_bound(fresh_dsn: str) -> None:
    """SIGTERM during a held lock: the sampler waits at most --flush-timeout for the
    writer, then exits 0 with what it could not write counted in a warning; once the lock is
    gone a second SIGTERM finds nothing queued."""
    with Store(fresh_dsn) as store:
        init_table(store)
    cmd = [sys.executable, "-m", "exporter.cli", "sample", "--dsn", fresh_dsn, "--interval",
           "1", "--node-name", "term", "--flush-timeout", "2"]  # fmt: skip
    locked = threading.Event()
    holder = threading.Thread(target=hold_lock, args=(fresh_dsn, 8.0, locked))
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    wait_for_rows(fresh_dsn, 1)  # started, its SIGTERM handler in place, however slow the start
    holder.start()
    assert locked.wait(5)
    time.sleep(2.5)
    proc.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    _, stderr = proc.communicate(timeout=30)
    took = time.monotonic() - stopped
    holder.join()
    assert proc.returncode == 0, stderr
    assert took < 2 + 2  # the flush bound plus the interpreter's exit
    assert re.search(r"stopping with \d+ samples not written after 2 s", stderr), stderr
    # without a lock everything queued is written before the exit
    written = wait_for_rows(fresh_dsn, 0)
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    wait_for_rows(fresh_dsn, written + 1)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "not written" not in stderr, stderr
