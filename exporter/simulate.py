"""A deterministic simulated fleet with injected findings of known, exact size.

The fleet is the ground truth the analyses are tested against: every node is healthy except
one finding per node (from node 2 on), each of a size recorded in `Fleet.truth`. Rows are
produced lazily as PostgreSQL BINARY COPY data, built with numpy structured arrays so a
50-node, 30-day fleet (about 6.5 M rows) is generated in seconds.

Determinism: node constants come from `default_rng([seed, node])` and the noise of each
6-hour block from `default_rng([seed, node, 1, block])`, with blocks aligned to absolute
time, so a node's samples depend neither on the number of nodes nor on memory limits.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from .partitions import ensure_partitions
from .schema import COLUMN_NAMES, COLUMNS, HOST_FACTS, init_table, present_columns

if TYPE_CHECKING:
    from .store import Store

FINDING_KINDS: tuple[str, ...] = (
    "cpu_saturation",
    "memory_exhausted",
    "overheating",
    "memory_leak",
    "cpu_growth",
    "anomaly_spike",
    "outage_gap",
    "stale",
    "noisy_neighbour",
    "correlated_metrics",
    "iowait_high",
    "network_errors",
)

COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)

BLOCK_SLOTS = 360  # samples per noise block (6 h at 60 s); blocks are aligned to absolute time
CHUNK_BYTES = 4 << 20  # target size of one copy chunk
CONTAINER_KINDS = ("app", "sql", "web", "api", "job", "log")  # equal length: fixed-width names

# Noise channels of a node, one standard-normal row each per block.
_CHANNELS = ("cpu", "iowait", "mem", "load", "temp", "ctx", "dr", "dw", "rx", "tx")
_CH = {name: i for i, name in enumerate(_CHANNELS)}
_NODE_CHANNELS = len(_CH)

# Sizes of the injected findings (the truth records them with the exact windows).
RECENT_S = 20 * 60  # the "last 20 minutes" of the emergency findings
SATURATED_CPU = 97.0
EXHAUSTED_MEM_PCT = 3.0
HOT_C = 88.0
LEAK_DAYS_TO_ZERO = 20.0
GROWTH_RATE = 0.8  # percent of CPU per day
GROWTH_PEAK = 75.0  # noiseless daily CPU peak on the last day
SPIKE_SIZE = 40.0  # MiB/s added to disk_write_mb_s
SPIKE_S, SPIKE_END_BEFORE_S = 15 * 60, 2 * 3600
GAP_FROM_S, GAP_TO_S = 10 * 3600, 7 * 3600  # before end
STALE_S = 30 * 60
NOISY_S, NOISY_SHARE, NOISY_NODE_CPU = 60 * 60, 0.70, 92.0
IOWAIT_HIGH = 35.0
RX_ERRS, RX_DROPS = 50.0, 20.0
CORR_TARGET = 0.95
# Host facts: healthy disks fill slowly, the disk finding's fast enough to forecast and alert.
DISK_FILL_AT_END = 0.92  # used share of the fullest filesystem at the fleet's end
DISK_FILL_PER_DAY = 0.01  # its growth per day, a known rate for the forecast
DISK_FILLING_ON = "memory_leak"  # the node whose disk fills (see `_setup_disk_filling`)


@dataclass(frozen=True)
class FleetSpec:
    """What to simulate; equal specs (with `end` set) give byte-identical streams.

    The shapes of real samplers are options, all off by default (the clean fleet the
    findings' truth is easiest to read from). `realistic=True` turns on the timing and noise
    shapes at realistic sizes (each explicit field still wins when set). The healthy nodes
    (the extra nodes are healthy too) get all of them; the finding nodes get the jitter,
    late stamps, container offsets, AR noise and, for `phases`, a lead (every stamp a fixed
    5-30 s before its slot, so a window ending on a slot holds exactly the samples the truth
    counts), but keep `interval` and miss no sample, so every injected finding keeps its
    exact ground truth; `Fleet.truth["nodes"][name]` records each node's interval, phase,
    lead and shapes.

    - `intervals`: sampling intervals of the healthy nodes, cycled over them in order
      (realistic: 15, 60 and 300 s); each must divide the 6-hour noise block. Finding nodes
      keep `interval`;
    - `jitter_s`: each node row stamped up to this many seconds early or late, uniformly
      (realistic: 3); `late_share`: this share of rows stamped 1 s later still (0.3);
    - `phases`: each node samples at its own offset within its interval (realistic: on);
    - `container_offset_s`: container rows stamped 1..this many seconds after their node
      row, a fixed offset per node (realistic: 4);
    - `miss_rate`: share of samples missed at 50 % CPU, proportional to CPU (a sampler
      starved under load; realistic: 0.002);
    - `ar_phi`: AR(1) coefficient of the noise, unit marginal variance kept (realistic: 0.8);
    - `null_columns`: columns NULL on every row of every third healthy node (realistic:
      temperature_c, as on hosts without sensors);
    - `dead_nodes`: extra nodes that report once, at the fleet's start, and die;
    - `container_only_nodes`: extra nodes whose node sampler never reports while their
      container rows do;
    - `name_variants`: 5 % of the first healthy node's rows carry its name upper-cased and
      5 % with a trailing blank (separate rows of a "different" node to a naive reader).

    `findings=False` makes every node healthy (a quiet fleet: nothing should be reported).
    """

    nodes: int = 14
    containers: int = 2  # per node
    days: float = 30
    interval: int = 60  # seconds between samples
    seed: int = 42
    end: int | None = None  # unix seconds of the last sample slot; None = now floored
    realistic: bool = False
    intervals: tuple[int, ...] = ()
    jitter_s: int = 0
    late_share: float = 0.0
    phases: bool = False
    container_offset_s: int = 0
    miss_rate: float = 0.0
    ar_phi: float = 0.0
    null_columns: tuple[str, ...] = ()
    dead_nodes: int = 0
    container_only_nodes: int = 0
    name_variants: bool = False
    findings: bool = True  # False: a quiet fleet, every node healthy

    def shapes(self) -> FleetSpec:
        """This spec with the realistic defaults filled in where a field is unset."""
        if not self.realistic:
            return self
        return replace(
            self,
            intervals=self.intervals or (15, 60, 300),
            jitter_s=self.jitter_s or 3,
            late_share=self.late_share or 0.3,
            phases=True,
            container_offset_s=self.container_offset_s or 4,
            miss_rate=self.miss_rate or 0.002,
            ar_phi=self.ar_phi or 0.8,
            null_columns=self.null_columns or ("temperature_c",),
        )


@dataclass
class _Node:
    """Per-node constants, drawn from the node's own generator so they never depend on
    how many nodes the fleet has; findings adjust a few of them."""

    index: int  # 1-based
    name: bytes
    finding: str | None
    cpu_count: int
    mem_total: float
    peak_hour: int
    cpu_base: float
    cpu_amp: float
    used_frac: float
    mem_amp: float  # fraction of total, daily cycle of used memory
    mem_sd: float  # fraction of total
    mem_shift_h: float
    swap: float
    iowait_base: float
    temp_offset: float
    ctx_per_pct: float
    io_level: np.ndarray  # disk read, disk write, net rx, net tx MiB/s
    io_shift_h: float
    cont_frac: np.ndarray  # share of node CPU per container
    cont_rss: np.ndarray  # MiB per container
    growth_rate: float = 0.0
    leak_slope: float = 0.0  # MiB of available memory lost per day
    walk: np.ndarray | None = None  # slow random walk added to CPU (one value per slot)
    corr: tuple[float, float, float] | None = None  # net_rx = a + b * cpu + sd * noise
    interval: int = 0  # own sampling interval (0: the spec's)
    phase: int = 0  # seconds after the spec's slot grid
    shaped: bool = False  # jitter, misses, AR noise and NULL columns apply
    null_columns: tuple[str, ...] = ()
    kind: str = "normal"  # normal, dead (one sample) or container_only
    disk_at_end: float = 0.0  # used share of the fullest filesystem at the fleet's end
    disk_per_day: float = 0.0
    inodes_at_end: float = 0.0
    offset: int = 0  # container rows' lag behind the node row, seconds
    lead: int = 0  # node rows stamped this long before their slot (finding nodes), seconds


@dataclass
class Fleet:
    """A simulated fleet: its ground truth now, its rows on demand (`copy_chunks`)."""

    spec: FleetSpec
    start: int
    end: int
    truth: dict
    row_count: int
    _nodes: list[_Node] = field(repr=False)
    _container_names: np.ndarray = field(repr=False)

    def truth_for(self, kind: str) -> dict | None:
        """The truth entry of finding `kind`, or None when the fleet was too small for it."""
        return next((f for f in self.truth["findings"] if f["kind"] == kind), None)

    def copy_chunks(
        self,
        since: int | None = None,
        *,
        until: int | None = None,
        nodes: Collection[str] | None = None,
        facts: bool = False,
    ) -> Iterator[tuple[bytes, int]]:
        """Yield (BINARY COPY bytes, rows) chunks of a few MB; concatenated they form one
        complete stream (header first, trailer last) in near time order, like real ingest.
        With `since`, only the samples after that time (a live top-up; `row_count` still
        counts the whole fleet); with `until`, only those up to it; with `nodes`, only
        those nodes' samples. With `facts`, node rows carry the host facts too: the stream's
        columns are then `copy_columns(True)`."""
        pending: tuple[bytes, int] | None = None
        first = True
        for data, rows in self._row_chunks(since, until, nodes, facts):
            if first:
                data, first = COPY_HEADER + data, False
            if pending is not None:
                yield pending
            pending = (data, rows)
        if pending is None:
            yield COPY_HEADER + COPY_TRAILER, 0
        else:
            yield pending[0] + COPY_TRAILER, pending[1]

    # -- generation -------------------------------------------------------------------

    def _row_chunks(
        self,
        since: int | None = None,
        until: int | None = None,
        only: Collection[str] | None = None,
        facts: bool = False,
    ) -> Iterator[tuple[bytes, int]]:
        """Per 6-hour block: node rows ordered by (time, node), then container rows."""
        spec = self.spec
        block_s = BLOCK_SLOTS * spec.interval
        names = np.array([n.name for n in self._nodes])
        node_dt, cont_dt = _row_dtype(
            names.dtype.itemsize, self._container_names.dtype.itemsize, facts=facts
        )
        c = spec.containers
        first = self.start if since is None else max(self.start, since + 1)
        last = self.end if until is None else min(self.end, until)
        for k in range(first // block_s, last // block_s + 1):
            node_parts, cont_parts = [], []
            for i, n in enumerate(self._nodes):
                if only is not None and n.name.decode() not in only:
                    continue
                got = _node_rows(self, n, k, node_dt, cont_dt, since, until, facts)
                if got is None:
                    continue
                parts, crows = got
                for rows in parts:
                    if rows.dtype != node_dt:  # NULL columns or a wider name: sent apart
                        yield from _split(rows)
                    else:
                        node_parts.append((rows, np.full(rows.size, i)))
                if crows is not None:
                    cont_parts.append((crows, np.repeat(np.full(crows.size // c, i), c)))
            if not node_parts and not cont_parts:
                continue
            if node_parts:
                rows = np.concatenate([p[0] for p in node_parts], dtype=node_dt)
                key = np.concatenate([p[1] for p in node_parts])
                if rows.size:  # (time, node) order, as the samplers' rows arrive
                    yield from _split(rows[np.lexsort((key, rows["sample_time"]))])
            if c == 0 or not cont_parts:
                continue
            crows = np.concatenate([p[0] for p in cont_parts], dtype=cont_dt)
            ckey = np.concatenate([p[1] for p in cont_parts])
            if crows.size:
                slot = np.tile(np.arange(c), crows.size // c)
                yield from _split(crows[np.lexsort((slot, ckey, crows["sample_time"]))])


def _node_rows(
    fleet: Fleet,
    n: _Node,
    k: int,
    node_dt: np.dtype,
    cont_dt: np.dtype,
    since: int | None,
    until: int | None = None,
    facts: bool = False,
) -> tuple[list[np.ndarray], np.ndarray | None] | None:
    """Node rows (in one or more layouts) and container rows of node `n` in noise block `k`
    (None when none)."""
    spec = fleet.spec
    c = spec.containers
    t, z, zc = _node_noise(spec, n, k, fleet.start, fleet.end)
    if t.size == 0:
        return None
    p = _model(n, t, z, zc, fleet)
    present = p["present"]
    stamp = t.copy()
    if n.shaped:  # timing shapes from their own generator: values never depend on them
        rng = np.random.default_rng([spec.seed, n.index, 5, k])
        shift = rng.integers(-spec.jitter_s, spec.jitter_s + 1, t.size)
        late = rng.random(t.size) < spec.late_share
        missed = rng.random(t.size) < spec.miss_rate * p["cpu_total_pct"] / 50.0
        stamp = t + shift + late - n.lead
        if n.finding is None:  # a finding node misses nothing: its counts stay exact
            present = present & ~missed
    if n.kind == "dead":  # its first slot only
        own = n.interval or spec.interval
        present = present & (t == fleet.start + (n.phase - fleet.start) % own)
    if since is not None:  # only the slots after `since` (live appends)
        present = present & (t > since)
    if until is not None:
        present = present & (t <= until)
    b = t.size
    if n.null_columns:  # a layout of its own, without the NULL columns' fields
        width = node_dt["node_name"].itemsize
        node_dt = _row_dtype(width, cont_dt["container_name"].itemsize, n.null_columns, facts)[0]
    rows = _filled(node_dt, b)
    rows["sample_time"] = stamp
    rows["node_name"] = n.name
    rows["node_flag"] = 1
    for col in _NODE_VALUE_COLUMNS + (FACT_COLUMNS if facts else ()):
        if col not in n.null_columns:
            rows[col] = p[col]
    parts = []
    if spec.name_variants and n.shaped and n.index == 1:  # 5 % upper-cased, 5 % trailing blank
        u = np.random.default_rng([spec.seed, n.index, 7, k]).random(b)
        rows["node_name"] = np.where(u < 0.05, n.name.upper(), n.name)
        spaced = present & (u >= 0.05) & (u < 0.1)
        width = node_dt["node_name"].itemsize + 1  # a wider name: a layout of its own
        wide = _filled(_row_dtype(width, cont_dt["container_name"].itemsize, n.null_columns,
                                  facts)[0], int(spaced.sum()))  # fmt: skip
        for name in wide.dtype.names or ():
            if name not in ("node_name", "len_node_name"):
                wide[name] = rows[name][spaced]
        wide["node_name"] = n.name + b" "
        parts.append(wide)
        node_present = present & ~spaced
    else:
        node_present = present
    parts.insert(0, rows[node_present] if n.kind != "container_only" else rows[:0])
    if c == 0:
        return parts, None
    crows = _filled(cont_dt, b * c)
    crows["sample_time"] = np.repeat(stamp + n.offset, c)
    crows["node_name"] = n.name
    crows["container_name"] = np.tile(fleet._container_names, b)
    crows["node_flag"] = 0
    for col, key in (("cpu_total_pct", "c_cpu"), ("c_rss_mb", "c_rss")):
        crows[col] = p[key].T.ravel()  # (container, time) -> (time, container)
    return parts, crows[np.repeat(present, c)]


def _ar1(e: np.ndarray, phi: float) -> np.ndarray:
    """AR(1) series x[i] = phi x[i-1] + sqrt(1 - phi^2) e[i] along the last axis, started
    stationary (x[0] = e[0]) so each value stays standard normal. Done in segments of 32
    with the closed form, which keeps powers of phi well away from underflow."""
    out = np.empty_like(e)
    if e.shape[-1] == 0:
        return out
    scale = math.sqrt(1.0 - phi * phi)
    seg = 32
    pw = phi ** np.arange(seg)
    out[..., 0] = e[..., 0]
    prev = out[..., 0]
    for s0 in range(1, e.shape[-1], seg):
        part = e[..., s0 : s0 + seg] * scale
        m = part.shape[-1]
        conv = np.cumsum(part / pw[:m], axis=-1) * pw[:m]
        out[..., s0 : s0 + m] = phi * pw[:m] * prev[..., None] + conv
        prev = out[..., s0 + m - 1]
    return out


_NODE_VALUE_COLUMNS = tuple(c.name for c in COLUMNS if c.node and c.sql_type == "double precision")
FACT_COLUMNS = tuple(c.name for c in HOST_FACTS)


def copy_columns(facts: bool = False) -> tuple[str, ...]:
    """The columns of `Fleet.copy_chunks(facts=...)`'s stream, in order (for `COPY (...)`)."""
    return COLUMN_NAMES + (FACT_COLUMNS if facts else ())


def table_has_facts(store: Store) -> bool:
    """Whether the store's table has every host-fact column (`db init` creates them; a
    table made for the contract's columns only has none)."""
    with store.read() as cur:
        return present_columns(cur, store, FACT_COLUMNS) == set(FACT_COLUMNS)


def _row_dtype(
    node_w: int, cont_w: int, nulls: tuple[str, ...] = (), facts: bool = False
) -> tuple[np.dtype, np.dtype]:
    """Big-endian tuple layouts of node rows and container rows (fixed-width names), so a
    block of rows is a single `.tobytes()` of valid BINARY COPY data; columns in `nulls`
    have no field (their length word says NULL). With `facts`, the host-fact columns
    follow the contract's (node rows carry them, container rows leave them NULL)."""
    fmt = {"bigint": ">i8", "boolean": "u1", "double precision": ">f8"}

    def layout(container: bool) -> np.dtype:
        fields: list[tuple[str, str]] = [("nfields", ">i2")]
        for col in COLUMNS + (HOST_FACTS if facts else ()):
            fields.append((f"len_{col.name}", ">i4"))
            if (col.container if container else col.node) and col.name not in nulls:
                width = {"node_name": node_w, "container_name": cont_w}.get(col.name)
                fields.append((col.name, f"S{width}" if width else fmt[col.sql_type]))
        return np.dtype(fields)

    return layout(False), layout(True)


def _filled(dt: np.dtype, n: int) -> np.ndarray:
    """`n` rows with the field count and every length word already set (-1 = NULL)."""
    template = np.zeros(1, dt)
    names = dt.names or ()
    columns = [name[4:] for name in names if name.startswith("len_")]
    template["nfields"] = len(columns)
    for col in columns:
        template[f"len_{col}"] = dt[col].itemsize if col in names else -1
    rows = np.empty(n, dt)
    rows[...] = template
    return rows


def _split(rows: np.ndarray) -> Iterator[tuple[bytes, int]]:
    """Cut rows into chunks of about CHUNK_BYTES at row boundaries."""
    step = max(1, CHUNK_BYTES // rows.dtype.itemsize)
    for i in range(0, rows.size, step):
        part = rows[i : i + step]
        yield part.tobytes(), int(part.size)


def _node_noise(
    spec: FleetSpec, n: _Node, k: int, start: int, end: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slot times of node `n` in block `k` inside [start, end] and its noise for them.
    Whole blocks are always drawn, then sliced, so a sample's noise depends only on its
    time; a node at the spec's interval and phase 0 draws exactly the clean fleet's noise."""
    iv = n.interval or spec.interval
    slots = BLOCK_SLOTS * spec.interval // iv
    t_all = k * BLOCK_SLOTS * spec.interval + n.phase + np.arange(slots, dtype=np.int64) * iv
    keep = (t_all >= start) & (t_all <= end)
    rng = np.random.default_rng([spec.seed, n.index, 1, k])
    z = rng.standard_normal((_NODE_CHANNELS, slots))[:, keep]
    zc = rng.standard_normal((2 * spec.containers, slots))[:, keep]
    if n.shaped and spec.ar_phi:  # here, so the truth (`_node_series`) reads it too
        z, zc = _ar1(z, spec.ar_phi), _ar1(zc, spec.ar_phi)
    return t_all[keep], z, zc


def _block_noise(
    spec: FleetSpec, nodes: list[_Node], k: int, start: int, end: int
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Slot times of block `k` inside [start, end] and each node's noise for them (nodes on
    the spec's grid)."""
    zs = []
    t = np.zeros(0, dtype=np.int64)
    for n in nodes:
        t, z, zc = _node_noise(spec, n, k, start, end)
        zs.append((z, zc))
    return t, zs


def _cycle(t: np.ndarray, peak_hour: float) -> np.ndarray:
    """Daily cosine, 1 at `peak_hour` UTC."""
    return np.cos(2 * np.pi * ((t % 86400) / 3600.0 - peak_hour) / 24.0)


def _cpu_clean(n: _Node, t: np.ndarray, fleet_start: int, interval: int) -> np.ndarray:
    """Noiseless node CPU: base + daily cycle, 30 % lower on Sat/Sun, plus growth and walk."""
    weekend = ((t // 86400 + 3) % 7) >= 5  # 1970-01-01 was a Thursday; Monday = 0
    cpu = np.where(weekend, 0.7, 1.0) * (n.cpu_base + n.cpu_amp * _cycle(t, n.peak_hour))
    if n.growth_rate:
        cpu = cpu + n.growth_rate * (t - fleet_start) / 86400.0
    if n.walk is not None:
        cpu = cpu + n.walk[(t - fleet_start) // interval]
    return cpu


def _bounded(z: np.ndarray, tol: float) -> np.ndarray:
    """Noise of sd tol/3 clipped to +-tol: a finding's size holds exactly within tol."""
    return np.clip(z * tol / 3.0, -tol, tol)


def _model(n: _Node, t: np.ndarray, z: np.ndarray, zc: np.ndarray, fleet: Fleet) -> dict:
    """One node's metrics for slot times `t` given its noise: healthy physics, then the
    node's finding. With zero noise it gives the noiseless levels the truth records."""
    end, iv = fleet.end, fleet.spec.interval
    zz = {name: z[i] for name, i in _CH.items()}
    days = (t - fleet.start) / 86400.0
    total = n.mem_total

    cpu_healthy = np.clip(_cpu_clean(n, t, fleet.start, iv) + 2.0 * zz["cpu"], 0.0, 100.0)
    cpu = cpu_healthy.copy()
    iowait = np.clip(n.iowait_base + 0.3 * zz["iowait"], 0.2, None)
    mem_cycle = _cycle(t, n.peak_hour + n.mem_shift_h)
    avail = (
        total * (1.0 - n.used_frac)
        - n.leak_slope * days
        - total * (n.mem_amp * mem_cycle + n.mem_sd * zz["mem"])
    )
    io_cycle = _cycle(t, n.peak_hour + n.io_shift_h)
    io = {
        key: np.clip(level * (1.0 + 0.3 * io_cycle + 0.1 * zz[key]), 0.0, None)
        for key, level in zip(("dr", "dw", "rx", "tx"), n.io_level, strict=True)
    }
    if n.corr is not None:
        a, b, sd = n.corr
        io["rx"] = np.clip(a + b * cpu + sd * zz["rx"], 0.0, None)
    zero = np.zeros(t.size)
    rx_errs, rx_drops = zero, zero
    temp_noise = 0.5 * zz["temp"]
    present = np.ones(t.size, dtype=bool)

    kind = n.finding
    recent = t > end - RECENT_S
    if kind == "cpu_saturation":
        cpu = np.where(recent, SATURATED_CPU + _bounded(zz["cpu"], 0.3), cpu)
    elif kind == "noisy_neighbour":
        cpu = np.where(t > end - NOISY_S, NOISY_NODE_CPU + _bounded(zz["cpu"], 0.3), cpu)
    elif kind == "memory_exhausted":
        level = total * (EXHAUSTED_MEM_PCT + _bounded(zz["mem"], 0.1)) / 100.0
        avail = np.where(recent, level, avail)
    elif kind == "iowait_high":
        iowait = np.where(recent, IOWAIT_HIGH + _bounded(zz["iowait"], 0.5), iowait)
    elif kind == "anomaly_spike":
        first, last = _spike_slots(end, iv)
        io["dw"] = np.where((t >= first) & (t <= last), io["dw"] + SPIKE_SIZE, io["dw"])
    elif kind == "network_errors":
        rx_errs, rx_drops = np.where(recent, RX_ERRS, 0.0), np.where(recent, RX_DROPS, 0.0)
    elif kind == "outage_gap":
        gap_start, gap_end = _gap_slots(end, iv)
        present = (t < gap_start) | (t >= gap_end)
    elif kind == "stale":
        present = t <= _stale_last(end, iv)

    temp = 45.0 + n.temp_offset + 0.2 * cpu + temp_noise
    if kind == "overheating":
        temp = np.where(recent, HOT_C + _bounded(zz["temp"], 0.3), temp)

    c_cpu = n.cont_frac[:, None] * cpu_healthy * (1.0 + 0.03 * zc[: n.cont_frac.size])
    if kind == "noisy_neighbour" and c_cpu.shape[0]:
        c_cpu[0] = np.where(t > end - NOISY_S, NOISY_SHARE * cpu, c_cpu[0])
    c_rss = n.cont_rss[:, None] * (1.0 + 0.01 * zc[n.cont_frac.size :])

    # Host facts, from the noise already drawn (disk usage wiggles with the writes) so the
    # other columns' values do not depend on whether facts are written.
    ago = (end - t) / 86400.0
    disk = n.disk_at_end - n.disk_per_day * ago + 0.0002 * zz["dw"]
    inodes = n.inodes_at_end - 0.2 * n.disk_per_day * ago + 0.0001 * zz["dr"]
    avail_pct = 100.0 * avail / total
    psi_cpu = 0.05 * cpu + 1.5 * np.clip(cpu - 70.0, 0.0, None) + 0.2 * np.abs(zz["load"])
    psi_mem = 4.0 * np.clip(10.0 - avail_pct, 0.0, None)
    psi_io = 0.8 * iowait + 0.1 * np.abs(zz["iowait"])

    return {
        "present": present,
        "cpu_total_pct": cpu,
        "cpu_iowait_pct": iowait,
        "mem_available_mb": avail,
        "mem_total_mb": np.full(t.size, total),
        "swap_used_mb": np.full(t.size, n.swap),
        "load_1m": np.clip(cpu / 100.0 * n.cpu_count * 0.9 * (1.0 + 0.03 * zz["load"]), 0, None),
        "temperature_c": temp,
        "ctx_switches_s": np.clip(
            cpu * n.cpu_count * n.ctx_per_pct * (1 + 0.05 * zz["ctx"]), 0, None
        ),
        "disk_read_mb_s": io["dr"],
        "disk_write_mb_s": io["dw"],
        "net_rx_mb_s": io["rx"],
        "net_tx_mb_s": io["tx"],
        "net_rx_errs_s": rx_errs,
        "net_tx_errs_s": zero,
        "net_rx_drops_s": rx_drops,
        "net_tx_drops_s": zero,
        "c_cpu": c_cpu,
        "c_rss": c_rss,
        "disk_used_ratio": np.clip(disk, 0.0, 1.0),
        "inodes_used_ratio": np.clip(inodes, 0.0, 1.0),
        "psi_cpu_some_avg60": np.clip(psi_cpu, 0.0, 100.0),
        "psi_memory_some_avg60": np.clip(psi_mem, 0.0, 100.0),
        "psi_io_some_avg60": np.clip(psi_io, 0.0, 100.0),
    }


# -- fleet construction and truth ------------------------------------------------------


def _draw_node(spec: FleetSpec, index: int, name: bytes, finding: str | None) -> _Node:
    """Healthy constants of node `index` from its own generator (order of draws is fixed)."""
    rng = np.random.default_rng([spec.seed, index])
    n = _Node(
        index=index,
        name=name,
        finding=finding,
        cpu_count=int(rng.choice([4, 8, 16])),
        mem_total=float(rng.choice([16384, 32768, 65536])),
        peak_hour=int(rng.integers(0, 24)),
        cpu_base=float(rng.uniform(20, 35)),
        cpu_amp=float(rng.uniform(8, 15)),
        used_frac=float(rng.uniform(0.40, 0.55)),
        mem_amp=0.02,
        mem_sd=0.005,
        mem_shift_h=float(rng.uniform(5, 7)),
        swap=float(np.round(rng.uniform(0, 256), 1)),
        iowait_base=float(rng.uniform(1.2, 2.5)),
        temp_offset=float(rng.uniform(-2, 3)),
        ctx_per_pct=float(rng.uniform(150, 300)),
        io_level=rng.uniform([1, 2, 2, 1], [5, 6, 10, 8]),
        io_shift_h=float(rng.uniform(5, 7)),  # a quarter day off CPU: no spurious correlation
        cont_frac=np.zeros(0),
        cont_rss=np.zeros(0),
    )
    frng = np.random.default_rng([spec.seed, index, 8])  # host facts: draws of their own
    n.disk_at_end = float(frng.uniform(0.30, 0.60))
    n.disk_per_day = float(frng.uniform(0.0003, 0.0008))  # far from full within a year
    n.inodes_at_end = float(frng.uniform(0.03, 0.15))
    c = spec.containers
    if c:
        crng = np.random.default_rng([spec.seed, index, 2])
        frac = crng.dirichlet(np.full(c, 3.0)) * crng.uniform(0.5, 0.75)
        if finding == "noisy_neighbour" and c > 1:  # room for the neighbour's 70 %
            frac[1:] *= min(1.0, 0.35 / frac[1:].sum())
        n.cont_frac = frac
        n.cont_rss = crng.dirichlet(np.full(c, 3.0)) * n.mem_total * crng.uniform(0.15, 0.3)
    return n


def _slot_window(first: int, last: int, interval: int) -> dict:
    return {"start": first, "end": last, "samples": (last - first) // interval + 1}


def _recent_window(fleet_start: int, end: int, seconds: int, interval: int) -> dict:
    """The slots t with end - seconds < t <= end (clipped to the fleet's start)."""
    return _slot_window(*_recent(fleet_start, end, seconds, interval), interval)


def _recent(fleet_start: int, end: int, seconds: int, interval: int) -> tuple[int, int]:
    return max(fleet_start, end - ((seconds - 1) // interval) * interval), end


def _spike_slots(end: int, interval: int) -> tuple[int, int]:
    """First and last slot of the disk-write spike: SPIKE_S ending SPIKE_END_BEFORE_S early."""
    last = end - (SPIKE_END_BEFORE_S // interval) * interval
    return last - ((SPIKE_S - 1) // interval) * interval, last


def _gap_slots(end: int, interval: int) -> tuple[int, int]:
    """First missing slot and first slot present again of the outage gap."""
    return end - math.ceil(GAP_FROM_S / interval) * interval, end - math.ceil(
        GAP_TO_S / interval
    ) * interval


def _stale_last(end: int, interval: int) -> int:
    """The stale node's last sample: STALE_S (rounded up to a slot) before end."""
    return end - math.ceil(STALE_S / interval) * interval


def _setup_findings(fleet: Fleet, n: _Node) -> dict:
    """Adjust the node's constants for its finding and return the finding's truth."""
    spec, start, end, iv = fleet.spec, fleet.start, fleet.end, fleet.spec.interval
    kind = n.finding
    truth: dict = {"kind": kind, "node": n.name.decode()}
    whole = _slot_window(start, end, iv)
    recent = _recent_window(start, end, RECENT_S, iv)
    if kind == "cpu_saturation":
        truth.update(metric="cpu_total_pct", value=SATURATED_CPU, tolerance=0.3, window=recent)
    elif kind == "memory_exhausted":
        truth.update(
            metric="mem_available_mb",
            value_pct_of_total=EXHAUSTED_MEM_PCT,
            value=n.mem_total * EXHAUSTED_MEM_PCT / 100.0,
            tolerance=n.mem_total * 0.1 / 100.0,
            mem_total_mb=n.mem_total,
            window=recent,
        )
    elif kind == "overheating":
        truth.update(metric="temperature_c", value=HOT_C, tolerance=0.3, window=recent)
    elif kind == "iowait_high":
        truth.update(metric="cpu_iowait_pct", value=IOWAIT_HIGH, tolerance=0.5, window=recent)
    elif kind == "network_errors":
        truth.update(metrics={"net_rx_errs_s": RX_ERRS, "net_rx_drops_s": RX_DROPS}, window=recent)
    elif kind == "memory_leak":
        span_days = (end - start) / 86400.0
        n.used_frac, n.mem_amp, n.mem_sd = 0.5, 0.0002, 0.002  # tiny cycle: clean slope
        n.leak_slope = 0.5 * n.mem_total / (LEAK_DAYS_TO_ZERO + span_days)
        at_end = n.mem_total * 0.5 - n.leak_slope * span_days
        truth.update(
            metric="mem_available_mb",
            slope_mb_per_day=n.leak_slope,
            available_at_end_mb=at_end,
            days_to_zero=at_end / n.leak_slope,
            mem_total_mb=n.mem_total,
            window=whole,
        )
    elif kind == "cpu_growth":
        n.growth_rate = GROWTH_RATE
        peak = _solve_growth_base(n, start, end, iv)
        truth.update(
            metric="cpu_total_pct",
            rate_pct_per_day=GROWTH_RATE,
            peak_at_end_pct=peak,
            days_to_100=(100.0 - peak) / GROWTH_RATE,
            window=whole,
        )
    elif kind == "anomaly_spike":
        first, last = _spike_slots(end, iv)
        first = max(first, start)
        t = np.arange(first, last + 1, iv, dtype=np.int64)
        zc = np.zeros((2 * spec.containers, t.size))
        clean = _model(n, t, np.zeros((_NODE_CHANNELS, t.size)), zc, fleet)
        baseline = float(np.mean(clean["disk_write_mb_s"] - SPIKE_SIZE))
        truth.update(
            metric="disk_write_mb_s",
            start=first,
            end=last,
            size=SPIKE_SIZE,
            baseline=baseline,
            window=_slot_window(first, last, iv),
        )
    elif kind == "outage_gap":
        gap_start, gap_end = _gap_slots(end, iv)
        slots = np.arange(start, end + 1, iv, dtype=np.int64)
        missing = (slots >= gap_start) & (slots < gap_end)
        day = slots > end - 86400
        truth.update(
            gap_start=gap_start,
            gap_end=gap_end,
            missing_samples=int(missing.sum()),
            availability_24h=1.0 - float((missing & day).sum()) / float(86400 // iv),
            window=_slot_window(gap_start, gap_end - iv, iv),
        )
    elif kind == "stale":
        last = _last_stamp(fleet, n, _stale_last(end, iv))
        truth.update(last_sample_time=last, stale_seconds=end - last)
    elif kind == "noisy_neighbour":
        truth.update(
            container=fleet._container_names[0].decode() if spec.containers else None,
            share_of_node_cpu=NOISY_SHARE,
            node_cpu_pct=NOISY_NODE_CPU,
            window=_recent_window(start, end, NOISY_S, iv),
        )
    elif kind == "correlated_metrics":
        count = (end - start) // iv + 1
        wrng = np.random.default_rng([spec.seed, n.index, 3])
        walk = np.cumsum(wrng.standard_normal(count))
        x = np.arange(count)
        walk -= np.polyval(np.polyfit(x, walk, 1), x) if count > 1 else walk
        scale = np.abs(walk).max()
        n.walk = walk * (10.0 / scale) if scale > 0 else walk
        # net_rx = a + b * cpu + e; pick sd(e) for Pearson ~0.95 from the expected sd of cpu.
        b = 0.2
        sd_cpu = math.sqrt(n.cpu_amp**2 / 2 + float(np.var(n.walk)) + 4.0)
        sd_e = b * sd_cpu * math.sqrt(1 / CORR_TARGET**2 - 1)
        n.corr = (float(n.io_level[2]) / 2, b, sd_e)
        cpu, rx = _node_series(fleet, n, ("cpu_total_pct", "net_rx_mb_s"))
        truth.update(
            metric_a="cpu_total_pct",
            metric_b="net_rx_mb_s",
            coefficient=float(np.corrcoef(cpu, rx)[0, 1]),
            window=whole,
        )
    return truth


def _last_stamp(fleet: Fleet, n: _Node, slot: int) -> int:
    """The stamp of node `n`'s row at `slot` (its slot itself unless the node is shaped)."""
    if not n.shaped:
        return slot
    block_s = BLOCK_SLOTS * fleet.spec.interval
    node_dt, cont_dt = _row_dtype(len(n.name), fleet._container_names.dtype.itemsize)
    got = _node_rows(fleet, n, slot // block_s, node_dt, cont_dt, slot - 1, slot)
    assert got is not None and got[0][0].size == 1
    return int(got[0][0]["sample_time"][0])


def _setup_disk_filling(fleet: Fleet, n: _Node) -> dict:
    """The disk-filling finding: node `n`'s fullest filesystem grows DISK_FILL_PER_DAY and
    is DISK_FILL_AT_END full at the fleet's end (a disk-full emergency now, an exhaustion
    the capacity forecast sees days ahead). It rides on the memory-leak node, a leaking
    service that also logs more and more, so every other node keeps its single finding and
    the fleets keep their healthy nodes."""
    n.disk_at_end, n.disk_per_day = DISK_FILL_AT_END, DISK_FILL_PER_DAY
    iv = fleet.spec.interval
    return {
        "kind": "disk_filling",
        "node": n.name.decode(),
        "metric": "disk_used_ratio",
        "value": DISK_FILL_AT_END,
        "tolerance": 0.001,
        "rate_per_day": DISK_FILL_PER_DAY,
        "days_to_full": (1.0 - DISK_FILL_AT_END) / DISK_FILL_PER_DAY,
        "window": _recent_window(fleet.start, fleet.end, RECENT_S, iv),
    }


def _solve_growth_base(n: _Node, start: int, end: int, iv: int) -> float:
    """Set the base CPU so the noiseless daily peak on the last day is GROWTH_PEAK; the
    peak is piecewise linear in the base (weekend factor), so Newton settles in a few steps."""
    t = np.arange(max(start, end - 86400 + iv), end + 1, iv, dtype=np.int64)
    weekend = ((t // 86400 + 3) % 7) >= 5
    peak = 0.0
    for _ in range(20):
        cpu = _cpu_clean(n, t, start, iv)
        i = int(np.argmax(cpu))
        peak = float(cpu[i])
        if abs(peak - GROWTH_PEAK) < 1e-9:
            break
        n.cpu_base += (GROWTH_PEAK - peak) / (0.7 if weekend[i] else 1.0)
    return peak


def _node_series(fleet: Fleet, n: _Node, columns: tuple[str, ...]) -> list[np.ndarray]:
    """One node's emitted values of `columns` over the whole fleet window (for the truth)."""
    iv = fleet.spec.interval
    block_s = BLOCK_SLOTS * iv
    out: list[list[np.ndarray]] = [[] for _ in columns]
    for k in range(fleet.start // block_s, fleet.end // block_s + 1):
        t, zs = _block_noise(fleet.spec, [n], k, fleet.start, fleet.end)
        if t.size == 0:
            continue
        values = _model(n, t, zs[0][0], zs[0][1], fleet)
        for acc, col in zip(out, columns, strict=True):
            acc.append(values[col][values["present"]])
    return [np.concatenate(acc) for acc in out]


def simulate(spec: FleetSpec, *, count_rows: bool = True) -> Fleet:
    """Build the fleet and its ground truth; rows are generated later by `copy_chunks`.
    A shaped fleet's rows are counted by generating them once; `count_rows=False` skips
    that (a live top-up needs no count) and leaves `row_count` at the slot count."""
    if spec.nodes < 1 or spec.containers < 0 or spec.interval < 1 or spec.days <= 0:
        raise ValueError(f"invalid fleet spec: {spec}")
    spec = spec.shapes()
    block_s = BLOCK_SLOTS * spec.interval
    if any(i < 1 or block_s % i for i in spec.intervals):
        raise ValueError(f"every interval must divide the {block_s} s noise block: {spec}")
    if not 0 <= spec.late_share <= 1 or not 0 <= spec.ar_phi < 1 or spec.miss_rate < 0:
        raise ValueError(f"late_share and ar_phi are shares, miss_rate a rate: {spec}")
    unknown = set(spec.null_columns) - set(_NODE_VALUE_COLUMNS)
    if unknown:
        raise ValueError(f"not node value columns: {sorted(unknown)}")
    iv = spec.interval
    end = int(time.time()) if spec.end is None else int(spec.end)
    end -= end % iv
    slots = max(1, round(spec.days * 86400 / iv))
    start = end - (slots - 1) * iv

    total = spec.nodes + spec.dead_nodes + spec.container_only_nodes
    width = max(2, len(str(total)))
    names = [f"node-{i:0{width}d}".encode() for i in range(1, total + 1)]
    cwidth = len(str(spec.containers))
    cnames = np.array(
        [f"{CONTAINER_KINDS[j % 6]}-{j + 1:0{cwidth}d}".encode() for j in range(spec.containers)],
        dtype=f"S{3 + 1 + cwidth}",
    )
    findings = [None, *FINDING_KINDS][: spec.nodes] if spec.findings else []
    findings += [None] * (total - len(findings))
    if not spec.containers:  # a noisy neighbour needs a container; that node stays healthy
        findings = [None if f == "noisy_neighbour" else f for f in findings]
    nodes = [
        _draw_node(spec, i, name, kind)
        for i, (name, kind) in enumerate(zip(names, findings, strict=True), start=1)
    ]
    _shape_nodes(spec, nodes)

    fleet = Fleet(spec, start, end, {}, 0, nodes, cnames)
    finding_truth = [_setup_findings(fleet, n) for n in nodes if n.finding]
    leak = next((n for n in nodes if n.finding == DISK_FILLING_ON), None)
    if leak is not None:
        finding_truth.append(_setup_disk_filling(fleet, leak))

    # Only the gap and the stale node miss slots; count them as the model drops them.
    slot_times = np.arange(start, end + 1, iv, dtype=np.int64)
    gap_start, gap_end = _gap_slots(end, iv)
    present = {
        "outage_gap": int(((slot_times < gap_start) | (slot_times >= gap_end)).sum()),
        "stale": int((slot_times <= _stale_last(end, iv)).sum()),
    }
    fleet.row_count = sum(
        present.get(n.finding or "", slot_times.size) * (1 + spec.containers) for n in nodes
    )
    if count_rows and any(n.shaped or n.kind != "normal" or n.interval for n in nodes):
        fleet.row_count = sum(rows for _, rows in fleet._row_chunks())  # misses are random

    fleet.truth = {
        "spec": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items()},
        "start": start,
        "end": end,
        "interval": iv,
        "nodes": {
            n.name.decode(): {
                "cpu_count": n.cpu_count,
                "mem_total_mb": n.mem_total,
                "peak_hour_utc": n.peak_hour,
                "containers": [c.decode() for c in cnames],
                "finding": n.finding,
                "interval": n.interval or iv,
                "phase": n.phase,
                "lead": n.lead,
                "kind": n.kind,
                "shaped": n.shaped,
                "null_columns": list(n.null_columns),
                "disk_used_ratio_at_end": n.disk_at_end,
                "disk_used_ratio_per_day": n.disk_per_day,
                "inodes_used_ratio_at_end": n.inodes_at_end,
            }
            for n in nodes
        },
        "findings": finding_truth,
        "healthy_nodes": [n.name.decode() for n in nodes if n.finding is None],
    }
    return fleet


def _shape_nodes(spec: FleetSpec, nodes: list[_Node]) -> None:
    """Give the healthy nodes their sampler shapes and the extra nodes their kind."""
    timing = bool(
        spec.intervals
        or spec.jitter_s
        or spec.late_share
        or spec.phases
        or spec.container_offset_s
        or spec.miss_rate
        or spec.ar_phi
        or spec.null_columns
        or spec.name_variants
    )
    healthy = [n for n in nodes if n.finding is None]
    for j, n in enumerate(healthy):
        if n.index > spec.nodes:
            extra = n.index - spec.nodes
            n.kind = "dead" if extra <= spec.dead_nodes else "container_only"
        if not timing:
            continue
        n.shaped = True
        if spec.intervals:
            n.interval = spec.intervals[j % len(spec.intervals)]
        rng = np.random.default_rng([spec.seed, n.index, 6])
        own = n.interval or spec.interval
        n.phase = int(rng.integers(0, own)) if spec.phases else 0
        n.offset = (
            int(rng.integers(1, spec.container_offset_s + 1)) if spec.container_offset_s else 0
        )
        if j % 3 == 2:
            n.null_columns = spec.null_columns
    if not timing:
        return
    for n in nodes:
        if n.finding is None:
            continue
        n.shaped = True  # jitter, late stamps, AR noise; no misses, no NULL columns
        rng = np.random.default_rng([spec.seed, n.index, 6])
        if spec.phases:  # every stamp before its slot, after the previous one's
            lo = spec.jitter_s + 2
            n.lead = int(rng.integers(lo, max(lo, spec.interval // 2) + 1))
        n.offset = (
            int(rng.integers(1, spec.container_offset_s + 1)) if spec.container_offset_s else 0
        )


def load_fleet(
    store: Store, spec: FleetSpec, *, progress: Callable[[int], object] | None = None
) -> Fleet:
    """Simulate `spec` and COPY it into the store's table; `progress(rows)` after each chunk."""
    return copy_fleet(store, simulate(spec), progress=progress)


def copy_fleet(
    store: Store, fleet: Fleet, *, progress: Callable[[int], object] | None = None
) -> Fleet:
    """COPY a simulated fleet into the store's table (created if missing, and its days'
    partitions if it is partitioned), with the host facts when the table has their
    columns; the indexes are built after the load, which is
    several times cheaper than maintaining them row by row."""
    init_table(store, indexes=False)
    ensure_partitions(store, fleet.start, fleet.end)
    facts = table_has_facts(store)
    store.copy_in(copy_columns(facts), fleet.copy_chunks(facts=facts), progress=progress)
    init_table(store)
    return fleet
