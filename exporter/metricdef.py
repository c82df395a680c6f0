"""What a served metric is: its name, help, labels, type and the Grafana unit of the panels
that show it. Each analysis declares its own metrics with `gauge`; `metrics.py` gathers
them, with the exporter's own metrics, into the catalogue that rules and dashboards read."""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "perf_analyzer_"

NODE = ("node",)
CONTAINER = ("node", "container")


@dataclass(frozen=True)
class Metric:
    name: str  # as exposed (counters end in _total)
    help: str
    labels: tuple[str, ...] = ()
    kind: str = "gauge"  # "gauge" or "counter"
    unit: str = "none"  # Grafana unit of the panels that show it
    analysis: str = "self"  # the analysis that produces it (set by the catalogue)

    @property
    def family(self) -> str:
        """The name prometheus_client wants: counters without their _total suffix."""
        return self.name.removesuffix("_total") if self.kind == "counter" else self.name


def gauge(name: str, help: str, labels: tuple[str, ...] = (), *, unit: str = "none") -> Metric:
    """A gauge named `name` without the prefix."""
    return Metric(PREFIX + name, help, labels, unit=unit)


def counter(name: str, help: str, labels: tuple[str, ...] = (), *, unit: str = "none") -> Metric:
    """A counter named `name` (ending in _total) without the prefix."""
    return Metric(PREFIX + name, help, labels, kind="counter", unit=unit)
