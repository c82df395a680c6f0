"""Configuration: the documented defaults, partial overrides, and values checked
for meaning, each problem one sentence that names the key."""

from __future__ import annotations

import dataclasses
import math

import pytest

from exporter import PerformanceAnalyzer
from exporter.config import (
    Config,
    ConfigError,
    EmergencyConfig,
    ExporterConfig,
    Levels,
    from_dict,
    load_config,
)
from exporter.sampler import write_rows
from exporter.schema import init_table
from exporter.store import Store
from exporter.vocabulary import Check, Priority


def test_original_readme_examples_are_p1_by_default():
    c = Config().emergency
    assert c.cpu_pct.priority(96.5) == Priority.P1 == "P1-CRITICAL"
    assert c.mem_available_pct.priority(3.2) == Priority.P1
    assert c.temperature_c.priority(87.3) == Priority.P1
    assert c.cpu_pct.priority(50) is None
    assert c.cpu_pct.threshold("P2-WARNING") == c.cpu_pct.threshold(Priority.P2) == 90


def test_partial_override_keeps_other_defaults():
    c = from_dict({"emergency": {"cpu_pct": {"p1": 98}}, "sli": {"window_hours": 12}})
    assert c.emergency.cpu_pct == Levels(85, 90, 98)
    assert c.sli.window_hours == 12.0 and c.sli.excellent == 0.99
    assert c.emergency.temperature_c == Config().emergency.temperature_c
    assert from_dict(None) == from_dict({}) == Config()
    assert from_dict({"anomalies": {"persist": 3.0}}).anomalies.persist == 3


def test_objects_stay_frozen_hashable_and_replaceable():
    c = Config()
    assert hash(c) == hash(Config())
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.sli = None  # type: ignore[misc]
    bigger = dataclasses.replace(c, exporter=ExporterConfig(max_series=10))
    assert bigger.exporter.max_series == 10 and bigger.sli == c.sli
    with pytest.raises(ConfigError, match=r"^configuration key max_series must be >= 1, got 0$"):
        dataclasses.replace(c.exporter, max_series=0)
    with pytest.raises(ConfigError, match=r"^configuration key window_seconds must be >= 1"):
        Config(emergency=EmergencyConfig(window_seconds=-1))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sli": {"window_hours": -5}}, "configuration key sli.window_hours must be > 0, got -5"),
        (
            {"exporter": {"max_series": -1}},
            "configuration key exporter.max_series must be >= 1, got -1",
        ),
        ({"exporter": {"workers": 0}}, "configuration key exporter.workers must be >= 1, got 0"),
        (
            {"exporter": {"statement_timeout_seconds": -1}},
            "configuration key exporter.statement_timeout_seconds must be > 0, got -1",
        ),
        (
            {"exporter": {"statement_timeout_seconds": 0}},
            "configuration key exporter.statement_timeout_seconds must be > 0, got 0",
        ),
        (
            {"exporter": {"statement_timeout_seconds": math.nan}},
            "configuration key exporter.statement_timeout_seconds must be a finite number, got nan",
        ),
        (
            {"capacity": {"min_r2": 7}},
            "configuration key capacity.min_r2 must be between 0 and 1, got 7",
        ),
        (
            {"sli": {"excellent": 1.5}},
            "configuration key sli.excellent must be between 0 and 1, got 1.5",
        ),
        (
            {"sli": {"acceptable": -0.1}},
            "configuration key sli.acceptable must be between 0 and 1, got -0.1",
        ),
        (
            {"sli": {"good": 0.995}},
            "configuration key sli.good must be <= sli.excellent (0.99), got 0.995"
            " (grades must not overlap)",
        ),
        (
            {"sli": {"acceptable": 0.97}},
            "configuration key sli.acceptable must be <= sli.good (0.95), got 0.97"
            " (grades must not overlap)",
        ),
        (
            {"anomalies": {"persist": 99, "recent_samples": 5}},
            "configuration key anomalies.persist must be <= anomalies.recent_samples (5), got 99",
        ),
        (
            {"anomalies": {"persist": 0}},
            "configuration key anomalies.persist must be >= 1, got 0",
        ),
        (
            {"anomalies": {"recent_samples": 0}},
            "configuration key anomalies.recent_samples must be >= 1, got 0",
        ),
        (
            {"correlation": {"min_samples": 0}},
            "configuration key correlation.min_samples must be >= 1, got 0",
        ),
        (
            {"capacity": {"drop_restart_pct": 150}},
            "configuration key capacity.drop_restart_pct must be between 0 and 100, got 150",
        ),
        (
            {"sli": {"cpu_pct": -1}},
            "configuration key sli.cpu_pct must be between 0 and 100, got -1",
        ),
        (
            {"emergency": {"cpu_pct": {"p3": 85, "p2": 90, "p1": 120}}},
            "configuration key emergency.cpu_pct.p1 must be between 0 and 100, got 120",
        ),
        (
            {"patterns": {"days": math.inf}},
            "configuration key patterns.days must be a finite number, got inf",
        ),
        (
            {"exporter": {"refresh": {"sli": -1}}},
            "configuration key exporter.refresh.sli must be >= 0, got -1",
        ),
    ],
)
def test_meaningless_values_are_refused_in_one_sentence(data, message):
    with pytest.raises(ConfigError) as info:
        from_dict(data)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"emergncy": {}}, r"^unknown configuration key 'emergncy' \(known: alerts, "),
        ({"sli": {"window_hour": 3}}, r"^unknown configuration key 'window_hour' in sli "),
        ({"sli": {"window_hours": "x"}}, r"^configuration key sli.window_hours must be a number"),
        ({"sli": {"window_hours": True}}, r"sli.window_hours must be a number, got True$"),
        ({"anomalies": {"persist": 2.5}}, r"anomalies.persist must be a whole number, got 2.5$"),
        (
            {"emergency": {"cpu_pct": {"p1": 50}}},
            r"^configuration key emergency.cpu_pct.p1 must be >= emergency.cpu_pct.p2 \(90\),"
            r" got 50 \(levels must worsen from p3 to p1\)$",
        ),
        (
            {"emergency": {"mem_available_pct": {"p1": 12}}},
            r"emergency.mem_available_pct.p1 must be <= emergency.mem_available_pct.p2 \(10\)",
        ),
        (
            {"emergency": {"cpu_pct": {"higher_is_worse": "no"}}},
            r"higher_is_worse must be true or false, got 'no'$",
        ),
        ({"sli": 5}, r"^configuration key sli must be a mapping, got 5$"),
        ([1], r"^the configuration must be a mapping, got \[1\]$"),
        (
            {"exporter": {"workers": 0, "max_series": 0}},
            r"^configuration key exporter.max_series must be >= 1, got 0 \(and 1 more problem\)$",
        ),
    ],
)
def test_bad_configuration_is_named(data, message):
    with pytest.raises(ConfigError, match=message) as info:
        from_dict(data)
    assert "\n" not in str(info.value)


def test_yaml_file(tmp_path):
    path = tmp_path / "perf.yml"
    path.write_text("emergency:\n  temperature_c: {p3: 70, p2: 75, p1: 80}\n")
    assert load_config(path).emergency.temperature_c.p1 == 80
    path.write_text("emergency: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "missing.yml")
    path.write_text("capacity:\n  horizon_dayz: 3\n")
    with pytest.raises(ConfigError, match=r"perf.yml: unknown configuration key 'horizon_dayz'"):
        load_config(path)
    path.write_text("anomalies:\n  persist: 99\n  recent_samples: 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"configuration file {path}: configuration key anomalies.persist must be"
        " <= anomalies.recent_samples (5), got 99"
    )
    path.write_text("sli:\n  window_hours: .nan\n")
    with pytest.raises(ConfigError, match=r"perf.yml: configuration key sli.window_hours must"):
        load_config(path)


# --------------------------------------------------------------------------- min_samples

NOW = 1_790_000_040
JITTER = (2, -3, 1, 4, -2, 0, 3, -1, -4, 2)  # seconds, as a real sampler's ticks drift


def _rows(node: str, times: list[int], cpu: float) -> list[dict]:
    return [
        {
            "sample_time": t,
            "node_name": node,
            "container_name": None,
            "node_flag": True,
            "cpu_total_pct": cpu,
            "cpu_iowait_pct": 1.0,
            "mem_available_mb": 12000.0,
            "mem_total_mb": 16384.0,
            "swap_used_mb": 0.0,
            "load_1m": 0.5,
            "temperature_c": 50.0,
        }
        for t in times
    ]


def _ticks(first: int, last: int) -> list[int]:
    """Sample times every 60 s from `first` to `last`, each off by a few seconds."""
    return [t + JITTER[i % len(JITTER)] for i, t in enumerate(range(first, last + 1, 60))]


@pytest.fixture
def restarted_nodes(fresh_dsn):
    """Two nodes calm for an hour, then silent, then back at 99 % CPU for the last two
    (node-a) or three (node-b) samples of the 5-minute window."""
    with Store(fresh_dsn) as store:
        init_table(store)
        for node, back in (("node-a", 2), ("node-b", 3)):
            write_rows(store, _rows(node, _ticks(NOW - 4200, NOW - 900), 20.0))
            write_rows(store, _rows(node, _ticks(NOW - 60 * back, NOW - 60), 99.0))
    return fresh_dsn


def _cpu_threats(dsn: str, min_samples: int) -> dict[str, tuple[str, int]]:
    config = Config(emergency=EmergencyConfig(min_samples=min_samples))
    with PerformanceAnalyzer(dsn, config=config) as a:
        result = a.emergency_health_check(now=NOW)
    return {
        t["node_name"]: (t["priority"], t["samples"])
        for t in result["threats"]
        if t["check"] == Check.CPU
    }


def test_emergency_check_honours_min_samples(restarted_nodes):
    assert _cpu_threats(restarted_nodes, 3) == {"node-b": (Priority.P1, 3)}
    assert _cpu_threats(restarted_nodes, 2) == {
        "node-a": (Priority.P1, 2),
        "node-b": (Priority.P1, 3),
    }
    assert _cpu_threats(restarted_nodes, 4) == {}


def test_vocabulary_matches_the_words_in_use():
    from exporter.analyses.emergency import CHECKS
    from exporter.metrics import FORECAST_STATUSES, GRADES
    from exporter.vocabulary import ForecastStatus, Grade

    scored = [g for g in Grade if g is not Grade.UNKNOWN]
    assert [g.label for g in scored] == list(GRADES)  # UNKNOWN has no health score
    assert [g.score for g in scored] == [GRADES.index(g.label) for g in scored]
    assert Grade.UNKNOWN.score is None
    assert Grade.EXCELLENT == "EXCELLENT" and f"{Grade.POOR}" == "POOR"
    assert list(ForecastStatus) == list(FORECAST_STATUSES)
    assert list(Check) == list(CHECKS)
    assert [p.value for p in Priority] == ["P1-CRITICAL", "P2-WARNING", "P3-ADVISORY"]


def test_from_dict_builds_one_section_under_its_path():
    assert from_dict({"p3": 1, "p2": 2, "p1": 3}, Levels) == Levels(1, 2, 3)
    with pytest.raises(ConfigError, match=r"^configuration key emergency.cpu_pct.p1 is required$"):
        from_dict({"p3": 1, "p2": 2}, Levels, "emergency.cpu_pct")
