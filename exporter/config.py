"""Every threshold, window and limit of the analyses, with its default, in one object.

Defaults are the levels SREs page on (CPU 95 % is P1, 5 % free memory is P1, 85 °C is
P1). A configuration can come from Python (`Config(emergency=EmergencyConfig(...))`), from a
YAML file (`load_config(path)`) or from a dict (`from_dict`). Every value is checked for
meaning, not only for type: windows are positive, ratios lie in [0, 1], percentages in
[0, 100], related keys agree (`anomalies.persist <= anomalies.recent_samples`), NaN and
infinity are refused, and so are unknown keys. A problem is one `ConfigError` sentence that
names the key and what it allows, so a typo or a slip never silently falls back to a default
or makes an analysis divide by zero.

The sections are frozen pydantic dataclasses: they validate in `__init__`, so
`dataclasses.replace` validates too, and they stay hashable.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast, dataclass_transform
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Strict,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass

from .schema import COLUMNS, MAX_COLUMN_NAME_BYTES, OPTIONAL_COLUMNS
from .vocabulary import Priority


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names it."""


# --------------------------------------------------------------------------- rules


class _Broken(ValueError):
    """A rule a value breaks, raised during validation and turned into one sentence by
    `_sentence`. `key` is relative to the section being validated ('' is the value itself);
    `other` is a second key of that section the rule compares with, whose value is `limit`."""

    def __init__(
        self,
        rule: str,
        got: Any,
        key: str = "",
        other: str = "",
        limit: Any = None,
        because: str = "",
    ) -> None:
        super().__init__(rule)
        self.rule, self.got, self.key = rule, got, key
        self.other, self.limit, self.because = other, limit, because


def _is_number(value: Any) -> Any:
    """Numbers only: a string or a YAML boolean is never quietly converted, and NaN or
    infinity would slip through every comparison below."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Broken("must be a number", value)
    if not math.isfinite(value):
        raise _Broken("must be a finite number", value)
    return value


@dataclasses.dataclass(frozen=True)
class _Range:
    """An allowed range, bounds inclusive except `gt`."""

    gt: float | None = None
    ge: float | None = None
    le: float | None = None

    @property
    def text(self) -> str:
        if self.ge is not None and self.le is not None:
            return f"between {self.ge:g} and {self.le:g}"
        bounds = (("> ", self.gt), (">= ", self.ge), ("<= ", self.le))
        return " and ".join(f"{op}{bound:g}" for op, bound in bounds if bound is not None)

    def check(self, value: Any, key: str = "") -> Any:
        inside = (
            (self.gt is None or value > self.gt)
            and (self.ge is None or value >= self.ge)
            and (self.le is None or value <= self.le)
        )
        if not inside:
            raise _Broken(f"must be {self.text}", value, key)
        return value


_NUMBER = BeforeValidator(_is_number)
Number = Annotated[float, _NUMBER]
Positive = Annotated[float, _NUMBER, AfterValidator(_Range(gt=0).check)]
NonNegative = Annotated[float, _NUMBER, AfterValidator(_Range(ge=0).check)]
Ratio = Annotated[float, _NUMBER, AfterValidator(_Range(ge=0, le=1).check)]
Percent = Annotated[float, _NUMBER, AfterValidator(_Range(ge=0, le=100).check)]
Limit = Annotated[float, _NUMBER, AfterValidator(_Range(gt=0, le=100).check)]  # % of a whole
Count = Annotated[int, _NUMBER, AfterValidator(_Range(ge=1).check)]
NonNegativeInt = Annotated[int, _NUMBER, AfterValidator(_Range(ge=0).check)]
HoursOfDay = Annotated[int, _NUMBER, AfterValidator(_Range(ge=1, le=24).check)]
Niceness = Annotated[int, _NUMBER, AfterValidator(_Range(ge=0, le=19).check)]
Flag = Annotated[bool, Strict()]


def _is_zone(value: Any) -> Any:
    """An IANA time zone name that this system's tz database knows (DST-correct)."""
    if not isinstance(value, str):
        raise _Broken("must be a time zone name such as Europe/Paris", value)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _Broken("must be a known time zone name such as Europe/Paris", value) from None
    return value


TimeZone = Annotated[str, BeforeValidator(_is_zone)]


def _at_most(section: Any, key: str, other: str, because: str = "") -> None:
    """`section.key <= section.other`, or a ConfigError naming both."""
    value, limit = getattr(section, key), getattr(section, other)
    if value > limit:
        raise _Broken("must be <=", value, key, other, limit, because)


def _below(section: Any, key: str, other: str) -> None:
    """`section.key < section.other`, or a ConfigError naming both."""
    value, limit = getattr(section, key), getattr(section, other)
    if value >= limit:
        raise _Broken("must be <", value, key, other, limit)


_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def _section(cls: type[_T]) -> type[_T]:
    """A frozen pydantic dataclass that refuses unknown keys and whose constructor (hence
    also `dataclasses.replace`) raises a ConfigError sentence instead of a ValidationError."""
    section = pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))(cls)
    init = section.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except ValidationError as exc:
            raise ConfigError(_sentence(exc, section)) from None

    section.__init__ = __init__  # type: ignore[method-assign]
    return cast(type[_T], section)


# --------------------------------------------------------------------------- sections


@_section
class Levels:
    """Thresholds of one check: P3 advisory, P2 warning, P1 critical. `higher_is_worse`
    False means the value is bad when it falls below (free memory)."""

    p3: Number
    p2: Number
    p1: Number
    higher_is_worse: Flag = True

    @model_validator(mode="after")
    def _worsen(self) -> Levels:
        rule = "must be >=" if self.higher_is_worse else "must be <="
        for key, other in (("p2", "p3"), ("p1", "p2")):
            value, limit = getattr(self, key), getattr(self, other)
            if (value < limit) if self.higher_is_worse else (value > limit):
                raise _Broken(rule, value, key, other, limit, "levels must worsen from p3 to p1")
        return self

    def priority(self, value: float) -> Priority | None:
        """The priority `value` reaches, or None below P3."""
        for name in Priority:  # most severe first
            limit = self.threshold(name)
            if (value >= limit) if self.higher_is_worse else (value <= limit):
                return name
        return None

    def threshold(self, priority: str) -> float:
        limits: dict[str, float] = {
            Priority.P1: self.p1,
            Priority.P2: self.p2,
            Priority.P3: self.p3,
        }
        return limits[priority]


# What each emergency level may hold: percentages stay percentages, rates are not negative.
_LEVEL_RANGES = {
    "cpu_pct": _Range(ge=0, le=100),
    "iowait_pct": _Range(ge=0, le=100),
    "mem_available_pct": _Range(ge=0, le=100),
    "load_per_cpu": _Range(ge=0),
    "swap_growth_mb_per_min": _Range(ge=0),
    "network_errors_per_s": _Range(ge=0),
    "stale_seconds": _Range(gt=0),
    "stale_intervals": _Range(gt=0),
    "disk_used_ratio": _Range(ge=0, le=1),
    "inodes_used_ratio": _Range(ge=0, le=1),
}


@_section
class EmergencyConfig:
    window_seconds: Count = 300
    min_samples: Count = 3  # a threat must be sustained over this many samples of the window
    cpu_pct: Levels = Levels(85, 90, 95)
    iowait_pct: Levels = Levels(20, 30, 40)
    mem_available_pct: Levels = Levels(15, 10, 5, higher_is_worse=False)
    temperature_c: Levels = Levels(75, 80, 85)
    load_per_cpu: Levels = Levels(1.5, 2.0, 3.0)
    swap_growth_mb_per_min: Levels = Levels(1, 10, 50)  # only while memory is below its P3
    network_errors_per_s: Levels = Levels(1, 10, 50)  # errors + drops, both directions
    stale_seconds: Levels = Levels(180, 300, 600)  # age of the newest node row: the floors
    stale_intervals: Levels = Levels(3, 5, 10)  # ... and in the node's sampling intervals
    # used share of the fullest filesystem (optional column disk_used_ratio), and of inodes
    disk_used_ratio: Levels = Levels(0.85, 0.90, 0.95)
    inodes_used_ratio: Levels = Levels(0.85, 0.90, 0.95)
    forget_after_hours: Positive = 168  # a node silent this long is listed as forgotten

    @model_validator(mode="after")
    def _level_ranges(self) -> EmergencyConfig:
        for name, allowed in _LEVEL_RANGES.items():
            levels = getattr(self, name)
            for p in ("p3", "p2", "p1"):
                allowed.check(getattr(levels, p), f"{name}.{p}")
        return self


@_section
class SliConfig:
    window_hours: Positive = 24
    # performance: a sample is good when CPU, I/O wait and load per CPU are below these
    cpu_pct: Percent = 90
    iowait_pct: Percent = 30
    load_per_cpu: Positive = 2.0
    # capacity: a sample is good when free memory and swap are inside these
    mem_available_pct: Percent = 10
    swap_used_mb: NonNegative = 4096
    excellent: Ratio = 0.99
    good: Ratio = 0.95
    acceptable: Ratio = 0.90
    # sampling interval: the median spacing of a node's rows over this much of its history
    interval_history_hours: Positive = 6
    gap_intervals: Positive = 1.5  # a gap longer than this many intervals is an outage
    # fewer known samples than this share of the expected ones (or than min_samples) is
    # grade UNKNOWN, unless availability alone already says POOR
    min_sample_share: Ratio = 0.5
    min_samples: Count = 10

    @model_validator(mode="after")
    def _grades_ordered(self) -> SliConfig:
        _at_most(self, "good", "excellent", "grades must not overlap")
        _at_most(self, "acceptable", "good", "grades must not overlap")
        return self


@_section
class AnomalyConfig:
    """Seasonal robust anomaly detection (analyses/anomalies.py). A sample is anomalous when
    it is beyond `score_threshold` robust scales from its baseline AND moved by at least the
    practical minimum change AND lies outside what the same hour has shown before; it is
    reported once `persist` of the last `recent_samples` samples agree. Floors per unit:
    `*_scale_floor` bounds the robust scale from below (flat series never score),
    `*_min_change` is the smallest change worth reporting."""

    window_hours: Positive = 1  # the exporter's window (the API's default is 24 h)
    recent_samples: Count = 5  # persistence: `persist` of the last `recent_samples` must agree
    persist: Count = 3
    score_threshold: Positive = 4.0  # |robust z| that counts as anomalous (P3)
    p2_score: Positive = 6.0
    p1_score: Positive = 10.0
    history_days: Positive = 28  # hour-of-week needs >= 21 days, hour-of-day >= 7
    changepoint_hours: Positive = 6  # a shift sustained this long becomes "new normal"
    hour_of_week_days: Positive = 21  # history needed for the hour-of-week baseline
    hour_of_day_days: Positive = 7  # history needed for the hour-of-day baseline
    rolling_min_hours: HoursOfDay = 6  # hourly means needed (of the last 24) for the rolling
    # baseline
    scale_floor_rel: NonNegative = 0.02  # robust scale >= this fraction of the baseline level
    min_change_rel: NonNegative = 0.1  # practical change >= this fraction of the baseline level
    # the absolute scale floors are divisors: they must stay above 0
    pct_scale_floor: Positive = 0.5  # percent (CPU, I/O wait)
    pct_min_change: NonNegative = 5.0
    mb_scale_floor: Positive = 16.0  # MiB (memory, swap, container RSS)
    mb_min_change: NonNegative = 256.0
    load_scale_floor: Positive = 0.1
    load_min_change: NonNegative = 1.0
    celsius_scale_floor: Positive = 0.5
    celsius_min_change: NonNegative = 5.0
    mb_s_scale_floor: Positive = 0.05  # MiB/s (disk, network)
    mb_s_min_change: NonNegative = 1.0
    ops_scale_floor: Positive = 50.0  # context switches per second
    ops_min_change: NonNegative = 2000.0
    errors_scale_floor: Positive = 0.25  # network errors and drops per second
    errors_min_change: NonNegative = 1.0
    zero_rate_max: Ratio = 0.02  # counters nonzero in at most this share of past hours: a
    # frequency test (any error burst is anomalous) instead of the robust score
    # Range departures: a sample beyond the extremes its series showed over the past
    # `range_days` by `range_margin` noise scales (hourly means likewise), once per episode
    range_margin: NonNegative = 2.0  # in median hourly sd (hourly means: their own noise)
    range_quiet_hours: Positive = 6  # an episode ends after this long with nothing beyond
    range_days: Positive = 14  # history whose extremes make the range
    range_day_rank: Count = 1  # the range is the rank-th most extreme day of that history
    range_persist_minutes: Positive = 3  # samples beyond it (of the last `recent_samples`,
    # each standing for its interval) must cover this long: one wild 1-minute sample is not
    range_p2_ratio: Positive = 1.5  # (peak - median) / (range edge - median) for P2 ...
    range_p1_ratio: Positive = 2.5  # ... and for P1; spikes and dips are capped by it too
    # Seasonal departures: a complete hour whose mean is beyond the median of the same hour
    # on the previous days by more than the two-sided normal quantile that gives this many
    # false alarms per series-day on noise (robust scale of past residuals); 0 turns it off
    seasonal_false_per_day: NonNegative = 0.005
    # Impact caps every priority: the share of the way from the baseline to the metric's
    # emergency P3 level (CPU, I/O wait, temperature, free memory %), else the move in the
    # unit's practical scale (`impact_scale_changes` times its `*_min_change`)
    impact_scale_changes: Positive = 8.0
    impact_p2: Positive = 0.5  # impact from which a report may be P2 ...
    impact_p1: Positive = 1.0  # ... and P1 (the value reached the emergency level)
    outlier_score: Positive = 10.0  # |robust z| of an unconfirmed sample reported as an
    # `outlier` (never above P3); below it a lone sample is noise

    @model_validator(mode="after")
    def _consistent(self) -> AnomalyConfig:
        _at_most(self, "persist", "recent_samples")
        _at_most(self, "score_threshold", "p2_score", "scores must rise from P3 to P1")
        _at_most(self, "p2_score", "p1_score", "scores must rise from P3 to P1")
        _at_most(self, "range_p2_ratio", "range_p1_ratio", "ratios must rise from P2 to P1")
        _at_most(self, "impact_p2", "impact_p1", "impacts must rise from P2 to P1")
        return self


@_section
class ContentionConfig:
    window_hours: Positive = 1
    cpu_pct: Percent = 80  # CPU pressure: node CPU above this ...
    iowait_pct: Percent = 20  # ... or I/O wait above this (stalled CPU)
    mem_available_pct: Percent = 15  # memory pressure: free memory below this, % of total
    baseline_hours: Positive = 6  # shares "before" come from calm samples this far back, too
    victim_drop: Ratio = 0.2  # relative change of a container's mean use that counts as
    # growth (+) or loss (-): a container whose use falls this much while another grows
    # this much is a victim


@_section
class CorrelationConfig:
    window_hours: Positive = 24
    min_abs: Ratio = 0.7  # |Pearson| of the levels for a shared daily cycle
    max_lag_minutes: NonNegativeInt = 30  # lead/lag scan range, both ways
    lag_min_gain: Ratio = 0.02  # a lag is reported when it beats lag 0 by this much
    min_samples: Count = 60  # fewer paired differences: the pair is not tested
    fdr: Ratio = 0.05  # Benjamini-Hochberg false-discovery rate over each node's pairs
    min_coupling_abs: Ratio = 0.3  # |r| of the differences below this is no coupling
    max_per_node: Count = 5  # exported couplings per node, strongest first
    min_cycle_share: Ratio = 0.5  # share of within-day variance the hour of day explains
    # in a real daily cycle
    profile_days: Positive = 7  # history of the hour-of-day profiles and daily-cycle test
    evidence_hours: Positive = 24  # the lag scan reads at most this much of the window


@_section
class CapacityConfig:
    days: Positive = 30
    horizon_days: Positive = 365  # beyond this a trend is "beyond_horizon"
    # exhaustion is reaching these limits; None: the emergency P1 levels (CPU 95 %, 5 % free)
    cpu_limit_pct: Limit | None = None
    mem_limit_pct: Limit | None = None  # used share of mem_total_mb, used = total - available
    swap_limit_mb: Positive = 8192
    # disk and inodes: used share of the fullest filesystem; None: the emergency P1 levels
    disk_limit_ratio: Ratio | None = None
    inodes_limit_ratio: Ratio | None = None
    min_days: Count = 3  # fewer daily peaks: insufficient_data
    min_r2: Ratio = 0.3  # weaker fits: no_significant_trend
    # smaller slopes are no_significant_trend however significant: share of the limit per day
    min_slope_ratio_per_day: Ratio = 0.001
    robust_slope: Flag = True  # Theil-Sen slope (one bad day cannot tilt it), else least squares
    drop_restart_pct: Percent = 20  # a fall of the daily peak by this % of the limit, held
    # for 3 days (a weekend dip is not), restarts the fit: cleanup, restart, resize
    min_day_hours: HoursOfDay = 12  # a UTC day with fewer hours of data gives no daily peak
    # an hour with fewer samples than this share of the node's usual count is no peak
    min_hour_coverage: Ratio = 0.5
    # already_exhausted: the last 24 h's busiest hour reached this share of the limit
    exhausted_ratio: Ratio = 1.0


@_section
class PatternConfig:
    days: Positive = 7
    daily_seasonality_min: Ratio = 0.3
    weekly_seasonality_min: Ratio = 0.3
    bursty_cv: NonNegative = 0.5  # coefficient of variation of hourly means above which:
    # bursty
    # weekly-cycle: lag-168 h autocorrelation beats lag-24 h by this much, i.e. the
    # day-of-week differences dominate the daily cycle (a pure weekend step gives ~0.7, a
    # daily cycle with 30 % quieter weekends 0.1-0.35)
    weekly_margin: NonNegative = 0.4
    weekly_history_days: Positive = 14  # weekly seasonality reads max(days, this) of history
    min_hours: Count = 48  # fewer hourly means in the window: the node is insufficient_data
    timezone: TimeZone = "UTC"  # peak hours and profiles in this zone (DST-correct)
    peak_alpha: Ratio = 0.001  # a peak hour only when the daily shape's permutation test
    # rejects "no shared daily shape" at this level (false peak hours on flat nodes)


@_section
class AlertConfig:
    history_days: Positive = 14  # 21 or more: hour-of-week buckets for nodes that old
    p3_robust_scales: Positive = 4.0  # P3 = bucket baseline + this many robust sd + margin
    p2_robust_scales: Positive = 5.0  # P2 likewise
    p1_robust_scales: Positive = 6.0  # P1 = highest baseline + this many robust sd
    floor_ratio: Ratio = 0.5  # P3 and P2 never tighten below this share of the static level
    timezone: TimeZone = "UTC"  # hour-of-day buckets in this zone (DST-correct)
    min_samples: Count = 1440  # fewer history samples (a day at 60 s): no learned threshold
    max_exact_rows: Count = 500_000  # history larger than this is read via TABLESAMPLE


@_section
class ExporterConfig:
    # analysis name -> seconds between its runs in the background (0: on every scrape,
    # which waits for it); analyses not named keep their default (see README)
    refresh: dict[str, NonNegative] = dataclasses.field(default_factory=dict)
    retry_seconds: NonNegative = 5  # a failed analysis is retried no sooner than this
    max_series: Count = 150_000  # about 100 series per node and 1,000 nodes, with room
    # nodes the analyses read at most, those reporting now and for longest first (the node
    # guard, docs/reliability.md); unset: as many as max_series can serve (max_series / 12)
    max_nodes: Count | None = None
    scrape_timeout_seconds: Positive = 10  # when Prometheus sends no timeout header
    scrape_timeout_margin_seconds: NonNegative = 0.5  # answer this long before Prometheus
    # gives up
    workers: Count = 3  # analyses running at once (the pool holds one more connection)
    # run the long-window analyses in one worker process (its own connection, beside the
    # pool's), one at a time, so that their CPU never holds the scrapes' interpreter lock
    worker_process: Flag = True
    # the worker process's CPU priority below the exporter's (nice(2) increment): on a busy
    # machine the scrapes get a core before the analyses do
    worker_niceness: Niceness = 10
    statement_timeout_seconds: Positive = 30
    # the first runs of the rollup-based analyses spend this long reading rollups at most,
    # all together (the newest day is always read), answer from what is read, then rerun
    # with all of it
    cold_start_seconds: NonNegative = 5
    current_window_seconds: Count = 300  # the "last 5 minutes" of the current values

    def __hash__(self) -> int:  # the refresh mapping is a dict; the rest hashes as fields
        values = [getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "refresh"]
        return hash((tuple(sorted(self.refresh.items())), *values))

    @model_validator(mode="after")
    def _margin_fits(self) -> ExporterConfig:
        _below(self, "scrape_timeout_margin_seconds", "scrape_timeout_seconds")
        return self


CONTRACT_COLUMNS = tuple(c.name for c in (*COLUMNS, *OPTIONAL_COLUMNS))


def check_columns(columns: Mapping[str, str]) -> dict[str, str]:
    """A column mapping (contract name -> the table's name), or ValueError in one sentence."""
    unknown = sorted(set(columns) - set(CONTRACT_COLUMNS))
    if unknown:
        raise ValueError(
            f"the column mapping names no column of the samples table: {', '.join(unknown)} "
            f"(the columns are {', '.join(CONTRACT_COLUMNS)})"
        )
    for ours, theirs in columns.items():
        if not isinstance(theirs, str) or not theirs or "\x00" in theirs:
            raise ValueError(f"the column mapping gives {ours} no usable name: {theirs!r}")
        if len(theirs.encode()) > MAX_COLUMN_NAME_BYTES:
            raise ValueError(f"the column mapping's name for {ours} is longer than 63 bytes")
    taken = [v for v in columns.values() if list(columns.values()).count(v) > 1]
    if taken:
        raise ValueError(f"the column mapping reads column {taken[0]!r} twice")
    return dict(columns)


@_section
class TableConfig:
    # the samples table's column names where they differ from the standard ones
    # (sample_time: ts, node_name: host, ...); also `--columns FILE`. Reading only.
    columns: dict[str, str] = dataclasses.field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.columns.items())))

    @model_validator(mode="after")
    def _known_columns(self) -> TableConfig:
        check_columns(self.columns)
        return self


@_section
class NodesConfig:
    # Treat names equal but for case and surrounding whitespace (`Node-A`, ` node-a `) as
    # one node in every analysis; off, they are separate nodes and a warning names them
    fold_name_variants: bool = False


@_section
class Config:
    emergency: EmergencyConfig = dataclasses.field(default_factory=EmergencyConfig)
    sli: SliConfig = dataclasses.field(default_factory=SliConfig)
    anomalies: AnomalyConfig = dataclasses.field(default_factory=AnomalyConfig)
    contention: ContentionConfig = dataclasses.field(default_factory=ContentionConfig)
    correlation: CorrelationConfig = dataclasses.field(default_factory=CorrelationConfig)
    capacity: CapacityConfig = dataclasses.field(default_factory=CapacityConfig)
    patterns: PatternConfig = dataclasses.field(default_factory=PatternConfig)
    alerts: AlertConfig = dataclasses.field(default_factory=AlertConfig)
    exporter: ExporterConfig = dataclasses.field(default_factory=ExporterConfig)
    nodes: NodesConfig = dataclasses.field(default_factory=NodesConfig)
    table: TableConfig = dataclasses.field(default_factory=TableConfig)


# --------------------------------------------------------------------------- loading


def from_dict(
    data: Mapping[str, Any] | None, cls: type = Config, path: str = "", base: Any = None
) -> Any:
    """Build `cls` from nested mappings over `base` (default: cls's defaults): a partial
    mapping overrides only the keys it names, then the whole is validated at once. `path`
    prefixes the key names in errors (the position of `cls` in a larger configuration)."""
    defaults = base if base is not None else _defaults(cls)
    if data is None and defaults is not None:
        return defaults
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or 'the configuration'} must be a mapping, got {data!r}")
    merged = _merge(dataclasses.asdict(defaults), data) if defaults is not None else data
    try:
        return _adapter(cls).validate_python(merged)
    except ValidationError as exc:
        raise ConfigError(_sentence(exc, cls, path)) from None


def _defaults(cls: type) -> Any:
    """An instance with every default, or None when some field has none (Levels)."""
    try:
        return cls()
    except (TypeError, ConfigError):
        return None


@functools.cache
def _adapter(cls: type) -> TypeAdapter[Any]:
    return TypeAdapter(cls)


def _merge(defaults: dict[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """`defaults` with `data` laid over it, mapping by mapping."""
    merged = dict(defaults)
    for key, value in data.items():
        below = merged.get(key)
        if isinstance(below, dict) and isinstance(value, Mapping):
            merged[key] = _merge(below, value)
        else:
            merged[key] = value
    return merged


def _sentence(exc: ValidationError, root: type, path: str = "") -> str:
    """The first problem of a ValidationError as one sentence naming the key; the number of
    further problems, if any, in parentheses."""
    errors = exc.errors()
    text = _describe(errors[0], root, [path] if path else [])
    if len(errors) > 1:
        more = len(errors) - 1
        text += f" (and {more} more problem{'s' if more > 1 else ''})"
    return text


def _describe(error: Any, root: type, prefix: list[str]) -> str:
    loc = [str(part) for part in error["loc"]]
    broken = (error.get("ctx") or {}).get("error")
    if isinstance(broken, _Broken):
        rule = broken.rule
        if broken.other:
            rule += f" {_key(prefix, loc, broken.other)} ({_show(broken.limit)})"
        text = f"configuration key {_key(prefix, loc, broken.key)} {rule}, got {_show(broken.got)}"
        return f"{text} ({broken.because})" if broken.because else text
    kind, got = error["type"], error.get("input")
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        *parent, name = loc
        where = ".".join(prefix + parent)
        known = ", ".join(_known_keys(root, parent))
        return (
            f"unknown configuration key {name!r}{f' in {where}' if where else ''} (known: {known})"
        )
    key = _key(prefix, loc)
    if kind in ("dataclass_type", "dataclass_exact_type", "dict_type"):
        return f"configuration key {key} must be a mapping, got {got!r}"
    if kind == "int_from_float":
        return f"configuration key {key} must be a whole number, got {got!r}"
    if kind == "bool_type":
        return f"configuration key {key} must be true or false, got {got!r}"
    if kind == "missing":
        return f"configuration key {key} is required"
    return f"configuration key {key} is invalid ({error['msg']}), got {got!r}"


def _show(value: Any) -> str:
    """A value as the user wrote it: validation has already made 5 into 5.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def _key(prefix: list[str], loc: list[str], name: str = "") -> str:
    return ".".join(part for part in (*prefix, *loc, name) if part)


def _known_keys(root: type, parent: list[str]) -> list[str]:
    """Field names of the section at `parent` below `root` ([] when it is not a section)."""
    cls: Any = root
    for part in parent:
        fields = getattr(cls, "__pydantic_fields__", {})
        if part not in fields:
            return []
        cls = fields[part].annotation
    return sorted(getattr(cls, "__pydantic_fields__", {}))


def load_columns(path: str | Path) -> dict[str, str]:
    """Read a `--columns` YAML file: standard column name -> the table's column name."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read column mapping file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"column mapping file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, Mapping) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError(
            f"column mapping file {path} must map standard column names to the table's, "
            "e.g. `sample_time: ts`"
        )
    try:
        return check_columns(data)
    except ValueError as exc:
        raise ConfigError(f"column mapping file {path}: {exc}") from None


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
