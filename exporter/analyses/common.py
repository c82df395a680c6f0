"""What every analysis shares: the clock (`now=`), the window, which values are valid, and
the de-duplicated source rows, all as SQL fragments composed with quoted identifiers.

Real tables hold NULL, NaN, +-Infinity, negative and absurd values, duplicate rows and rows
from the future. Every analysis reads through `window_rows`, which drops duplicates and
future rows, and through `clean`, which turns an invalid value into NULL so aggregates skip
it (NaN, infinities, out-of-range and subnormal values alike); `invalid_counts` says how many
were skipped, per node and column.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from psycopg import sql

from ..config import Config
from ..schema import CONTAINER_METRICS, NODE_METRICS
from ..store import Store

# Valid range of each metric; NaN and +-Infinity fall outside every range.
VALID_RANGES: dict[str, tuple[float, float]] = {
    "cpu_total_pct": (0, 100),
    "cpu_iowait_pct": (0, 100),
    "mem_available_mb": (0, 1e9),  # and never above mem_total_mb, see `clean`
    "mem_total_mb": (1, 1e9),
    "swap_used_mb": (0, 1e9),
    "c_rss_mb": (0, 1e9),
    "load_1m": (0, 1e6),
    "temperature_c": (-50, 150),
    "ctx_switches_s": (0, 1e10),
    "disk_read_mb_s": (0, 1e7),
    "disk_write_mb_s": (0, 1e7),
    "net_rx_mb_s": (0, 1e7),
    "net_tx_mb_s": (0, 1e7),
    "net_rx_errs_s": (0, 1e9),
    "net_tx_errs_s": (0, 1e9),
    "net_rx_drops_s": (0, 1e9),
    "net_tx_drops_s": (0, 1e9),
}
# The optional host facts (exporter/schema.py): apart, because a table may lack them and
# `window_rows` reads every column of VALID_RANGES.
OPTIONAL_RANGES: dict[str, tuple[float, float]] = {
    "disk_used_ratio": (0, 1),
    "inodes_used_ratio": (0, 1),
    "psi_cpu_some_avg60": (0, 100),
    "psi_memory_some_avg60": (0, 100),
    "psi_io_some_avg60": (0, 100),
}

# A nonzero value smaller than this is invalid too: its square (in a variance, a regression)
# rounds to zero, which PostgreSQL's float8 arithmetic reports as "value out of range:
# underflow" and fails the whole query. No metric is meaningful at that scale.
TINIEST_VALID = 1e-150

DAY = 86400
HOUR = 3600


class AnalysisError(Exception):
    """An analysis was asked something it cannot answer (bad window, bad `now`)."""


def resolve_now(now: float | None) -> int:
    """Unix seconds the analysis sees up to: `now` if given, else the wall clock."""
    if now is None:
        return int(time.time())
    try:
        value = float(now)
    except (TypeError, ValueError):
        raise AnalysisError(f"now must be unix seconds, got {now!r}") from None
    if not math.isfinite(value) or value < 0:
        raise AnalysisError(f"now must be unix seconds, got {now!r}")
    return int(value)


def window_seconds(amount: float, unit: int, name: str) -> int:
    """A positive window length in seconds (`hours=` or `days=` of a method)."""
    try:
        value = float(amount)
    except (TypeError, ValueError):
        raise AnalysisError(f"{name} must be a number, got {amount!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise AnalysisError(f"{name} must be positive, got {amount!r}")
    return max(1, int(value * unit))


def clean(column: str, alias: str | None = None) -> sql.Composable:
    """`column` when valid, else NULL: the form every aggregate reads."""
    lo, hi = VALID_RANGES.get(column) or OPTIONAL_RANGES[column]
    col = sql.Identifier(alias, column) if alias else sql.Identifier(column)
    condition = sql.SQL("{c} BETWEEN {lo} AND {hi} AND ({c} = 0 OR abs({c}) >= {tiny})").format(
        c=col, lo=sql.Literal(lo), hi=sql.Literal(hi), tiny=sql.Literal(TINIEST_VALID)
    )
    if column == "mem_available_mb":
        total = sql.Identifier(alias, "mem_total_mb") if alias else sql.Identifier("mem_total_mb")
        condition = sql.SQL("{} AND ({t} IS NULL OR {t} = 'NaN' OR {c} <= {t})").format(
            condition, t=total, c=col
        )
    return sql.SQL("(CASE WHEN {} THEN {} END)").format(condition, col)


def invalid_count(column: str) -> sql.Composable:
    """How many non-NULL values of `column` `clean` drops."""
    return sql.SQL("count({}) - count({})").format(sql.Identifier(column), clean(column))


def window_rows(store: Store, columns: tuple[str, ...] | None = None) -> sql.Composable:
    """The table's rows in (%(start)s, %(now)s], one per (node, container, sample_time), of
    this exporter's shard of the nodes.

    Of duplicate rows the one with the most valid values is kept (a broken copy never hides
    a good sample); rows without a node name are dropped. Parameters: start, now."""
    keys = ("sample_time", "node_name", "container_name", "node_flag")
    cols = (
        sql.SQL(", ").join(map(sql.Identifier, (*keys, *columns)))
        if columns is not None
        else sql.SQL("*")
    )
    quality = sql.SQL("num_nonnulls({})").format(
        sql.SQL(", ").join(clean(c) for c in (columns or VALID_RANGES))
    )
    return sql.SQL(
        "(SELECT DISTINCT ON (node_name, container_name, sample_time) {cols} FROM {t}"
        " WHERE sample_time > %(start)s AND sample_time <= %(now)s AND node_name IS NOT NULL"
        " AND {shard} ORDER BY node_name, container_name, sample_time, {quality} DESC)"
    ).format(cols=cols, t=store.table, shard=store.shard_filter, quality=quality)


NODE_ROW = sql.SQL("node_flag IS TRUE")
CONTAINER_ROW = sql.SQL("node_flag IS FALSE AND container_name IS NOT NULL")


def metric_columns(node: bool = True) -> tuple[str, ...]:
    return NODE_METRICS if node else CONTAINER_METRICS


# Core counts a machine commonly has: the estimate snaps to the nearest (in ratio).
COMMON_CPU_COUNTS = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)


def snap_cpu_count(estimate: float | None) -> int | None:
    if estimate is None or not math.isfinite(estimate) or estimate <= 0:
        return None
    return min(COMMON_CPU_COUNTS, key=lambda n: abs(math.log(n / estimate)))


class Advice(Protocol):
    """Capacity advice for a resource given its daily peak (percent) and trend (points per
    day); `PerformanceAnalyzer` subclasses may override it."""

    def _get_cpu_recommendation(self, current_avg: float, trend: float) -> str: ...

    def _get_memory_recommendation(self, current_avg: float, trend: float) -> str: ...


@dataclass
class Context:
    """What an analysis needs besides its arguments: where the data is, the thresholds,
    the CPU-count override, the capacity advice and the per-process caches (rollups,
    estimates)."""

    store: Store
    config: Config = field(default_factory=Config)
    cpu_count: int | None = None
    advice: Advice | None = None
    caches: dict[str, Any] = field(default_factory=dict)

    def cache(self, name: str, factory: Callable[[], Any]) -> Any:
        if name not in self.caches:
            self.caches[name] = factory()
        return self.caches[name]


def round_float(value: Any, digits: int = 6) -> float | None:
    """A JSON-safe float: None for NULL, NaN or infinity."""
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return round(value, digits)
