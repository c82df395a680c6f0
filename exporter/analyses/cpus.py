"""CPUs per node, and where the number comes from: `--cpu-count` (config), the table's
`cpu_count` column written by the sampler (column), or the load-based estimate (estimate,
see `hosts.cpu_counts`). The load check divides by this number, so an operator can see
which nodes rest on an estimate, and which have none (their load check is skipped).

Node names that differ only in case or surrounding whitespace are reported here too, and
logged once per process: the analyses treat them as separate nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TypedDict

from ..metricdef import gauge
from ..render import Text
from ..samples import Sample, sample
from .common import Context
from .hosts import cpu_counts, describe_clash, name_clashes, node_spans
from .unit import Analysis, ResultView, Served

log = logging.getLogger(__name__)
_warned: set[tuple[str, ...]] = set()  # name groups already logged by this process


class NodeCpus(TypedDict):
    node_name: str
    cpus: int | None  # None: no column value, no usable estimate, no --cpu-count
    source: str | None  # config, column or estimate


class CpusResult(TypedDict):
    nodes: list[NodeCpus]
    name_clashes: list[list[str]]  # node names equal but for case or whitespace


def node_cpus(ctx: Context, *, now: int) -> CpusResult:
    """CPU count and its source per node with samples up to `now`."""
    names = sorted(node_spans(ctx, now))
    counts = {} if ctx.cpu_count else cpu_counts(ctx, now)
    nodes: list[NodeCpus] = []
    for name in names:
        if ctx.cpu_count:
            nodes.append({"node_name": name, "cpus": ctx.cpu_count, "source": "config"})
        elif name in counts:
            n, source = counts[name]
            nodes.append({"node_name": name, "cpus": n, "source": source})
        else:
            nodes.append({"node_name": name, "cpus": None, "source": None})
    clashes = name_clashes(names)
    for group in clashes:
        if tuple(group) not in _warned:
            _warned.add(tuple(group))
            log.warning(
                "node names %s differ only in case or surrounding whitespace and are "
                "analysed as separate nodes; make the samplers agree on one name",
                describe_clash(group),
            )
    return {"nodes": nodes, "name_clashes": clashes}


CPUS = gauge(
    "node_cpus",
    "CPUs of the node and the source of the number: column (written by the sampler),"
    " estimate (from load at moderate CPU) or config (--cpu-count).",
    ("node", "source"),
)


def to_samples(result: CpusResult, view: ResultView) -> Iterator[Sample]:
    for n in result["nodes"]:
        if n["cpus"] is not None:
            yield sample("node_cpus", n["cpus"], node=n["node_name"], source=n["source"])


def render_text(r: CpusResult, t: Text) -> None:
    t.title("CPU COUNTS")
    t.table(
        ("node", "cpus", "source"),
        (
            (n["node_name"], n["cpus"], n["source"] or "none: load check skipped")
            for n in r["nodes"]
        ),
    )
    for group in r["name_clashes"]:
        t.line(f"   names differing only in case or whitespace: {describe_clash(group)}")


ANALYSIS = Analysis[CpusResult](
    name="cpus",
    title="CPUs per node and where the number comes from (sampler column, estimate, config)",
    run=node_cpus,
    render_text=render_text,
    serve=Served(refresh_seconds=300, metrics=(CPUS,), to_samples=to_samples),
)
