"""Configuration: defaults from the original README, partial overrides, loud errors."""

from __future__ import annotations

import pytest

from exporter.config import Config, ConfigError, Levels, from_dict, load_config


def test_original_readme_examples_are_p1_by_default():
    c = Config().emergency
    assert c.cpu_pct.priority(96.5) == "P1-CRITICAL"
    assert c.mem_available_pct.priority(3.2) == "P1-CRITICAL"
    assert c.temperature_c.priority(87.3) == "P1-CRITICAL"
    assert c.cpu_pct.priority(50) is None


def test_partial_override_keeps_other_defaults():
    c = from_dict({"emergency": {"cpu_pct": {"p1": 98}}, "sli": {"window_hours": 12}})
    assert c.emergency.cpu_pct == Levels(85, 90, 98)
    assert c.sli.window_hours == 12.0 and c.sli.excellent == 0.99
    assert c.emergency.temperature_c == Config().emergency.temperature_c


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"emergncy": {}}, "unknown configuration key 'emergncy'"),
        ({"sli": {"window_hour": 3}}, "unknown configuration key 'window_hour' in sli"),
        ({"sli": {"window_hours": "x"}}, "sli.window_hours must be float"),
        ({"sli": {"window_hours": True}}, "sli.window_hours must be float"),
        ({"anomalies": {"persist": 2.5}}, "anomalies.persist must be a whole number"),
        ({"emergency": {"cpu_pct": {"p1": 50}}}, "levels must worsen from p3 to p1"),
        ({"sli": 5}, "sli must be a mapping"),
    ],
)
def test_bad_configuration_is_named(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(data)


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
