"""The simulated fleet, checked at the byte level: the stream is parsed back here with an
independent BINARY COPY reader, and every finding's stated size is checked on the rows."""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import pytest

from exporter.schema import COLUMNS, CONTAINER_METRICS, HOST_FACTS, NODE_METRICS
from exporter.simulate import FINDING_KINDS, Fleet, FleetSpec, copy_fleet, simulate
from exporter.store import Store

END = 1_700_000_040  # a Tuesday, 22:14 UTC, aligned to 60 s
HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\0\0\0\0" + b"\0\0\0\0"
_I16, _I32, _I64, _F64 = (struct.Struct(f) for f in (">h", ">i", ">q", ">d"))


def parse_copy(data: bytes, columns: tuple = COLUMNS) -> list[tuple]:
    """Rows of a BINARY COPY body (no header/trailer), None for NULL, decoded by SQL type."""
    rows, pos, n = [], 0, len(data)
    kinds = [c.sql_type for c in columns]
    while pos < n:
        (count,) = _I16.unpack_from(data, pos)
        assert count == len(columns), f"bad field count {count} at {pos}"
        pos += 2
        row = []
        for kind in kinds:
            (length,) = _I32.unpack_from(data, pos)
            pos += 4
            if length == -1:
                row.append(None)
                continue
            raw = data[pos : pos + length]
            pos += length
            if kind == "bigint":
                assert length == 8
                row.append(_I64.unpack(raw)[0])
            elif kind == "double precision":
                assert length == 8
                row.append(_F64.unpack(raw)[0])
            elif kind == "boolean":
                assert length == 1 and raw in (b"\0", b"\1")
                row.append(raw == b"\1")
            else:
                row.append(raw.decode("utf-8"))
        rows.append(tuple(row))
    assert pos == n
    return rows


def stream(fleet: Fleet) -> tuple[bytes, list[tuple[bytes, int]]]:
    chunks = list(fleet.copy_chunks())
    return b"".join(c for c, _ in chunks), chunks


class Table:
    """Parsed rows as numpy columns, with per-node selections."""

    def __init__(self, fleet: Fleet):
        data, self.chunks = stream(fleet)
        assert data.startswith(HEADER) and data.endswith(b"\xff\xff")
        self.rows = parse_copy(data[len(HEADER) : -2])
        cols = list(zip(*self.rows, strict=True))
        self.col = {}
        for c, values in zip(COLUMNS, cols, strict=True):
            if c.sql_type == "double precision":
                self.col[c.name] = np.array([np.nan if v is None else v for v in values])
            elif c.sql_type == "bigint":
                self.col[c.name] = np.array(values, dtype=np.int64)
            else:
                self.col[c.name] = np.array(values, dtype=object)
        self.flag = self.col["node_flag"].astype(bool)

    def node(self, name: str, metric: str = "cpu_total_pct") -> tuple[np.ndarray, np.ndarray]:
        """(sample_time, metric) of the node rows of `name`, in time order."""
        m = self.flag & (self.col["node_name"] == name)
        order = np.argsort(self.col["sample_time"][m], kind="stable")
        return self.col["sample_time"][m][order], self.col[metric][m][order]

    def container(self, node: str, container: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        m = (self.col["node_name"] == node) & (self.col["container_name"] == container)
        order = np.argsort(self.col["sample_time"][m], kind="stable")
        return self.col["sample_time"][m][order], self.col[metric][m][order]


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return simulate(FleetSpec(nodes=16, containers=2, days=2, end=END))


@pytest.fixture(scope="module")
def table(fleet: Fleet) -> Table:
    return Table(fleet)


@pytest.fixture(scope="module")
def month() -> tuple[Fleet, Table]:
    """30 days, no containers: the leak (node-05) and growth (node-06) cases."""
    f = simulate(FleetSpec(nodes=6, containers=0, days=30, end=END))
    return f, Table(f)


def in_window(t: np.ndarray, window: dict) -> np.ndarray:
    return (t >= window["start"]) & (t <= window["end"])


# -- the stream ---------------------------------------------------------------------------


def test_header_trailer_chunks_and_row_count(fleet: Fleet, table: Table) -> None:
    chunks = table.chunks
    assert chunks[0][0].startswith(HEADER)
    assert chunks[-1][0].endswith(b"\xff\xff")
    assert len(chunks) > 2 and all(len(c) < 8 << 20 for c, _ in chunks)
    assert sum(r for _, r in chunks) == fleet.row_count == len(table.rows)
    # Every chunk ends on a row boundary and reports its own rows.
    for i, (data, rows) in enumerate(chunks):
        body = data[len(HEADER) if i == 0 else 0 : -2 if i == len(chunks) - 1 else None]
        assert len(parse_copy(body)) == rows
    slots = (fleet.end - fleet.start) // 60 + 1
    assert slots == 2 * 1440
    lost = 180 + 30  # outage gap + stale tail
    assert fleet.row_count == (16 * slots - lost) * 3


def test_deterministic_and_seeded(fleet: Fleet) -> None:
    again = simulate(FleetSpec(nodes=16, containers=2, days=2, end=END))
    assert hashlib.sha256(stream(again)[0]).digest() == hashlib.sha256(stream(fleet)[0]).digest()
    assert again.truth == fleet.truth
    other = simulate(FleetSpec(nodes=16, containers=2, days=2, end=END, seed=7))
    assert stream(other)[0] != stream(fleet)[0]
    assert other.truth != fleet.truth


def test_node_data_does_not_depend_on_fleet_size(table: Table) -> None:
    small = Table(simulate(FleetSpec(nodes=3, containers=2, days=2, end=END)))
    for name in ("node-01", "node-02", "node-03"):
        for metric in NODE_METRICS:
            t1, v1 = small.node(name, metric)
            t2, v2 = table.node(name, metric)
            np.testing.assert_array_equal(t1, t2)
            np.testing.assert_array_equal(v1, v2)


def test_null_pattern_and_names(fleet: Fleet, table: Table) -> None:
    col, flag = table.col, table.flag
    assert flag.any() and (~flag).any()
    assert all(v is None for v in col["container_name"][flag])
    for c in COLUMNS[4:]:
        nulls = np.isnan(col[c.name])
        assert not nulls[flag].any() if c.name in NODE_METRICS else nulls[flag].all(), c.name
        want_set = c.name in CONTAINER_METRICS
        assert not nulls[~flag].any() if want_set else nulls[~flag].all(), c.name
    assert set(col["node_name"]) == set(fleet.truth["nodes"])
    assert set(col["container_name"][~flag]) == {"app-1", "sql-2"}
    assert len({len(n) for n in col["node_name"]}) == 1  # fixed width
    assert fleet.truth["nodes"]["node-01"]["containers"] == ["app-1", "sql-2"]
    # Each node reports its containers in the same slots as itself.
    for name in fleet.truth["nodes"]:
        t_node, _ = table.node(name)
        for c in ("app-1", "sql-2"):
            np.testing.assert_array_equal(table.container(name, c, "c_rss_mb")[0], t_node)


def test_times_aligned_in_range_and_near_time_order(fleet: Fleet, table: Table) -> None:
    t = table.col["sample_time"]
    assert t.min() == fleet.start and t.max() == fleet.end
    assert (t % 60 == 0).all()
    block = t // (360 * 60)
    assert (np.diff(block) >= 0).all()  # emitted block by block
    node_t = t[table.flag]
    assert (np.diff(node_t) >= 0).all()  # node rows in time order
    names = table.col["node_name"][table.flag]
    same = np.diff(node_t) == 0
    assert (names[1:][same] > names[:-1][same]).all()  # then by node


def test_truth_shape(fleet: Fleet) -> None:
    truth = fleet.truth
    assert json.loads(json.dumps(truth)) == truth
    assert [f["kind"] for f in truth["findings"]] == [*FINDING_KINDS, "disk_filling"]
    nodes = [f"node-{i:02d}" for i in range(2, 14)]
    assert [f["node"] for f in truth["findings"]] == [*nodes, "node-05"]  # with the leak
    assert truth["healthy_nodes"] == ["node-01", "node-14", "node-15", "node-16"]
    assert truth["nodes"]["node-01"]["finding"] is None
    assert truth["nodes"]["node-02"]["finding"] == "cpu_saturation"
    for info in truth["nodes"].values():
        assert info["cpu_count"] in (4, 8, 16)
        assert info["mem_total_mb"] in (16384, 32768, 65536)
    assert (truth["start"], truth["end"], truth["interval"]) == (fleet.start, fleet.end, 60)
    assert fleet.truth_for("stale")["node"] == "node-09"
    assert fleet.truth_for("no_such_kind") is None


def test_few_nodes_truncate_findings() -> None:
    f = simulate(FleetSpec(nodes=4, containers=0, days=1, end=END))
    assert [x["kind"] for x in f.truth["findings"]] == list(FINDING_KINDS[:3])
    assert f.truth_for("memory_leak") is None
    assert f.truth["healthy_nodes"] == ["node-01"]
    assert sum(r for _, r in f.copy_chunks()) == f.row_count == 4 * 1440


# -- findings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["cpu_saturation", "memory_exhausted", "overheating", "iowait_high"]
)
def test_recent_level_findings(fleet: Fleet, table: Table, kind: str) -> None:
    f = fleet.truth_for(kind)
    t, v = table.node(f["node"], f["metric"])
    win = in_window(t, f["window"])
    assert f["window"]["end"] == fleet.end and f["window"]["samples"] == 20 == win.sum()
    assert np.abs(v[win] - f["value"]).max() <= f["tolerance"] + 1e-9
    assert np.abs(v[win] - f["value"]).max() > 0  # noisy, not constant
    before = v[~win][-120:]
    assert np.abs(before - f["value"]).min() > 10 * f["tolerance"]


def test_cpu_saturation_keeps_load_physical(fleet: Fleet, table: Table) -> None:
    f = fleet.truth_for("cpu_saturation")
    cpus = fleet.truth["nodes"][f["node"]]["cpu_count"]
    t, load = table.node(f["node"], "load_1m")
    per_cpu = load[in_window(t, f["window"])] / cpus
    assert (per_cpu > 0.7).all() and (per_cpu < 1.5).all()


def test_memory_exhausted_is_three_percent(fleet: Fleet, table: Table) -> None:
    f = fleet.truth_for("memory_exhausted")
    t, v = table.node(f["node"], "mem_available_mb")
    pct = v[in_window(t, f["window"])] / f["mem_total_mb"] * 100
    assert np.abs(pct - 3.0).max() <= 0.1 + 1e-9


def test_network_errors(fleet: Fleet, table: Table) -> None:
    f = fleet.truth_for("network_errors")
    for metric, value in f["metrics"].items():
        t, v = table.node(f["node"], metric)
        win = in_window(t, f["window"])
        assert win.sum() == 20 and (v[win] == value).all() and (v[~win] == 0).all()
    for metric in ("net_tx_errs_s", "net_tx_drops_s"):
        assert (table.node(f["node"], metric)[1] == 0).all()


def test_anomaly_spike(fleet: Fleet, table: Table) -> None:
    f = fleet.truth_for("anomaly_spike")
    assert f["end"] == fleet.end - 7200 and f["end"] - f["start"] == 14 * 60
    t, v = table.node(f["node"], f["metric"])
    win = in_window(t, f)
    assert win.sum() == 15
    assert abs(v[win].mean() - f["baseline"] - f["size"]) < 1.5
    near = (t > f["start"] - 3600) & (t < f["end"] + 3600) & ~win
    assert abs(v[near].mean() - f["baseline"]) < 1.5
    assert v[win].min() > v[near].max() + 20


def test_outage_gap(fleet: Fleet, table: Table) -> None:
    f = fleet.truth_for("outage_gap")
    assert (f["gap_start"], f["gap_end"]) == (fleet.end - 36000, fleet.end - 25200)
    assert f["missing_samples"] == 180 and f["availability_24h"] == 0.875
    all_slots = np.arange(fleet.start, fleet.end + 1, 60)
    t, _ = table.node(f["node"])
    missing = np.setdiff1d(all_slots, t)
    assert missing.size == f["missing_samples"]
    assert missing.min() == f["gap_start"] and missing.max() == f["gap_end"] - 60
    for c in ("app-1", "sql-2"):
        np.testing.assert_array_equal(table.container(f["node"], c, "cpu_total_pct")[0], t)
    day = t > fleet.end - 86400
    assert day.sum() / 1440 == f["availability_24h"]


def test_stale(fleet: Fleet, table: Table) -> None:
    f = fleet.truth_for("stale")
    assert f["last_sample_time"] == fleet.end - 1800
    in_node = table.col["node_name"] == f["node"]
    assert table.col["sample_time"][in_node].max() == f["last_sample_time"]
    t, _ = table.node(f["node"])
    assert t.size == (f["last_sample_time"] - fleet.start) // 60 + 1


def test_noisy_neighbour(fleet: Fleet, table: Table) -> None:
    f = fleet.truth_for("noisy_neighbour")
    assert f["container"] == "app-1" and f["window"]["samples"] == 60
    t, node_cpu = table.node(f["node"])
    win = in_window(t, f["window"])
    _, noisy = table.container(f["node"], "app-1", "cpu_total_pct")
    _, other = table.container(f["node"], "sql-2", "cpu_total_pct")
    np.testing.assert_allclose(noisy[win] / node_cpu[win], f["share_of_node_cpu"], rtol=1e-12)
    assert np.abs(node_cpu[win] - f["node_cpu_pct"]).max() <= 0.3 + 1e-9
    assert (noisy[win] + other[win] < node_cpu[win]).all()
    # The other container keeps its absolute CPU: no jump at the window's start.
    hour_before = (t > f["window"]["start"] - 3600) & ~win
    assert abs(other[win].mean() / other[hour_before].mean() - 1) < 0.25
    assert (noisy[hour_before] / node_cpu[hour_before]).max() < 0.6


def test_correlated_metrics_truth_matches_rows(fleet: Fleet, table: Table) -> None:
    f = fleet.truth_for("correlated_metrics")
    _, a = table.node(f["node"], f["metric_a"])
    _, b = table.node(f["node"], f["metric_b"])
    assert a.size == f["window"]["samples"] == 2880
    assert f["coefficient"] == pytest.approx(np.corrcoef(a, b)[0, 1], rel=1e-12)
    assert 0.9 < f["coefficient"] < 0.99
    for name in fleet.truth["healthy_nodes"]:  # the pair is a finding, not the norm
        assert abs(np.corrcoef(table.node(name)[1], table.node(name, f["metric_b"])[1])[0, 1]) < 0.7


def test_memory_leak_slope(month: tuple[Fleet, Table]) -> None:
    fleet, table = month
    f = fleet.truth_for("memory_leak")
    assert f["node"] == "node-05" and f["days_to_zero"] == pytest.approx(20.0)
    t, v = table.node(f["node"], "mem_available_mb")
    slope, icpt = np.polyfit((t - fleet.start) / 86400.0, v, 1)
    assert -slope == pytest.approx(f["slope_mb_per_day"], rel=0.02)
    at_end = icpt + slope * (fleet.end - fleet.start) / 86400.0
    assert at_end == pytest.approx(f["available_at_end_mb"], rel=0.02)
    assert f["available_at_end_mb"] / f["slope_mb_per_day"] == pytest.approx(f["days_to_zero"])


def test_memory_leak_slope_on_a_short_window(fleet: Fleet, table: Table) -> None:
    f = fleet.truth_for("memory_leak")
    t, v = table.node(f["node"], "mem_available_mb")
    slope = np.polyfit((t - fleet.start) / 86400.0, v, 1)[0]
    assert -slope == pytest.approx(f["slope_mb_per_day"], rel=0.02)


def test_cpu_growth(month: tuple[Fleet, Table]) -> None:
    fleet, table = month
    f = fleet.truth_for("cpu_growth")
    assert f["rate_pct_per_day"] == 0.8 and f["peak_at_end_pct"] == pytest.approx(75.0)
    assert f["days_to_100"] == pytest.approx(25 / 0.8)
    t, v = table.node(f["node"])
    # Daily maxima of whole weekdays (weekends are 30 % lighter) grow at the stated rate.
    day = t // 86400
    weekdays = [d for d in np.unique(day)[1:-1] if (d + 3) % 7 < 5]
    daily_max = np.array([v[day == d].max() for d in weekdays])
    rate = np.polyfit(np.array(weekdays, dtype=float), daily_max, 1)[0]
    assert rate == pytest.approx(0.8, rel=0.1)
    last_day = v[t > fleet.end - 86400]
    assert 72 < last_day.max() < 83


def check_healthy(fleet: Fleet, table: Table, name: str) -> None:
    cpus = fleet.truth["nodes"][name]["cpu_count"]
    _, cpu = table.node(name)
    assert cpu.max() < 80 and cpu.min() >= 0
    assert table.node(name, "cpu_iowait_pct")[1].max() < 10
    _, avail = table.node(name, "mem_available_mb")
    _, total = table.node(name, "mem_total_mb")
    assert (avail / total).min() > 0.30
    _, temp = table.node(name, "temperature_c")
    assert temp.max() < 70
    assert -2.5 < np.mean(temp - (45 + 0.2 * cpu)) < 3.5  # 45 + 0.2 * cpu + node offset
    _, load = table.node(name, "load_1m")
    assert (load / cpus).max() < 1.5
    assert np.median(load / (cpu / 100 * cpus * 0.9)) == pytest.approx(1.0, abs=0.02)
    for metric in ("disk_read_mb_s", "disk_write_mb_s", "net_rx_mb_s", "net_tx_mb_s"):
        assert table.node(name, metric)[1].min() >= 0
    for metric in ("net_rx_errs_s", "net_tx_errs_s", "net_rx_drops_s", "net_tx_drops_s"):
        assert (table.node(name, metric)[1] == 0).all()
    containers = fleet.truth["nodes"][name]["containers"]
    if containers:
        share = sum(table.container(name, c, "cpu_total_pct")[1] for c in containers)
        assert (share < cpu).all()


def test_healthy_nodes_stay_healthy(fleet: Fleet, table: Table) -> None:
    for name in fleet.truth["healthy_nodes"]:
        check_healthy(fleet, table, name)


def test_healthy_node_over_a_month_has_cycles_but_no_trend(month: tuple[Fleet, Table]) -> None:
    fleet, table = month
    check_healthy(fleet, table, "node-01")
    t, cpu = table.node("node-01")
    days = (t - fleet.start) / 86400.0
    assert abs(np.polyfit(days, cpu, 1)[0]) < 0.1
    _, avail = table.node("node-01", "mem_available_mb")
    assert abs(np.polyfit(days, avail, 1)[0]) < 0.001 * avail.mean()
    # Daily cycle peaking at the recorded hour; weekends 30 % lighter.
    hour = (t % 86400) // 3600
    by_hour = np.array([cpu[hour == h].mean() for h in range(24)])
    peak = fleet.truth["nodes"]["node-01"]["peak_hour_utc"]
    assert min(abs(int(by_hour.argmax()) - peak), 24 - abs(int(by_hour.argmax()) - peak)) <= 1
    weekend = ((t // 86400 + 3) % 7) >= 5
    assert cpu[weekend].mean() / cpu[~weekend].mean() == pytest.approx(0.7, abs=0.05)


# -- sampler shapes -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def shaped() -> tuple[Fleet, Table]:
    spec = FleetSpec(
        nodes=15, containers=2, days=1, end=END, realistic=True, dead_nodes=1,
        container_only_nodes=1,
    )  # fmt: skip
    f = simulate(spec)
    return f, Table(f)


def test_shapes_keep_the_findings_truth(shaped: tuple[Fleet, Table]) -> None:
    """Finding nodes are shaped too (jitter, late stamps, a lead, AR noise) and keep their
    exact truth: the clean fleet's windows and sizes, every sample there (none missed),
    each stamped inside its slot and before it; the stale node's truth is its real last
    stamp and the correlation its rows' coefficient."""
    f, table = shaped
    clean = simulate(FleetSpec(nodes=15, containers=2, days=1, end=END))
    ctable = Table(clean)
    moved = {"stale": {"last_sample_time", "stale_seconds"}, "correlated_metrics": {"coefficient"}}
    for got, want in zip(f.truth["findings"], clean.truth["findings"], strict=True):
        keep = set(got) - moved.get(got["kind"], set())
        assert {k: got[k] for k in keep} == {k: want[k] for k in keep}
    for finding in f.truth["findings"]:
        node = finding["node"]
        info = f.truth["nodes"][node]
        assert info["shaped"] and info["interval"] == 60 and 5 <= info["lead"] <= 30
        t, _ = table.node(node)
        slots, _ = ctable.node(node)
        assert t.size == slots.size
        assert ((slots - 60 < t) & (t < slots)).all()
        assert len(set((slots - t).tolist())) > 3  # the stamps really jitter
        if "value" in finding and finding.get("metric") in table.col:
            w = finding["window"]
            _, v = table.node(node, finding["metric"])
            inside = (slots >= w["start"]) & (slots <= w["end"])
            assert inside.sum() == w["samples"]
            assert np.abs(v[inside] - finding["value"]).max() <= finding["tolerance"]
    stale = f.truth_for("stale")
    assert table.node(stale["node"])[0].max() == stale["last_sample_time"]
    assert stale["stale_seconds"] == f.end - stale["last_sample_time"] > 1800
    pair = f.truth_for("correlated_metrics")
    _, cpu = table.node(pair["node"], "cpu_total_pct")
    _, rx = table.node(pair["node"], "net_rx_mb_s")
    assert np.corrcoef(cpu, rx)[0, 1] == pytest.approx(pair["coefficient"], abs=1e-9)
    assert sum(r for _, r in table.chunks) == f.row_count == len(table.rows)


def test_shaped_nodes_sample_at_their_own_interval_with_jitter(shaped) -> None:
    f, table = shaped
    seen = set()
    for name in f.truth["healthy_nodes"]:
        info = f.truth["nodes"][name]
        if info["kind"] != "normal":
            continue
        t, _ = table.node(name)
        steps = np.diff(t)
        iv = info["interval"]
        seen.add(iv)
        assert np.median(steps) == pytest.approx(iv, abs=1)
        ok = steps[steps < 1.5 * iv]  # consecutive samples, not a missed one
        assert ok.min() >= iv - 7 and ok.max() <= iv + 7  # +-3 s jitter and 1 s late
        assert len(set(steps.tolist())) > 3  # the stamps really jitter
        assert (t % 1 == 0).all()
    assert seen == {15, 60, 300}


def test_container_rows_trail_their_node_row(shaped) -> None:
    f, table = shaped
    name = f.truth["healthy_nodes"][0]
    t, _ = table.node(name)
    ct, _ = table.container(name, "app-1", "c_rss_mb")
    offsets = set((ct[: len(t)] - t[: len(ct)]).tolist())
    assert len(offsets) == 1 and 1 <= offsets.pop() <= 4


def test_dead_container_only_and_null_nodes(shaped) -> None:
    f, table = shaped
    names = sorted(f.truth["nodes"])
    dead, container_only = names[-2], names[-1]
    assert f.truth["nodes"][dead]["kind"] == "dead"
    t, _ = table.node(dead)
    assert t.size == 1 and t[0] - f.start <= f.truth["nodes"][dead]["interval"] + 4
    assert table.node(container_only)[0].size == 0
    assert table.container(container_only, "app-1", "c_rss_mb")[0].size > 1000
    nulls = [n for n, v in f.truth["nodes"].items() if v["null_columns"]]
    assert nulls
    for name in nulls:
        _, temp = table.node(name, "temperature_c")
        _, cpu = table.node(name)
        assert np.isnan(temp).all() and not np.isnan(cpu).any()


def test_ar_noise_is_autocorrelated() -> None:
    """AR(1) noise of phi 0.8: lag-1 autocorrelation of the healthy CPU's residual near 0.8
    (white noise: near 0)."""
    lag1 = {}
    for phi in (0.0, 0.8):
        f = simulate(FleetSpec(nodes=1, containers=0, days=1, end=END, ar_phi=phi))
        _, cpu = Table(f).node("node-01")
        resid = cpu - np.convolve(cpu, np.ones(61) / 61, mode="same")
        r = resid[100:-100]
        lag1[phi] = float(np.corrcoef(r[:-1], r[1:])[0, 1])
    assert abs(lag1[0.0]) < 0.1
    assert 0.6 < lag1[0.8] < 0.85


def test_bad_shape_options_are_refused() -> None:
    with pytest.raises(ValueError, match="divide"):
        simulate(FleetSpec(days=1, intervals=(7,)))
    with pytest.raises(ValueError, match="not node value columns"):
        simulate(FleetSpec(days=1, null_columns=("nope",)))


def test_name_variants() -> None:
    f = simulate(FleetSpec(nodes=1, containers=1, days=1, end=END, name_variants=True))
    table = Table(f)
    names = table.col["node_name"][table.flag]
    counts = {n: int((names == n).sum()) for n in set(names.tolist())}
    assert set(counts) == {"node-01", "NODE-01", "node-01 "}
    assert sum(counts.values()) == 1440 == f.row_count - 1440  # one container row per slot
    assert 0.03 < counts["NODE-01"] / 1440 < 0.07 and 0.03 < counts["node-01 "] / 1440 < 0.07


# -- host facts ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def facts() -> tuple[Fleet, dict[str, np.ndarray]]:
    """A week with the host-fact columns written (node rows only), parsed as columns."""
    f = simulate(FleetSpec(nodes=6, containers=1, days=7, end=END))
    data = b"".join(c for c, _ in f.copy_chunks(facts=True))
    columns = COLUMNS + HOST_FACTS
    rows = parse_copy(data[len(HEADER) : -2], columns)
    col = {
        c.name: np.array(v, dtype=object)
        for c, v in zip(columns, zip(*rows, strict=False), strict=True)
    }
    return f, col


def test_facts_stream_keeps_the_contract_columns(facts) -> None:
    fleet, col = facts
    plain = Table(fleet)
    for c in COLUMNS:
        assert list(col[c.name]) == list(plain.col[c.name] if c.sql_type != "double precision"
                                          else [None if np.isnan(v) else v
                                                for v in plain.col[c.name]])  # fmt: skip
    node = col["node_flag"].astype(bool)
    for c in HOST_FACTS:
        assert all(v is None for v in col[c.name][~node])
        values = col[c.name][node].astype(float)
        hi = 1.0 if c.name.endswith("ratio") else 100.0
        assert (values >= 0).all() and (values <= hi).all()


def fact_series(fleet, col, node: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    m = col["node_flag"].astype(bool) & (col["node_name"] == node)
    return col["sample_time"][m].astype(float), col[name][m].astype(float)


def test_disk_filling_node_fills_at_its_rate(facts) -> None:
    fleet, col = facts
    truth = fleet.truth_for("disk_filling")
    assert truth["node"] == "node-05"
    t, disk = fact_series(fleet, col, "node-05", "disk_used_ratio")
    slope, level = np.polyfit((t - fleet.end) / 86400.0, disk, 1)
    assert slope == pytest.approx(0.01, rel=0.01)
    assert level == pytest.approx(0.92, abs=0.0005)
    recent = (t >= truth["window"]["start"]) & (t <= truth["window"]["end"])
    assert recent.sum() == 20
    assert np.abs(disk[recent] - 0.92).max() <= truth["tolerance"]


def test_healthy_disks_stay_far_from_full_for_a_year(facts) -> None:
    fleet, col = facts
    for node in fleet.truth["healthy_nodes"]:
        t, disk = fact_series(fleet, col, node, "disk_used_ratio")
        slope, level = np.polyfit((t - fleet.end) / 86400.0, disk, 1)
        assert slope > 0 and level + 365 * slope < 0.95, node  # a year from disk-full
        _, inodes = fact_series(fleet, col, node, "inodes_used_ratio")
        assert inodes.max() < 0.2
        _, psi = fact_series(fleet, col, node, "psi_cpu_some_avg60")
        assert psi.max() < 10  # a healthy node barely stalls


def test_facts_written_only_into_a_table_that_has_them(fresh_dsn) -> None:
    fleet = simulate(FleetSpec(nodes=2, containers=1, days=0.05, end=END))
    with Store(fresh_dsn, "with_facts") as store:
        copy_fleet(store, fleet)
        with store.read() as cur:
            cur.execute("SELECT count(*) AS n FROM with_facts WHERE disk_used_ratio IS NOT NULL")
            assert next(iter(cur.fetchone().values())) == 2 * 72
    with Store(fresh_dsn, "contract_only") as store:
        with store.write() as cur:
            cur.execute("CREATE TABLE contract_only (LIKE with_facts)")
            for c in HOST_FACTS:
                cur.execute(f"ALTER TABLE contract_only DROP COLUMN {c.name}")
        copy_fleet(store, fleet)
        with store.read() as cur:
            cur.execute("SELECT count(*) AS n FROM contract_only")
            assert next(iter(cur.fetchone().values())) == fleet.row_count
