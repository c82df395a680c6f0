"""Analysis results -> metric samples -> metric families, within the series budget.

Each `_from_<job>` turns one analysis result into samples of the metrics in `metrics.py`.
When the fleet is larger than `max_series`, samples are cut in this order (documented in
the README), the least important first within each class, and every cut is counted:

1. container anomaly scores that are 0, then node anomaly scores that are 0;
2. correlations, weakest first;
3. learned thresholds;
4. container current values (CPU, RSS), smallest first;
5. non-zero anomaly scores, smallest |score| first (the worst anomalies stay longest).
Node-level values, emergency levels, SLIs, grades, forecasts and self-metrics are never cut.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .analyses.sli import grade as grade_of
from .config import Config
from .metrics import BY_NAME, FORECAST_STATUSES, GRADES, PREFIX

log = logging.getLogger(__name__)

MIB = 2**20
DAY = 86400

# Cut classes: higher is cut first; 0 is never cut.
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
    name: str, value: float, cut_class: int = KEEP, importance: float = 0.0, /, **labels: Any
) -> Sample:
    """A sample of metric `name` (without prefix); label values None become ""."""
    pairs = tuple((k, "" if v is None else str(v)) for k, v in labels.items())
    return Sample(name, pairs, float(value), cut_class, importance)


# --------------------------------------------------------------------------- per analysis

_CURRENT_NODE = {  # metric <- (summary column, scale)
    "cpu_usage_ratio": ("cpu_total_pct", 0.01),
    "cpu_iowait_ratio": ("cpu_iowait_pct", 0.01),
    "memory_available_bytes": ("mem_available_mb", MIB),
    "memory_total_bytes": ("mem_total_mb", MIB),
    "swap_used_bytes": ("swap_used_mb", MIB),
    "load1": ("load_1m", 1.0),
    "temperature_celsius": ("temperature_c", 1.0),
}
_CURRENT_CONTAINER = {
    "container_cpu_usage_ratio": ("cpu_total_pct", 0.01),
    "container_memory_rss_bytes": ("c_rss_mb", MIB),
}


def _from_current(result: dict[str, Any], ctx: dict[str, Any]) -> Iterator[Sample]:
    for node, (_, last) in result["spans"].items():
        yield sample("node_last_sample_timestamp_seconds", last, node=node)
    for n in result["sli"]["nodes"]:
        for name in ("availability", "performance", "capacity"):
            yield sample("sli_current_ratio", n[name], node=n["node_name"], sli=name)
    for n in result["summary"]["nodes"]:
        for metric, (column, scale) in _CURRENT_NODE.items():
            avg = n["metrics"].get(column, {}).get("avg")
            if avg is not None:
                yield sample(metric, avg * scale, node=n["node_name"])
        for c in n["containers"]:
            for metric, (column, scale) in _CURRENT_CONTAINER.items():
                avg = c["metrics"].get(column, {}).get("avg")
                if avg is not None:
                    yield sample(
                        metric,
                        avg * scale,
                        CONTAINER_VALUE,
                        avg,
                        node=n["node_name"],
                        container=c["container_name"],
                    )


def _from_emergency(result: dict[str, Any], ctx: dict[str, Any]) -> Iterator[Sample]:
    for c in result["checks"]:
        yield sample("emergency_threat", c["level"], node=c["node_name"], check=c["check"])


def _from_sli(result: dict[str, Any], ctx: dict[str, Any]) -> Iterator[Sample]:
    critical = ctx["critical_nodes"]
    for n in result["nodes"]:
        node = n["node_name"]
        for sli in ("availability", "performance", "capacity"):
            yield sample("sli_compliance_ratio", n[sli], node=node, sli=sli)
        # The grade follows the emergency check of this scrape, not of the SLI run.
        grade = (
            n["grade"]
            if critical is None
            else grade_of(
                n["availability"], n["performance"], n["capacity"], node in critical, ctx["sli"]
            )
        )
        for g in GRADES:
            yield sample("health_grade", 1 if g == grade.lower() else 0, node=node, grade=g)
        yield sample("health_score", GRADES.index(grade.lower()), node=node)


def _from_anomalies(result: dict[str, Any], ctx: dict[str, Any]) -> Iterator[Sample]:
    for s in result["scores"]:
        container = s["container_name"] or ""
        score = s["score"] or 0.0
        if score:
            cut, importance = ANOMALY_HIGH, abs(score)
        else:
            cut, importance = (CONTAINER_ZERO if container else ANOMALY_ZERO), 0.0
        yield sample(
            "anomaly_score",
            score,
            cut,
            importance,
            node=s["node_name"],
            container=container,
            metric=s["metric"],
        )


def _from_capacity(result: dict[str, Any], ctx: dict[str, Any]) -> Iterator[Sample]:
    for f in result["forecasts"]:
        if f.get("container_name"):
            continue
        labels = {"node": f["node_name"], "resource": f["resource_type"]}
        status = f["status"]
        if status == "exhaustion" and f["days_to_exhaustion"] is not None:
            tte = f["days_to_exhaustion"] * DAY
        else:
            tte = 0.0 if status == "already_exhausted" else math.inf
        yield sample("time_to_exhaustion_seconds", tte, **labels)
        if f.get("current_peak_ratio") is not None:
            yield sample("capacity_peak_ratio", f["current_peak_ratio"], **labels)
        yield sample("capacity_trend_ratio_per_day", f.get("trend_ratio_per_day") or 0.0, **labels)
        for s in FORECAST_STATUSES:
            yield sample("capacity_forecast_status", 1 if s == status else 0, **labels, status=s)


def _from_contention(result: dict[str, Any], ctx: dict[str, Any]) -> Iterator[Sample]:
    for n in result["nodes"]:
        yield sample(
            "contention_score", n["contention_score"], node=n["node_name"], resource=n["resource"]
        )


def _from_correlation(result: dict[str, Any], ctx: dict[str, Any]) -> Iterator[Sample]:
    for c in result["correlations"]:
        yield sample(
            "metric_correlation",
            c["coefficient"],
            CORRELATION,
            abs(c["coefficient"]),
            node=c["node_name"],
            metric_a=c["metric_a"],
            metric_b=c["metric_b"],
        )


def _from_patterns(result: dict[str, Any], ctx: dict[str, Any]) -> Iterator[Sample]:
    for n in result["nodes"]:
        node = n["node_name"]
        if n.get("peak_hour_utc") is not None:
            yield sample("workload_peak_hour", n["peak_hour_utc"], node=node)
        for period in ("daily", "weekly"):
            value = n.get(f"{period}_seasonality")
            if value is not None:
                yield sample("workload_seasonality_ratio", value, node=node, period=period)


def _from_thresholds(result: dict[str, Any], ctx: dict[str, Any]) -> Iterator[Sample]:
    for t in result["thresholds"]:
        if t["threshold"] is not None:
            yield sample(
                "dynamic_threshold",
                t["threshold"],
                THRESHOLD,
                0.0,
                node=t["node_name"],
                metric=t["metric"],
                priority=t["priority"][:2],
            )


FROM_RESULT = {
    "current": _from_current,
    "emergency": _from_emergency,
    "sli": _from_sli,
    "anomalies": _from_anomalies,
    "capacity": _from_capacity,
    "contention": _from_contention,
    "correlation": _from_correlation,
    "patterns": _from_patterns,
    "thresholds": _from_thresholds,
}


class SampleCache:
    """Samples of every analysis that has a result (the last good one), rebuilt only for
    the analyses whose result changed since the previous scrape: a 15-minute capacity
    forecast is turned into samples once, not on every scrape."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._cache: dict[str, tuple[tuple[Any, ...], list[Sample]]] = {}
        self._lock = threading.Lock()

    def per_job(self, results: dict[str, Any]) -> dict[str, tuple[tuple[Any, ...], list[Sample]]]:
        """job -> (identity key of what its samples were built from, samples)."""
        emergency = results.get("emergency")
        out = {}
        for job, result in results.items():
            if result is None:
                continue
            # SLI grades follow the emergency check, so they change with it
            key = (result, emergency) if job == "sli" else (result,)
            with self._lock:
                cached = self._cache.get(job)
            if cached is None or not same(cached[0], key):
                cached = (key, self._build(job, result, emergency))  # outside the lock
                with self._lock:
                    self._cache[job] = cached
            out[job] = cached
        return out

    def samples(self, results: dict[str, Any]) -> list[Sample]:
        return [s for _, samples in self.per_job(results).values() for s in samples]

    def _build(self, job: str, result: dict[str, Any], emergency: dict[str, Any] | None):
        critical = None
        if emergency is not None:
            critical = {
                t["node_name"] for t in emergency["threats"] if t["priority"] == "P1-CRITICAL"
            }
        try:
            return list(
                FROM_RESULT[job](result, {"critical_nodes": critical, "sli": self.config.sli})
            )
        except Exception:  # one malformed result must not blank the others
            log.exception("building the metrics of analysis %s failed", job)
            return []


def same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """The same objects (results are never mutated, so identity is equality)."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------- budget


def apply_budget(samples: list[Sample], max_series: int) -> tuple[list[Sample], dict[str, int]]:
    """Keep at most `max_series` samples, cutting in the documented order."""
    dropped = {kind: 0 for kind in CUT_KINDS.values()}
    excess = len(samples) - max_series
    if excess <= 0:
        return samples, dropped
    candidates = sorted(
        (i for i, s in enumerate(samples) if s.cut_class != KEEP),
        key=lambda i: (-samples[i].cut_class, samples[i].importance),
    )
    cut = set(candidates[:excess])
    for i in cut:
        dropped[CUT_KINDS[samples[i].cut_class]] += 1
    return [s for i, s in enumerate(samples) if i not in cut], dropped


# --------------------------------------------------------------------------- families


def families(samples: Iterable[Sample]) -> list[Metric]:
    """Group samples into metric families in the order of `metrics.METRICS`."""
    by_metric: dict[str, list[Sample]] = {}
    for s in samples:
        by_metric.setdefault(s.metric, []).append(s)
    out: list[Metric] = []
    for name, group in by_metric.items():
        spec = BY_NAME[PREFIX + name]
        cls = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
        family = cls(spec.family, spec.help, labels=list(spec.labels))
        for s in group:
            values = dict(s.labels)
            family.add_metric([values.get(label, "") for label in spec.labels], s.value)
        out.append(family)
    order = {m: i for i, m in enumerate(BY_NAME)}
    out.sort(key=lambda f: order.get(f.name if f.type != "counter" else f.name + "_total", 0))
    return out


# --------------------------------------------------------------------------- text

Encoder = Callable[[Any], bytes]  # prometheus_client's generate_latest of one format
OPENMETRICS_EOF = b"# EOF\n"


class _Static:
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


def render(metrics: list[Metric], encoder: Encoder) -> bytes:
    """Exposition text of `metrics` in the encoder's format, without OpenMetrics's final
    `# EOF`, so that parts rendered at different times can be joined into one body (every
    family comes from one analysis, so parts never split a family)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Static(metrics))
    return encoder(registry).removesuffix(OPENMETRICS_EOF)


def is_openmetrics(content_type: str) -> bool:
    return content_type.startswith("application/openmetrics-text")
