"""Metric samples as analyses produce them, with what the series budget needs to cut them.

When the output is larger than `max_series`, samples are cut by class, the highest class
first and, within a class, the least important first (see `exposition.apply_budget`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Cut classes: higher is cut first; KEEP is never cut.
KEEP, ANOMALY_HIGH, CONTAINER_VALUE, THRESHOLD, CORRELATION, ANOMALY_ZERO, CONTAINER_ZERO = range(7)
CUT_KINDS = {
    CONTAINER_ZERO: "container_anomaly_zero",
    ANOMALY_ZERO: "anomaly_zero",
    CORRELATION: "correlation",
    THRESHOLD: "dynamic_threshold",
    CONTAINER_VALUE: "container_value",
    ANOMALY_HIGH: "anomaly",
}


@dataclass(frozen=True)
class Sample:
    metric: str  # name without the prefix
    labels: tuple[tuple[str, str], ...]
    value: float
    cut_class: int = KEEP
    importance: float = 0.0


def sample(
    name: str,
    value: float | None,
    cut_class: int = KEEP,
    importance: float = 0.0,
    /,
    **labels: Any,
) -> Sample:
    """A sample of metric `name` (without prefix); label values None become "", an unknown
    value (None) becomes NaN."""
    pairs = tuple((k, "" if v is None else str(v)) for k, v in labels.items())
    return Sample(name, pairs, math.nan if value is None else float(value), cut_class, importance)
