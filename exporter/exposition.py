"""Analysis results -> metric samples -> metric families, within the series budget.

Each served analysis turns its own result into samples (`Served.to_samples` in its
module). When the fleet is larger than `max_series`, samples are cut in this order
(documented in the README), the least important first within each class, and every cut is
counted:

1. container anomaly scores that are 0, then node anomaly scores that are 0;
2. correlations, weakest first;
3. learned thresholds;
4. container current values (CPU, RSS), smallest first;
5. non-zero anomaly scores, smallest |score| first (the worst anomalies stay longest).
Node-level values, emergency levels, SLIs, grades, forecasts and self-metrics are never cut.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from . import metrics, registry
from .analyses.unit import ResultView
from .config import Config
from .metricdef import PREFIX
from .samples import CUT_KINDS, KEEP, Sample

log = logging.getLogger(__name__)


class SampleCache:
    """Samples of every analysis that has a result (the last good one), rebuilt only for
    the analyses whose result (or a result it depends on) changed since the previous
    scrape: a 15-minute capacity forecast is turned into samples once, not on every scrape.
    A result that cannot be turned into samples is counted in `errors` and serves nothing,
    without blanking the other analyses."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._cache: dict[str, tuple[tuple[Any, ...], list[Sample]]] = {}
        self._lock = threading.Lock()
        self.errors: Counter[str] = Counter()  # analysis -> failed conversions

    def per_job(
        self, results: Mapping[str, Any]
    ) -> dict[str, tuple[tuple[Any, ...], list[Sample]]]:
        """analysis -> (identity key of what its samples were built from, samples)."""
        out = {}
        for analysis in registry.served():
            assert analysis.serve is not None
            result = results.get(analysis.name)
            if result is None:
                continue
            key = (result, *(results.get(d) for d in analysis.serve.depends_on))
            with self._lock:
                cached = self._cache.get(analysis.name)
            if cached is None or not same(cached[0], key):
                cached = (key, self._build(analysis.name, result, results))  # outside the lock
                with self._lock:
                    self._cache[analysis.name] = cached
            out[analysis.name] = cached
        return out

    def samples(self, results: Mapping[str, Any]) -> list[Sample]:
        return [s for _, samples in self.per_job(results).values() for s in samples]

    def _build(self, name: str, result: Any, results: Mapping[str, Any]) -> list[Sample]:
        serve = registry.get(name).serve
        assert serve is not None
        try:
            return list(serve.to_samples(result, ResultView(self.config, results)))
        except Exception:  # one malformed result must not blank the others
            log.exception("building the metrics of analysis %s failed", name)
            with self._lock:
                self.errors[name] += 1
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
    """Group samples into metric families in the order of the metric catalogue."""
    catalogue = {m.name: (i, m) for i, m in enumerate(metrics.catalogue())}
    by_metric: dict[str, list[Sample]] = {}
    for s in samples:
        by_metric.setdefault(s.metric, []).append(s)
    out: list[tuple[int, Metric]] = []
    for name, group in by_metric.items():
        order, spec = catalogue[PREFIX + name]
        family: GaugeMetricFamily | CounterMetricFamily
        if spec.kind == "counter":
            family = CounterMetricFamily(spec.family, spec.help, labels=list(spec.labels))
        else:
            family = GaugeMetricFamily(spec.family, spec.help, labels=list(spec.labels))
        for s in group:
            values = dict(s.labels)
            family.add_metric([values.get(label, "") for label in spec.labels], s.value)
        out.append((order, family))
    out.sort(key=lambda pair: pair[0])
    return [family for _, family in out]


# --------------------------------------------------------------------------- text

Encoder = Callable[[Any], bytes]  # prometheus_client's generate_latest of one format
OPENMETRICS_EOF = b"# EOF\n"


class _Static:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def render(families: list[Metric], encoder: Encoder) -> bytes:
    """Exposition text of `families` in the encoder's format, without OpenMetrics's final
    `# EOF`, so that parts rendered at different times can be joined into one body (every
    family comes from one analysis, so parts never split a family)."""
    collectors = CollectorRegistry(auto_describe=False)
    collectors.register(_Static(families))
    return encoder(collectors).removesuffix(OPENMETRICS_EOF)


def is_openmetrics(content_type: str) -> bool:
    return content_type.startswith("application/openmetrics-text")
