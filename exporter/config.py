"""Every threshold, window and limit of the analyses, with its default, in one object.

Defaults follow the original README (CPU 96.5 % is P1, 3.2 % free memory is P1, 87.3 °C is
P1). A configuration can come from Python (`Config(emergency=EmergencyConfig(...))`), from a
YAML file (`load_config(path)`) or from a dict; unknown keys and wrong types are errors that
name the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names it."""


@dataclass(frozen=True)
class Levels:
    """Thresholds of one check: P3 advisory, P2 warning, P1 critical. `higher_is_worse`
    False means the value is bad when it falls below (free memory)."""

    p3: float
    p2: float
    p1: float
    higher_is_worse: bool = True

    def __post_init__(self) -> None:
        ordered = (
            (self.p3 <= self.p2 <= self.p1)
            if self.higher_is_worse
            else (self.p3 >= self.p2 >= self.p1)
        )
        if not ordered:
            raise ConfigError(f"levels must worsen from p3 to p1, got {self}")

    def priority(self, value: float) -> str | None:
        """The priority `value` reaches, or None below P3."""
        for name, limit in (
            ("P1-CRITICAL", self.p1),
            ("P2-WARNING", self.p2),
            ("P3-ADVISORY", self.p3),
        ):
            if (value >= limit) if self.higher_is_worse else (value <= limit):
                return name
        return None

    def threshold(self, priority: str) -> float:
        return {"P1-CRITICAL": self.p1, "P2-WARNING": self.p2, "P3-ADVISORY": self.p3}[priority]


@dataclass(frozen=True)
class EmergencyConfig:
    window_seconds: int = 300
    min_samples: int = 3  # a threat must be sustained over this many samples of the window
    cpu_pct: Levels = Levels(85, 90, 95)
    iowait_pct: Levels = Levels(20, 30, 40)
    mem_available_pct: Levels = Levels(15, 10, 5, higher_is_worse=False)
    temperature_c: Levels = Levels(75, 80, 85)
    load_per_cpu: Levels = Levels(1.5, 2.0, 3.0)
    swap_growth_mb_per_min: Levels = Levels(1, 10, 50)  # only while memory is below its P3
    network_errors_per_s: Levels = Levels(1, 10, 50)  # errors + drops, both directions
    stale_seconds: Levels = Levels(180, 300, 600)  # age of the newest sample
    forget_after_hours: float = 24  # a node silent this long is gone (decommissioned)


@dataclass(frozen=True)
class SliConfig:
    window_hours: float = 24
    # performance: a sample is good when CPU, I/O wait and load per CPU are below these
    cpu_pct: float = 90
    iowait_pct: float = 30
    load_per_cpu: float = 2.0
    # capacity: a sample is good when free memory and swap are inside these
    mem_available_pct: float = 10
    swap_used_mb: float = 4096
    excellent: float = 0.99
    good: float = 0.95
    acceptable: float = 0.90


@dataclass(frozen=True)
class AnomalyConfig:
    """Seasonal robust anomaly detection (analyses/anomalies.py). A sample is anomalous when
    it is beyond `score_threshold` robust scales from its baseline AND moved by at least the
    practical minimum change AND lies outside what the same hour has shown before; it is
    reported once `persist` of the last `recent_samples` samples agree. Floors per unit:
    `*_scale_floor` bounds the robust scale from below (flat series never score),
    `*_min_change` is the smallest change worth reporting."""

    window_hours: float = 1  # the exporter's window (the API's default is 24 h)
    recent_samples: int = 5  # persistence: `persist` of the last `recent_samples` must agree
    persist: int = 3
    score_threshold: float = 4.0  # |robust z| that counts as anomalous (P3)
    p2_score: float = 6.0
    p1_score: float = 10.0
    history_days: float = 28  # hour-of-week needs >= 21 days, hour-of-day >= 7
    changepoint_hours: float = 6  # a shift sustained this long becomes "new normal"
    hour_of_week_days: float = 21  # history needed for the hour-of-week baseline
    hour_of_day_days: float = 7  # history needed for the hour-of-day baseline
    rolling_min_hours: int = 6  # hourly means needed (of the last 24) for the rolling baseline
    scale_floor_rel: float = 0.02  # robust scale >= this fraction of the baseline level
    min_change_rel: float = 0.1  # practical change >= this fraction of the baseline level
    pct_scale_floor: float = 0.5  # percent (CPU, I/O wait)
    pct_min_change: float = 5.0
    mb_scale_floor: float = 16.0  # MiB (memory, swap, container RSS)
    mb_min_change: float = 256.0
    load_scale_floor: float = 0.1
    load_min_change: float = 1.0
    celsius_scale_floor: float = 0.5
    celsius_min_change: float = 5.0
    mb_s_scale_floor: float = 0.05  # MiB/s (disk, network)
    mb_s_min_change: float = 1.0
    ops_scale_floor: float = 50.0  # context switches per second
    ops_min_change: float = 2000.0
    errors_scale_floor: float = 0.25  # network errors and drops per second
    errors_min_change: float = 1.0
    zero_rate_max: float = 0.02  # counters nonzero in at most this share of past hours: a
    # frequency test (any error burst is anomalous) instead of the robust score


@dataclass(frozen=True)
class ContentionConfig:
    window_hours: float = 1
    cpu_pct: float = 80  # CPU pressure: node CPU above this ...
    iowait_pct: float = 20  # ... or I/O wait above this (stalled CPU)
    mem_available_pct: float = 15  # memory pressure: free memory below this, % of total
    baseline_hours: float = 6  # shares "before" come from calm samples this far back, too
    victim_drop: float = 0.02  # a container whose share falls this much is a victim


@dataclass(frozen=True)
class CorrelationConfig:
    window_hours: float = 24
    min_abs: float = 0.7  # |Pearson| of a strong pair
    max_lag_minutes: int = 15  # lead/lag search range, both ways
    lag_min_gain: float = 0.02  # a lag is reported when it beats lag 0 by this much
    min_samples: int = 60  # fewer paired samples: the pair is not judged
    profile_days: float = 7  # history of the hour-of-day profile removed before deseasonalising
    evidence_hours: float = 24  # rank and lag evidence read at most this much of the window


@dataclass(frozen=True)
class CapacityConfig:
    days: float = 30
    horizon_days: float = 365  # beyond this a trend is "beyond_horizon"
    cpu_limit_pct: float = 100
    mem_limit_pct: float = 100  # of mem_total_mb, used = total - available
    swap_limit_mb: float = 8192
    min_days: int = 3  # fewer daily peaks: insufficient_data
    min_r2: float = 0.3  # weaker fits: no_significant_trend
    drop_restart_pct: float = 20  # a fall of the daily peak by this % of the limit, held
    # for 3 days (a weekend dip is not), restarts the fit: cleanup, restart, resize
    min_day_hours: int = 12  # a UTC day with fewer hours of data gives no daily peak
    # already_exhausted: the last 24 h's busiest hour reached this share of the limit (an
    # hour's mean of samples capped at 100 % never quite reaches 100 %)
    exhausted_ratio: float = 0.99


@dataclass(frozen=True)
class PatternConfig:
    days: float = 7
    daily_seasonality_min: float = 0.3
    weekly_seasonality_min: float = 0.3
    bursty_cv: float = 0.5  # coefficient of variation of hourly means above which: bursty
    # weekly-cycle: lag-168 h autocorrelation beats lag-24 h by this much, i.e. the
    # day-of-week differences dominate the daily cycle (a pure weekend step gives ~0.7, a
    # daily cycle with 30 % quieter weekends 0.1-0.35)
    weekly_margin: float = 0.4
    weekly_history_days: float = 14  # weekly seasonality reads max(days, this) of history
    min_hours: int = 48  # fewer hourly means in the window: the node is insufficient_data


@dataclass(frozen=True)
class AlertConfig:
    history_days: float = 14
    p1_robust_scales: float = 6.0  # P1 = median + this many robust sd (1.4826 MAD)
    floor_ratio: float = 0.5  # sanity floor: this share of the static emergency level
    min_samples: int = 1440  # fewer history samples (a day at 60 s): no learned threshold
    max_exact_rows: int = 500_000  # history larger than this is read via TABLESAMPLE


@dataclass(frozen=True)
class ExporterConfig:
    # analysis name -> seconds between its runs in the background (0: on every scrape,
    # which waits for it); analyses not named keep their default (see README)
    refresh: dict[str, float] = field(default_factory=dict)
    retry_seconds: float = 5  # a failed analysis is retried no sooner than this
    max_series: int = 150_000  # about 100 series per node and 1,000 nodes, with room
    scrape_timeout_seconds: float = 10  # when Prometheus sends no timeout header
    scrape_timeout_margin_seconds: float = 0.5  # answer this long before Prometheus gives up
    workers: int = 3  # analyses running at once (the pool holds one more connection)
    statement_timeout_seconds: float = 30
    current_window_seconds: int = 300  # the "last 5 minutes" of the current values


@dataclass(frozen=True)
class Config:
    emergency: EmergencyConfig = field(default_factory=EmergencyConfig)
    sli: SliConfig = field(default_factory=SliConfig)
    anomalies: AnomalyConfig = field(default_factory=AnomalyConfig)
    contention: ContentionConfig = field(default_factory=ContentionConfig)
    correlation: CorrelationConfig = field(default_factory=CorrelationConfig)
    capacity: CapacityConfig = field(default_factory=CapacityConfig)
    patterns: PatternConfig = field(default_factory=PatternConfig)
    alerts: AlertConfig = field(default_factory=AlertConfig)
    exporter: ExporterConfig = field(default_factory=ExporterConfig)


# --------------------------------------------------------------------------- loading


def from_dict(
    data: dict[str, Any] | None, cls: type = Config, path: str = "", base: Any = None
) -> Any:
    """Build `cls` from nested dicts over `base` (default: cls's defaults), refusing unknown
    keys and wrong types; a partial mapping overrides only the keys it names."""
    if data is None:
        return base if base is not None else cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'the configuration'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f" in {path}" if path else ""
        raise ConfigError(
            f"unknown configuration key {unknown[0]!r}{where}; known: {sorted(names)}"
        )
    defaults = base if base is not None else _defaults(cls)
    values = {
        key: _coerce(
            value, hints[key], f"{path}.{key}" if path else key, getattr(defaults, key, None)
        )
        for key, value in data.items()
    }
    try:
        return dataclasses.replace(defaults, **values) if defaults is not None else cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{path or 'configuration'}: {exc}") from None


def _defaults(cls: type) -> Any:
    """An instance with every default, or None when some field has none (Levels)."""
    try:
        return cls()
    except TypeError:
        return None


def _coerce(value: Any, hint: Any, path: str, default: Any) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_dict(value, hint, path, base=default)
    if hint is bool or hint == "bool":
        if isinstance(value, bool):
            return value
    elif hint in (float, int):
        if isinstance(value, int | float) and not isinstance(value, bool):
            if hint is int and not float(value).is_integer():
                raise ConfigError(f"{path} must be a whole number, got {value!r}")
            return hint(value)
    elif isinstance(hint, types.UnionType):
        return value
    elif typing.get_origin(hint) is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a mapping, got {value!r}")
        return {
            str(k): _coerce(v, typing.get_args(hint)[1], f"{path}.{k}", None)
            for k, v in value.items()
        }
    raise ConfigError(f"{path} must be {getattr(hint, '__name__', hint)}, got {value!r}")


def load_config(path: str | Path) -> Config:
    """Read a YAML configuration file; errors name the file and the key."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration file {path} is not valid YAML: {exc}") from None
    try:
        return from_dict(data or {})
    except ConfigError as exc:
        raise ConfigError(f"configuration file {path}: {exc}") from None
