"""Analysis results -> metric samples -> metric families, within the series budget.

Each served analysis turns its own result into samples (`Served.to_samples` in its
module). When the fleet is larger than `max_series`, samples are cut in this order
(documented in the README), the least important first within each class, and every cut is
counted:

1. container anomaly scores that are 0, then node anomaly scores that are 0;
2. correlations, weakest first;
3. learned thresholds;
4. container current values (CPU, RSS), smallest first;
5. non-zero anomaly scores, smallest |score| first (the worst anomalies stay longest);
6. whole nodes, the node whose newest sample is oldest first: every series of the node
   goes together (node values, emergency levels, SLIs, grades, forecasts), so a node is
   either served whole or not at all.
Fleet-wide series and self-metrics are never cut; the budget counts them.

When more nodes have a newest sample than the budget can serve (at the least series a
served node costs, `hosts.NODE_MIN_SERIES`), nodes are likely to be cut, and since every
node has at least one series that is never cut (its newest-sample time), the nodes at the
cut end of that order are known to go before any sample is built: `SampleCache.budget`
builds samples only for the nodes at the kept end (as many as the budget can hold, found
by growing the set), filtering each result's per-node records before its `to_samples`;
every cuttable sample is then cut and the same node cut as above runs over what was
built. The series of the nodes never built are estimated from those built (per node, per
kind) for `series_dropped`.

Node and container names longer than `MAX_LABEL_CHARS` are shortened where samples are
built, with a hash of the full name as suffix, so two long names stay two series.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from . import metrics, registry
from .analyses.current import newest_node_rows
from .analyses.hosts import NODE_MIN_SERIES
from .analyses.unit import ResultView
from .config import Config
from .metricdef import PREFIX
from .samples import CUT_KINDS, KEEP, Sample

log = logging.getLogger(__name__)

NODE_KIND = "node"  # series_dropped{kind}: whole nodes cut by the budget
DROP_KINDS = (*CUT_KINDS.values(), NODE_KIND)
MAX_LABEL_CHARS = 128  # node and container names longer than this are shortened
NAME_LABELS = frozenset({"node", "container"})
_HASH_CHARS = 8
NEWEST_METRIC = "node_last_sample_timestamp_seconds"  # orders the nodes to cut


class SampleCache:
    """Samples of every analysis that has a result (the last good one), rebuilt only for
    the analyses whose result (or a result it depends on) changed since the previous
    scrape: a 15-minute capacity forecast is turned into samples once, not on every scrape.
    A result that cannot be turned into samples is counted in `errors` and serves nothing,
    without blanking the other analyses."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._cache: dict[str, tuple[tuple[Any, ...], list[Sample]]] = {}
        # analysis -> (identity key, nodes built, samples of those nodes only)
        self._few: dict[str, tuple[tuple[Any, ...], frozenset[str], list[Sample]]] = {}
        # nodes built and served by the last node-level cut: where the next one starts
        self._built_nodes = self._kept_nodes = 0
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
                    self._few.pop(analysis.name, None)
            out[analysis.name] = cached
        return out

    def seed(self, name: str, key: tuple[Any, ...], samples: list[Sample]) -> None:
        """Samples of `name` built elsewhere (the worker process) from what `key` holds (the
        same identity key as `per_job`'s), so that they are not built again here."""
        with self._lock:
            self._cache[name] = (key, samples)

    @staticmethod
    def keys(results: Mapping[str, Any]) -> dict[str, tuple[Any, ...]]:
        """analysis -> identity key of what its samples are built from."""
        out = {}
        for analysis in registry.served():
            assert analysis.serve is not None
            result = results.get(analysis.name)
            if result is not None:
                deps = (results.get(d) for d in analysis.serve.depends_on)
                out[analysis.name] = (result, *deps)
        return out

    @staticmethod
    def too_many_nodes(results: Mapping[str, Any], max_series: int) -> bool:
        """More nodes with a newest sample than the budget can serve at the least a served
        node costs (`NODE_MIN_SERIES`): nodes are likely to be cut, so `budget` builds only
        the nodes that can stay (its answer is `apply_budget`'s either way). A fleet the
        node guard cut to max_series / NODE_MIN_SERIES nodes takes this path too."""
        current = results.get("current")
        return current is not None and len(newest_node_rows(current)) * NODE_MIN_SERIES > max_series

    def budget(
        self, results: Mapping[str, Any], max_series: int
    ) -> tuple[list[Sample], dict[str, int]]:
        """`apply_budget` for a fleet with more nodes than `max_series` (`too_many_nodes`),
        building samples only for the freshest nodes: the first `k` in the kept order,
        `k` grown until the node cut falls inside them. The result is what `apply_budget`
        over every sample would serve; the dropped counts of the nodes never built are
        extrapolated from the built ones."""
        newest = newest_node_rows(results["current"])
        labels = {node: shorten(node) for node in newest}
        order = sorted(newest, key=lambda n: (newest[n], labels[n]), reverse=True)
        names = frozenset(newest)
        with self._lock:
            built_before, kept_before = self._built_nodes, self._kept_nodes
        # the previous set again while it still holds the cut (its samples are cached)
        if not 0 < built_before <= 4 * (kept_before + 16):
            built_before = max(64, 2 * kept_before)
        k = min(len(order), built_before)
        while True:
            built = frozenset(order[:k])
            everything = self._built_for(results, built, names, frozenset(labels[n] for n in built))
            kept, dropped, cut_nodes = cut_everything_cuttable(everything, max_series)
            if cut_nodes:
                break
            if k == len(order):  # every node built (fits after all): the plain cut
                return apply_budget(everything, max_series)
            keep_series = sum(1 for s in everything if s.cut_class == KEEP)
            k = min(len(order), max(2 * k, math.ceil(k * max_series / max(keep_series, 1) * 1.25)))
        unbuilt = len(order) - k
        if unbuilt:
            per_kind = Counter(
                CUT_KINDS[s.cut_class] if s.cut_class != KEEP else NODE_KIND
                for s in everything
                if _node_of(s) is not None
            )
            for kind, n in per_kind.items():
                dropped[kind] += round(n * unbuilt / k)
        with self._lock:
            self._built_nodes, self._kept_nodes = k, k - cut_nodes
        log_nodes_dropped(cut_nodes + unbuilt, dropped[NODE_KIND])
        return kept, dropped

    def _built_for(
        self,
        results: Mapping[str, Any],
        nodes: frozenset[str],
        names: frozenset[str],
        node_labels: frozenset[str],
    ) -> list[Sample]:
        """The samples of every analysis for `nodes` only (and the fleet-wide ones), each
        analysis rebuilt only when its result or the set of nodes changed."""
        out: list[Sample] = []
        for name, key in self.keys(results).items():
            with self._lock:
                cached = self._few.get(name)
            if cached is None or cached[1] != nodes or not same(cached[0], key):
                filtered = only_nodes(key[0], nodes, names)
                built = [
                    s
                    for s in self._build(name, filtered, results)
                    if (node := _node_of(s)) is None or node in node_labels
                ]
                cached = (key, nodes, built)
                with self._lock:
                    self._few[name] = cached
                    self._cache.pop(name, None)  # the whole fleet's samples are not kept
            out += cached[2]
        return out

    def samples(self, results: Mapping[str, Any]) -> list[Sample]:
        return [s for _, samples in self.per_job(results).values() for s in samples]

    def _build(self, name: str, result: Any, results: Mapping[str, Any]) -> list[Sample]:
        serve = registry.get(name).serve
        assert serve is not None
        try:
            return [
                shorten_names(s) for s in serve.to_samples(result, ResultView(self.config, results))
            ]
        except Exception:  # one malformed result must not blank the others
            log.exception("building the metrics of analysis %s failed", name)
            with self._lock:
                self.errors[name] += 1
            return []


def only_nodes(value: Any, keep: frozenset[str], names: frozenset[str]) -> Any:
    """`value` (a result) without the per-node records of the nodes outside `keep`: list
    items that are mappings with a `node_name`, and the entries of a mapping (or list) made
    only of node names (`names`). Anything else is copied as it is, so fleet-wide fields are
    untouched; `to_samples` builds a node's samples from that node's records only."""
    if isinstance(value, dict):
        if value and all(isinstance(k, str) and k in names for k in value):
            return {k: v for k, v in value.items() if k in keep}
        return {k: only_nodes(v, keep, names) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(v, str) and v in names for v in value):
            return [v for v in value if v in keep]
        if value and all(
            isinstance(v, dict) and isinstance(v.get("node_name"), str) for v in value[:1]
        ):
            try:  # a list of one TypedDict: every item has a node_name
                return [only_nodes(v, keep, names) for v in value if v["node_name"] in keep]
            except (KeyError, TypeError):
                pass
        return [
            only_nodes(v, keep, names)
            for v in value
            if not (isinstance(v, dict) and isinstance(v.get("node_name"), str))
            or v["node_name"] in keep
        ]
    return value


def same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """The same objects (results are never mutated, so identity is equality)."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------- budget


def shorten(name: str) -> str:
    """`name` cut to `MAX_LABEL_CHARS`, ending in `~` and a hash of the whole name, so the
    result is stable across scrapes and distinct for names that share a long prefix."""
    if len(name) <= MAX_LABEL_CHARS:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    return f"{name[: MAX_LABEL_CHARS - _HASH_CHARS - 1]}~{digest}"


def shorten_names(s: Sample) -> Sample:
    if all(len(v) <= MAX_LABEL_CHARS or k not in NAME_LABELS for k, v in s.labels):
        return s
    labels = tuple((k, shorten(v) if k in NAME_LABELS else v) for k, v in s.labels)
    return Sample(s.metric, labels, s.value, s.cut_class, s.importance)


def apply_budget(samples: list[Sample], max_series: int) -> tuple[list[Sample], dict[str, int]]:
    """Keep at most `max_series` samples, cutting in the documented order: the cut
    classes first, then whole nodes."""
    dropped = dict.fromkeys(DROP_KINDS, 0)
    excess = len(samples) - max_series
    if excess <= 0:
        log_nodes_dropped(0, 0)
        return samples, dropped
    candidates = sorted(
        (i for i, s in enumerate(samples) if s.cut_class != KEEP),
        key=lambda i: (-samples[i].cut_class, samples[i].importance),
    )
    cut = set(candidates[:excess])
    for i in cut:
        dropped[CUT_KINDS[samples[i].cut_class]] += 1
    kept = [s for i, s in enumerate(samples) if i not in cut]
    kept, series, nodes = _drop_nodes(kept, len(kept) - max_series)
    dropped[NODE_KIND] = series
    log_nodes_dropped(nodes, series)
    return kept, dropped


def cut_everything_cuttable(
    samples: list[Sample], max_series: int
) -> tuple[list[Sample], dict[str, int], int]:
    """`apply_budget` when nodes are to be cut: every sample of a cut class goes (the node
    cut comes after them all), then whole nodes; returns (kept, dropped, nodes cut)."""
    dropped = dict.fromkeys(DROP_KINDS, 0)
    keep = []
    for s in samples:
        if s.cut_class == KEEP:
            keep.append(s)
        else:
            dropped[CUT_KINDS[s.cut_class]] += 1
    kept, series, nodes = _drop_nodes(keep, len(keep) - max_series)
    dropped[NODE_KIND] = series
    return kept, dropped, nodes


def _node_of(s: Sample) -> str | None:
    for key, value in s.labels:
        if key == "node":
            return value
    return None


def _drop_nodes(samples: list[Sample], excess: int) -> tuple[list[Sample], int, int]:
    """Drop whole nodes, the node whose newest sample is oldest first (a node with no
    known newest sample before any, then by name for a stable order), until `excess`
    series are gone; returns (kept, series dropped, nodes dropped)."""
    if excess <= 0:
        return samples, 0, 0
    nodes = [_node_of(s) for s in samples]
    series: Counter[str] = Counter(n for n in nodes if n is not None)
    newest: dict[str, float] = {
        node: s.value
        for s, node in zip(samples, nodes, strict=True)
        if s.metric == NEWEST_METRIC and node is not None and not math.isnan(s.value)
    }
    cut: set[str | None] = set()
    removed = 0
    for node in sorted(series, key=lambda n: (newest.get(n, -math.inf), n)):
        if removed >= excess:
            break
        cut.add(node)
        removed += series[node]
    kept = [s for s, node in zip(samples, nodes, strict=True) if node not in cut]
    return kept, removed, len(cut)


_logged_nodes = 0
_log_lock = threading.Lock()


def log_nodes_dropped(nodes: int, series: int) -> None:
    """One log line when the number of nodes cut by the budget changes, not per scrape."""
    global _logged_nodes
    with _log_lock:
        if nodes == _logged_nodes:
            return
        _logged_nodes = nodes
    if nodes:
        log.warning(
            "series budget (--max-series) exceeded: %d nodes not served (%d series), those "
            "with the oldest newest sample first; raise --max-series or shard the exporter",
            nodes,
            series,
        )
    else:
        log.info("series budget: every node is served again")


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
