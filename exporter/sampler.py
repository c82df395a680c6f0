"""Samples this Linux host (and the containers it can see) into the samples table.

Everything is read from /proc and /sys (no psutil), with both roots injectable so tests can
point them at a fake tree. Rates and CPU shares need two readings: `HostSampler.read()`
takes a raw `Snapshot` of counters and `HostSampler.rows()` turns two snapshots into table
rows. A counter that went backwards (wrap, reset, device swapped) yields NULL for that
value, never a negative rate.

`run()` is the loop behind `perf-analyzer sample`: it reads on wall-clock multiples of the
interval (so the nodes of a fleet sample in step) and hands the rows to a writer thread
through a bounded queue (`PendingRows`). A slow or refused write therefore never delays a
reading: the rows wait in the queue (counted, logged every interval) and are written when
the database takes them, so a lock or an outage loses no samples unless it outlasts the
queue. Errors that waiting cannot fix (no table, no INSERT right) stop the run after a
bounded retry.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg import sql

from .partitions import ensure_partitions_in
from .schema import COLUMN_NAMES, CPU_COUNT, OPTIONAL_COLUMNS, has_column
from .store import Store, StoreError

log = logging.getLogger(__name__)

MIB = 1024 * 1024
SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device's own size
CONTAINER_ID_LEN = 12  # as `docker ps` shows them

# /proc/stat "cpu" fields: user nice system idle iowait irq softirq steal (guest and
# guest_nice are already counted inside user and nice, so they are left out of the total).
_CPU_FIELDS = 8
_IDLE, _IOWAIT = 3, 4

# Block devices that are not disks (loop, RAM disks, compressed-RAM swap) and devices
# stacked on disks (device-mapper, md RAID), counted only when nothing else is there.
_VIRTUAL_DISK = re.compile(r"^(loop|ram|zram|nbd)\d")
_STACKED_DISK = re.compile(r"^(dm-|md)\d")
# Partitions, by name, for a /proc without a /sys/block to ask.
_PARTITION = re.compile(r"^((sd|hd|vd|xvd)[a-z]+\d+|(nvme\d+n\d+|mmcblk\d+|nbd\d+)p\d+)$")

# Container scopes of the systemd cgroup driver: docker-<id>.scope, libpod-<id>.scope
# (podman), cri-containerd-<id>.scope and crio-<id>.scope (kubernetes). The hex id right
# after the prefix keeps conmon scopes (libpod-conmon-<id>.scope) out.
_SCOPE = re.compile(r"^(docker|libpod|cri-containerd|crio)-([0-9a-f]{12,})\.scope$")
# The cgroupfs driver names the group by the bare 64-hex id (/docker/<id>, /kubepods/...).
_BARE_ID = re.compile(r"^[0-9a-f]{64}$")
_CGROUP_MAX_DEPTH = 8  # kubepods.slice/kubepods-burstable.slice/<pod>.slice/<scope> is 4


# --------------------------------------------------------------------------- snapshots


@dataclass(frozen=True)
class ContainerCounters:
    name: str
    usage_usec: int | None  # cpu.stat usage_usec, cumulative
    rss_bytes: int | None  # memory.stat anon (or memory.current), a gauge


@dataclass(frozen=True)
class NetCounters:
    rx_bytes: int
    rx_errs: int
    rx_drops: int
    tx_bytes: int
    tx_errs: int
    tx_drops: int


@dataclass(frozen=True)
class Snapshot:
    """Raw counters and gauges of one moment; rates come from two of them."""

    wall: float  # unix seconds, becomes sample_time
    mono: float  # monotonic seconds, for the interval between two snapshots
    cpu: tuple[int, ...] | None  # aggregate /proc/stat jiffies, _CPU_FIELDS of them
    ncpu: int  # CPUs listed in /proc/stat
    ctxt: int | None
    meminfo: dict[str, int]  # kB
    load_1m: float | None
    temperature_c: float | None
    disks: dict[str, tuple[int, int]]  # device -> (sectors read, sectors written)
    nets: dict[str, NetCounters]
    containers: dict[str, ContainerCounters] = field(default_factory=dict)  # by cgroup path
    cpu_count: int | None = None  # CPUs this host lets us use (`usable_cpus`)


# --------------------------------------------------------------------------- /proc readers


def _read_text(path: Path) -> str | None:
    """A file's text, or None when it is absent or unreadable: a missing source is a NULL
    column, never a failed sample."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def parse_stat(text: str | None) -> tuple[tuple[int, ...] | None, int, int | None]:
    """(aggregate cpu jiffies, number of CPUs, context switches) from /proc/stat."""
    cpu: tuple[int, ...] | None = None
    ncpu = 0
    ctxt: int | None = None
    for line in (text or "").splitlines():
        parts = line.split()
        if not parts:
            continue
        try:
            if parts[0] == "cpu":
                values = [int(v) for v in parts[1 : 1 + _CPU_FIELDS]]
                cpu = tuple(values + [0] * (_CPU_FIELDS - len(values)))  # old kernels: fewer
            elif parts[0].startswith("cpu") and parts[0][3:].isdigit():
                ncpu += 1
            elif parts[0] == "ctxt":
                ctxt = int(parts[1])
        except (ValueError, IndexError):
            continue
    return cpu, ncpu, ctxt


def parse_meminfo(text: str | None) -> dict[str, int]:
    """/proc/meminfo as {field: kB}."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key.strip()] = int(parts[0])
    return out


def parse_loadavg(text: str | None) -> float | None:
    try:
        return float((text or "").split()[0])
    except (ValueError, IndexError):
        return None


def parse_diskstats(text: str | None) -> dict[str, tuple[int, int]]:
    """Every device of /proc/diskstats as {name: (sectors read, sectors written)}."""
    out: dict[str, tuple[int, int]] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) < 10:
            continue
        try:
            out[parts[2]] = (int(parts[5]), int(parts[9]))
        except ValueError:
            continue
    return out


def parse_net_dev(text: str | None) -> dict[str, NetCounters]:
    """Every interface of /proc/net/dev (the two header lines have no colon-number form)."""
    out: dict[str, NetCounters] = {}
    for line in (text or "").splitlines():
        name, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or len(parts) < 12:
            continue
        try:
            v = [int(p) for p in parts[:12]]
        except ValueError:
            continue
        out[name.strip()] = NetCounters(v[0], v[2], v[3], v[8], v[10], v[11])
    return out


def read_temperature(sys_root: Path) -> float | None:
    """The hottest thermal zone in °C; None when the host exposes none (most VMs)."""
    hottest: float | None = None
    for zone in sorted((sys_root / "class" / "thermal").glob("thermal_zone*")):
        text = _read_text(zone / "temp")
        try:
            celsius = int((text or "").strip()) / 1000.0
        except ValueError:
            continue  # some zones answer EIO or ENODATA while their sensor sleeps
        if -60.0 < celsius < 200.0 and (hottest is None or celsius > hottest):
            hottest = celsius  # outside that range is a driver's "no reading" value
    return hottest


def select_disks(names: Iterable[str], sys_root: Path) -> list[str]:
    """Whole disks only, so a byte is counted once: partitions repeat their disk's I/O,
    loop/ram/zram are not disks, and dm-/md are stacked on disks (used only when no
    plain disk is visible, as in some containers and VMs)."""
    block = sys_root / "block"
    listed = set(os.listdir(block)) if block.is_dir() else None  # /sys/block: whole disks

    def whole(name: str) -> bool:
        if listed is not None:
            return name.replace("/", "!") in listed
        return not _PARTITION.match(name)

    candidates = [n for n in names if whole(n) and not _VIRTUAL_DISK.match(n)]
    plain = [n for n in candidates if not _STACKED_DISK.match(n)]
    return sorted(plain or candidates)


def select_interfaces(names: Iterable[str], sys_root: Path) -> list[str]:
    """Interfaces other than lo; virtual ones (bridges, veth, tunnels, listed under
    /sys/devices/virtual/net) only when no physical one is visible, because a container's
    traffic crosses its veth, the bridge and the NIC and would be counted three times."""
    virtual_dir = sys_root / "devices" / "virtual" / "net"
    virtual = set(os.listdir(virtual_dir)) if virtual_dir.is_dir() else set()
    candidates = [n for n in names if n != "lo"]
    physical = [n for n in candidates if n not in virtual]
    return sorted(physical or candidates)


# --------------------------------------------------------------------------- cgroups


def cgroup_root(sys_root: Path) -> Path | None:
    """The cgroup v2 hierarchy: /sys/fs/cgroup itself, or its `unified` part on a hybrid
    host; None on a pure v1 host (containers are then not sampled)."""
    base = sys_root / "fs" / "cgroup"
    for root in (base, base / "unified"):
        if (root / "cgroup.controllers").exists():
            return root
    return None


def find_container_groups(root: Path) -> Iterator[tuple[str, str, str]]:
    """(cgroup path relative to root, runtime, container id) of every container group.

    The walk stops at a container: its sub-groups (if the container made any) are already
    included in its own hierarchical counters."""

    def walk(directory: Path, depth: int, parent: str) -> Iterator[tuple[str, str, str]]:
        try:
            entries = sorted(e.name for e in os.scandir(directory) if e.is_dir())
        except OSError:
            return
        for name in entries:
            match = _SCOPE.match(name)
            path = directory / name
            if match:
                yield str(path.relative_to(root)), match.group(1), match.group(2)
            elif _BARE_ID.match(name):
                runtime = "docker" if parent == "docker" else "container"
                yield str(path.relative_to(root)), runtime, name
            elif depth < _CGROUP_MAX_DEPTH:
                yield from walk(path, depth + 1, name)

    yield from walk(root, 1, "")


def _stat_field(text: str | None, key: str) -> int | None:
    """One `key value` line of a cgroup stat file."""
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            try:
                return int(parts[1])
            except ValueError:
                return None
    return None


def read_rss(group: Path, v1_memory: Path | None) -> int | None:
    """Anonymous memory of a group in bytes: what the processes themselves hold, without
    the page cache that memory.current also counts (and the kernel can reclaim)."""
    anon = _stat_field(_read_text(group / "memory.stat"), "anon")
    if anon is not None:
        return anon
    current = _read_text(group / "memory.current")
    if current is not None and current.strip().isdigit():
        return int(current.strip())
    if v1_memory is not None:  # hybrid host: memory is still a v1 controller
        text = _read_text(v1_memory / "memory.stat")
        return _stat_field(text, "total_rss") or _stat_field(text, "rss")
    return None


def docker_name(docker_root: Path, container_id: str) -> str | None:
    """The name docker shows (`docker ps`), when its state directory is readable."""
    text = _read_text(docker_root / "containers" / container_id / "config.v2.json")
    if not text:
        return None
    try:
        name = json.loads(text).get("Name")
    except (ValueError, AttributeError):
        return None
    return (name.lstrip("/") or None) if isinstance(name, str) else None


# --------------------------------------------------------------------------- deltas


def _delta(new: float | None, old: float | None) -> float | None:
    """new - old for a cumulative counter; None when either is missing or it went back."""
    if new is None or old is None or new < old:
        return None
    return new - old


def _per_second(amount: float | None, seconds: float, scale: float = 1.0) -> float | None:
    return None if amount is None or seconds <= 0 else amount * scale / seconds


def _rate(new: float | None, old: float | None, seconds: float, scale: float = 1.0) -> float | None:
    """Per-second rate of a cumulative counter (None if it went back)."""
    return _per_second(_delta(new, old), seconds, scale)


def _sum_deltas(pairs: Iterable[tuple[int, int]]) -> float | None:
    """Sum of per-device deltas; one device going back makes the whole sum unknown, since
    a partial sum would read as a sudden drop in traffic."""
    total = 0.0
    for new, old in pairs:
        d = _delta(new, old)
        if d is None:
            return None
        total += d
    return total


def cpu_percentages(
    new: tuple[int, ...] | None, old: tuple[int, ...] | None
) -> tuple[float | None, float | None]:
    """(busy %, iowait %) of all CPUs between two /proc/stat readings, busy being
    total - idle - iowait.

    Any field stepping back (a reset, or iowait on some NO_HZ kernels) also skews the total
    both shares are taken of, so then neither is known."""
    if new is None or old is None:
        return None, None
    deltas = [n - o for n, o in zip(new, old, strict=True)]
    total = sum(deltas)
    if total <= 0 or min(deltas) < 0:
        return None, None
    busy = total - deltas[_IDLE] - deltas[_IOWAIT]
    return 100.0 * busy / total, 100.0 * deltas[_IOWAIT] / total


def usable_cpus(proc: Path, sys_root: Path) -> int | None:
    """CPUs this process may run on: its affinity mask, lowered by the cgroup v2 CPU quota
    (`cpu.max` "quota period" of its cgroup and each parent, rounded up) when one is set.
    This is the count the load average is to be divided by."""
    try:
        count: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count()
    text = _read_text(proc / "self" / "cgroup") or ""
    path = next((line[3:] for line in text.splitlines() if line.startswith("0::")), None)
    if path is not None:
        group = sys_root / "fs" / "cgroup" / path.strip().lstrip("/")
        root = sys_root / "fs" / "cgroup"
        while True:
            fields = (_read_text(group / "cpu.max") or "").split()
            if len(fields) == 2 and fields[0] != "max":
                try:
                    quota, period = int(fields[0]), int(fields[1])
                except ValueError:
                    quota, period = 0, 0
                if quota > 0 and period > 0:
                    limit = max(1, math.ceil(quota / period))
                    count = limit if count is None else min(count, limit)
            if group == root or root not in group.parents:
                break
            group = group.parent
    return count


# --------------------------------------------------------------------------- the sampler


class HostSampler:
    """Reads this host's counters; `rows()` turns two readings into table rows."""

    def __init__(
        self,
        node_name: str | None = None,
        proc: Path = Path("/proc"),
        sys: Path = Path("/sys"),
        *,
        docker_root: Path = Path("/var/lib/docker"),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.node_name = node_name or socket.gethostname()
        self.proc = Path(proc)
        self.sys = Path(sys)
        self.docker_root = Path(docker_root)
        self._clock = clock
        self._wall_clock = wall_clock
        self._names: dict[str, str] = {}  # container id -> readable name, read once
        self._previous: Snapshot | None = None

    # -- reading --------------------------------------------------------------------------

    def read(self) -> Snapshot:
        """All counters now. Gauges (memory, load, temperature) are read here too, so a
        row describes the end of its interval."""
        mono, wall = self._clock(), self._wall_clock()
        cpu, ncpu, ctxt = parse_stat(_read_text(self.proc / "stat"))
        disks = parse_diskstats(_read_text(self.proc / "diskstats"))
        nets = parse_net_dev(_read_text(self.proc / "net" / "dev"))
        return Snapshot(
            wall=wall,
            mono=mono,
            cpu=cpu,
            ncpu=ncpu or os.cpu_count() or 1,
            ctxt=ctxt,
            meminfo=parse_meminfo(_read_text(self.proc / "meminfo")),
            load_1m=parse_loadavg(_read_text(self.proc / "loadavg")),
            temperature_c=read_temperature(self.sys),
            disks={d: disks[d] for d in select_disks(disks, self.sys)},
            nets={n: nets[n] for n in select_interfaces(nets, self.sys)},
            containers=self._read_containers(),
            cpu_count=usable_cpus(self.proc, self.sys),
        )

    def _read_containers(self) -> dict[str, ContainerCounters]:
        root = cgroup_root(self.sys)
        if root is None:
            return {}
        v1_memory = self.sys / "fs" / "cgroup" / "memory" if root.name == "unified" else None
        out: dict[str, ContainerCounters] = {}
        seen: set[str] = set()
        for rel, runtime, cid in find_container_groups(root):
            seen.add(cid)
            group = root / rel
            out[rel] = ContainerCounters(
                name=self._container_name(runtime, cid),
                usage_usec=_stat_field(_read_text(group / "cpu.stat"), "usage_usec"),
                rss_bytes=read_rss(group, v1_memory / rel if v1_memory else None),
            )
        self._names = {k: v for k, v in self._names.items() if k in seen}  # forget the gone
        return out

    def _container_name(self, runtime: str, cid: str) -> str:
        """docker's own name when readable, else the short id `docker ps` would show."""
        if cid not in self._names:
            name = docker_name(self.docker_root, cid) if runtime == "docker" else None
            self._names[cid] = name or cid[:CONTAINER_ID_LEN]
        return self._names[cid]

    # -- rows -----------------------------------------------------------------------------

    def rows(self, previous: Snapshot, current: Snapshot) -> list[dict[str, Any]]:
        """The node row and one row per container seen in both snapshots."""
        seconds = current.mono - previous.mono
        sample_time = int(current.wall)
        rows = [self._node_row(previous, current, seconds, sample_time)]
        for key, now in sorted(current.containers.items()):
            before = previous.containers.get(key)
            if before is not None:
                rows.append(self._container_row(before, now, current, seconds, sample_time))
        return rows

    def _node_row(
        self, prev: Snapshot, cur: Snapshot, seconds: float, sample_time: int
    ) -> dict[str, Any]:
        busy, iowait = cpu_percentages(cur.cpu, prev.cpu)
        mem = cur.meminfo
        swap_total, swap_free = mem.get("SwapTotal"), mem.get("SwapFree")
        disks = [d for d in cur.disks if d in prev.disks]
        nets = [n for n in cur.nets if n in prev.nets]

        def disk_rate(i: int) -> float | None:
            d = _sum_deltas((cur.disks[k][i], prev.disks[k][i]) for k in disks)
            return _per_second(d, seconds, SECTOR_BYTES / MIB)

        def net_rate(attr: str, scale: float = 1.0) -> float | None:
            pairs = ((getattr(cur.nets[k], attr), getattr(prev.nets[k], attr)) for k in nets)
            return _per_second(_sum_deltas(pairs), seconds, scale)

        row: dict[str, Any] = {
            "sample_time": sample_time,
            "node_name": self.node_name,
            "container_name": None,
            "node_flag": True,
            "cpu_total_pct": busy,
            "cpu_iowait_pct": iowait,
            "mem_available_mb": _kib_to_mib(mem.get("MemAvailable")),
            "mem_total_mb": _kib_to_mib(mem.get("MemTotal")),
            "swap_used_mb": (
                _kib_to_mib(swap_total - swap_free)
                if swap_total is not None and swap_free is not None and swap_total >= swap_free
                else None
            ),
            "load_1m": cur.load_1m,
            "temperature_c": cur.temperature_c,
            "ctx_switches_s": _rate(cur.ctxt, prev.ctxt, seconds),
            "disk_read_mb_s": disk_rate(0) if disks else None,
            "disk_write_mb_s": disk_rate(1) if disks else None,
            "net_rx_mb_s": net_rate("rx_bytes", 1 / MIB) if nets else None,
            "net_tx_mb_s": net_rate("tx_bytes", 1 / MIB) if nets else None,
            "net_rx_errs_s": net_rate("rx_errs") if nets else None,
            "net_tx_errs_s": net_rate("tx_errs") if nets else None,
            "net_rx_drops_s": net_rate("rx_drops") if nets else None,
            "net_tx_drops_s": net_rate("tx_drops") if nets else None,
            CPU_COUNT.name: cur.cpu_count,
        }
        return row

    def _container_row(
        self,
        before: ContainerCounters,
        now: ContainerCounters,
        current: Snapshot,
        seconds: float,
        sample_time: int,
    ) -> dict[str, Any]:
        # usage_usec / (interval in µs × CPUs): the share of the whole node, as node rows.
        cpu = _rate(now.usage_usec, before.usage_usec, seconds * 1e6 * current.ncpu, 100.0)
        return {
            "sample_time": sample_time,
            "node_name": self.node_name,
            "container_name": now.name,
            "node_flag": False,
            "cpu_total_pct": cpu,
            "c_rss_mb": None if now.rss_bytes is None else now.rss_bytes / MIB,
        }

    def sample(self) -> list[dict[str, Any]]:
        """Rows since the previous call; the first call only primes the counters ([])."""
        current = self.read()
        previous, self._previous = self._previous, current
        return [] if previous is None else self.rows(previous, current)


def _kib_to_mib(kib: int | None) -> float | None:
    return None if kib is None else kib / 1024.0


# --------------------------------------------------------------------------- writing

WRITE_TIMEOUT = 30.0  # seconds a write (lock waits included) may take before it is retried
MAX_BATCH = 5_000  # rows per INSERT transaction when a backlog drains


def write_rows(store: Store, rows: list[dict[str, Any]], *, timeout: float = WRITE_TIMEOUT) -> int:
    """Insert rows in one transaction; returns how many. The column list is the union of
    the rows' keys (node and container rows differ), missing values are NULL. `timeout`
    bounds the statement and its lock waits, so a write never hangs on a held lock."""
    if not rows:
        return 0
    keys = set().union(*(r.keys() for r in rows))
    optional = tuple(c.name for c in OPTIONAL_COLUMNS)
    unknown = keys - set(COLUMN_NAMES) - set(optional)
    if unknown:
        raise ValueError(f"not columns of the samples table: {', '.join(sorted(unknown))}")
    times = [t for r in rows if isinstance(t := r.get("sample_time"), int | float)]
    with store.write() as cur:
        cur.execute("SELECT set_config('statement_timeout', %s, true)", (str(int(timeout * 1000)),))
        # an optional column the table lacks (a table older than it) is left out
        present = [c for c in optional if c in keys and has_column(cur, store, c)]
        columns = [c for c in (*COLUMN_NAMES, *present) if c in keys]  # stable SQL text
        statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            store.table,
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        )
        if times:  # a table partitioned by day: its partition for today (usually made)
            ensure_partitions_in(cur, store.table, min(times), max(times))
        cur.executemany(statement, [tuple(r.get(c) for c in columns) for r in rows])
    return len(rows)


class PendingRows:
    """Rows not yet in the database, oldest first, bounded by age and count so a long
    outage costs the oldest samples (counted in `dropped` and logged), not the process.

    Safe to share between the sampling loop (`add`) and the writer (`flush`): a batch
    being written is taken out of the queue and put back if the write fails."""

    def __init__(self, max_age: float = 3600.0, max_rows: int = 100_000) -> None:
        self.max_age = max_age
        self.max_rows = max_rows
        self.rows: deque[dict[str, Any]] = deque()
        self.dropped = 0
        self.written = 0
        self.in_flight = 0  # rows of the write under way
        self.failing = False  # the last flush failed (log the recovery once)
        self.error: StoreError | None = None  # why the last flush failed
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Rows not yet written, the batch under way included."""
        return len(self.rows) + self.in_flight

    def add(self, rows: Iterable[dict[str, Any]], now: float | None = None) -> None:
        with self._lock:
            self.rows.extend(rows)
            self._trim(time.time() if now is None else now)

    def _trim(self, now: float) -> None:
        dropped = 0
        while self.rows and (
            len(self.rows) > self.max_rows or self.rows[0]["sample_time"] < now - self.max_age
        ):
            self.rows.popleft()
            dropped += 1
        if dropped:
            self.dropped += dropped
            log.warning(
                "dropped %d unsent samples older than %.0f s or beyond %d queued (%d in all)",
                dropped,
                self.max_age,
                self.max_rows,
                self.dropped,
            )

    def flush(
        self, store: Store, *, timeout: float = WRITE_TIMEOUT, max_batch: int = MAX_BATCH
    ) -> int:
        """Write everything queued, `max_batch` rows per transaction; on a database error
        log one line, keep the rows for the next call (in `error`) and return what was
        written before it."""
        total = 0
        while True:
            with self._lock:
                batch = [self.rows.popleft() for _ in range(min(max_batch, len(self.rows)))]
                self.in_flight = len(batch)
            if not batch:
                return total
            try:
                written = write_rows(store, batch, timeout=timeout)
            except StoreError as exc:
                with self._lock:
                    self.rows.extendleft(reversed(batch))
                    self.in_flight = 0
                    queued = len(self.rows)
                if not self.failing or str(exc) != str(self.error):  # one line per new cause
                    log.warning("samples not written, %d kept for retry: %s", queued, exc)
                self.failing, self.error = True, exc
                return total
            with self._lock:
                self.in_flight = 0
                self.written += written
            total += written
            if self.failing:
                log.info("database takes rows again: wrote %d queued samples", written)
                self.failing, self.error = False, None


class Writer(threading.Thread):
    """Writes what the sampling loop queues, off its clock.

    It writes whenever rows are queued; after a failed write it waits `retry` seconds. A
    permanent error (see `StoreError.permanent`) that persists for `give_up_after` seconds
    ends it, with the error in `fatal` for the loop to raise."""

    def __init__(
        self,
        store: Store,
        pending: PendingRows,
        *,
        retry: float,
        give_up_after: float,
        timeout: float = WRITE_TIMEOUT,
    ) -> None:
        super().__init__(name="sample-writer", daemon=True)
        self.store = store
        self.pending = pending
        self.retry = retry
        self.give_up_after = give_up_after
        self.timeout = timeout
        self.fatal: StoreError | None = None
        self.stopped = threading.Event()  # set when the thread ends
        self._wake = threading.Event()
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    def stop(self, within: float) -> bool:
        """Flush what is queued for at most `within` seconds; True when all was written."""
        self._stopping = True
        self._wake.set()
        self.join(within)
        return not self.is_alive() and not self.pending

    def run(self) -> None:
        permanent_since: float | None = None
        try:
            while True:
                self._wake.wait(None if not self.pending.failing else self.retry)
                self._wake.clear()
                self.pending.flush(self.store, timeout=self.timeout)
                error = self.pending.error if self.pending.failing else None
                if error is None or not error.permanent:
                    permanent_since = None
                elif permanent_since is None:
                    permanent_since = time.monotonic()
                elif time.monotonic() - permanent_since >= self.give_up_after:
                    self.fatal = error
                    return
                if self._stopping and (not self.pending or error is not None):
                    return
        finally:
            self.stopped.set()


# --------------------------------------------------------------------------- the loop


def next_tick(now: float, interval: float, min_wait: float = 0.0) -> float:
    """The first wall-clock multiple of `interval` at least `min_wait` after `now`."""
    return (math.floor((now + min_wait) / interval) + 1) * interval


def run(
    store: Store,
    *,
    interval: float,
    count: int | None,
    node_name: str | None = None,
    on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
    sampler: HostSampler | None = None,
    pending: PendingRows | None = None,
    give_up_after: float = 60.0,
    flush_within: float = 10.0,
    write_timeout: float = WRITE_TIMEOUT,
) -> int:
    """Sample every `interval` seconds into the table, `count` times (None: until Ctrl-C
    or SIGTERM); returns the rows written.

    A writer thread takes the rows, so a slow write never moves a reading. Unreachable
    databases, locks and timeouts are retried every interval; a missing table or INSERT
    right for `give_up_after` seconds raises its `StoreError`. On the way out the queue
    gets `flush_within` seconds to drain; what is left is counted in a warning."""
    if not interval > 0:
        raise ValueError("the interval must be a positive number of seconds")
    sampler = sampler or HostSampler(node_name)
    pending = pending if pending is not None else PendingRows()
    writer = Writer(
        store,
        pending,
        retry=min(interval, 10.0),
        give_up_after=give_up_after,
        timeout=write_timeout,
    )
    writer.start()
    done = 0
    written_before = last_written = pending.written
    try:
        previous = sampler.read()
        # The first delta spans at least a second (or half an interval), not a sliver.
        deadline = next_tick(time.time(), interval, min(interval / 2, 1.0))
        while count is None or done < count:
            if writer.stopped.wait(max(0.0, deadline - time.time())):
                break  # the writer gave up: a permanent error
            current = sampler.read()
            rows = sampler.rows(previous, current)
            previous, done = current, done + 1
            if on_rows is not None:
                on_rows(rows)
            pending.add(rows, now=current.wall)
            writer.wake()
            log.info(
                "sampled %d rows; %d written since the last sample, %d queued, %d dropped",
                len(rows),
                pending.written - last_written,
                len(pending),
                pending.dropped,
            )
            last_written = pending.written
            deadline += interval
            if deadline <= time.time():  # reading took longer than an interval
                skipped = math.ceil((time.time() - deadline) / interval)
                log.warning("reading the host took too long: %d samples skipped", skipped)
                deadline = next_tick(time.time(), interval)
    except KeyboardInterrupt:
        log.info("interrupted: writing the %d queued samples", len(pending))
    finally:
        if writer.fatal is None and not writer.stop(flush_within) and len(pending):
            log.warning(
                "stopping with %d samples not written after %.0f s of flushing",
                len(pending),
                flush_within,
            )
    if writer.fatal is not None:
        raise StoreError(
            f"samples cannot be written ({writer.fatal}); gave up after "
            f"{give_up_after:.0f} s with {len(pending)} samples not written"
        )
    return pending.written - written_before
