"""History from the first minute: replay the served analyses at past moments and write what
the exporter would have served as OpenMetrics with timestamps, for
`promtool tsdb create-blocks-from openmetrics`.

Each analysis runs as the exporter runs it (`registry.run` over `registry.served_window`),
every `step` seconds (default: its refresh interval), and its last good result is turned
into samples by the exporter's own code (`exposition.SampleCache`, then the series budget)
at every scrape tick, as if Prometheus had scraped the exporter all along: a 15-minute
capacity forecast is still a continuous series, not one point every 15 minutes that
Prometheus's 5-minute lookback would lose. The exporter's own metrics (database_up,
analysis_*) describe a process that did not run then, so they are not written.

Memory stays bounded by the fleet, not by the history: each tick's lines are appended to a
spool file per metric family as they are made, and the families are joined at the end
(OpenMetrics wants each family once; each series is time-ordered because ticks are).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from prometheus_client.utils import floatToGoString

from . import metrics, registry
from .analyses.common import Context
from .exposition import OPENMETRICS_EOF, SampleCache, apply_budget
from .metricdef import PREFIX, Metric
from .samples import Sample
from .store import StoreError

log = logging.getLogger(__name__)


@dataclass
class Summary:
    """What a backfill wrote."""

    start: int
    end: int
    ticks: int = 0
    samples: int = 0
    runs: dict[str, int] = field(default_factory=dict)  # analysis -> successful runs
    failures: dict[str, int] = field(default_factory=dict)  # analysis -> failed runs
    families: int = 0


def ticks(start: int, end: int, every: int) -> Iterator[int]:
    """Scrape moments from `start` to `end`, on multiples of `every` (nice timestamps)."""
    first = -(-start // every) * every
    return iter(range(first, end + 1, every))


def steps(config: Any, step: Mapping[str, float], scrape: int) -> dict[str, int]:
    """Seconds between runs of each served analysis: `step[name]`, else `step[""]`, else
    its refresh interval, never shorter than a scrape (0 means every scrape)."""
    unknown = set(step) - {"", *(n for a in registry.served() for n in (a.name, *a.aliases))}
    if unknown:
        raise ValueError(
            f"--step names no analysis the exporter runs: {', '.join(sorted(unknown))}"
        )
    if any(not v > 0 for v in step.values()):
        raise ValueError("--step must be positive seconds")
    out = {}
    for analysis in registry.served():
        every = next(
            (step[k] for k in (analysis.name, *analysis.aliases, "") if k in step),
            registry.refresh_seconds(analysis, config),
        )
        out[analysis.name] = max(scrape, math.ceil(every))
    return out


def backfill(
    ctx: Context,
    out: IO[bytes],
    *,
    start: int,
    end: int,
    step: Mapping[str, float] | None = None,
    scrape: int = 60,
    progress: Callable[[int, int], object] | None = None,
) -> Summary:
    """Write OpenMetrics of the served analyses from `start` to `end` (unix seconds) to
    `out`; `step` maps an analysis name (or "" for all) to seconds between its runs;
    `progress(tick, end)` after each tick."""
    if end <= start:
        raise ValueError(f"nothing to backfill: the range ends ({end}) before it starts ({start})")
    if scrape < 1:
        raise ValueError("--scrape-interval must be positive seconds")
    config = ctx.config
    every = steps(config, step or {}, scrape)
    summary = Summary(start, end)
    cache = SampleCache(config)
    results: dict[str, Any] = {}
    due = {name: 0 for name in every}
    catalogue = {m.name: m for m in metrics.catalogue()}
    with tempfile.TemporaryDirectory(prefix="perf-analyzer-backfill-") as spool_dir:
        spools: dict[str, IO[bytes]] = {}
        try:
            for t in ticks(start, end, scrape):
                _run_due(ctx, t, every, due, results, summary)
                samples = [s for _, part in cache.per_job(results).values() for s in part]
                if len(samples) > config.exporter.max_series:
                    samples, _ = apply_budget(samples, config.exporter.max_series)
                for s in samples:
                    spool = spools.get(s.metric)
                    if spool is None:
                        spool = spools[s.metric] = open(Path(spool_dir) / s.metric, "w+b")  # noqa: SIM115
                    spool.write(line(catalogue[PREFIX + s.metric], s, t))
                summary.samples += len(samples)
                summary.ticks += 1
                if progress is not None:
                    progress(t, end)
            for spec in metrics.catalogue():  # the catalogue's order, each family once
                spool = spools.get(spec.name.removeprefix(PREFIX))
                if spool is None:
                    continue
                out.write(header(spec))
                spool.seek(0)
                shutil.copyfileobj(spool, out)
                summary.families += 1
            out.write(OPENMETRICS_EOF)
        finally:
            for spool in spools.values():
                spool.close()
    summary.failures = {k: v for k, v in summary.failures.items() if v}
    return summary


def _run_due(
    ctx: Context,
    t: int,
    every: dict[str, int],
    due: dict[str, int],
    results: dict[str, Any],
    summary: Summary,
) -> None:
    """Run the analyses due at `t`; a failed run keeps the last good result, as the
    exporter does, except an unreachable database, which ends the backfill."""
    for analysis in registry.served():
        name = analysis.name
        if t < due[name]:
            continue
        due[name] = t + every[name]
        try:
            window = registry.served_window(analysis, ctx.config)
            results[name] = registry.run(analysis, ctx, window, t)
            summary.runs[name] = summary.runs.get(name, 0) + 1
        except StoreError as exc:
            if exc.unreachable:
                raise
            log.warning("analysis=%s at=%d failed: %s", name, t, exc)
            summary.failures[name] = summary.failures.get(name, 0) + 1
        except Exception as exc:  # one analysis's bug must not stop the others
            log.warning("analysis=%s at=%d failed: %s: %s", name, t, type(exc).__name__, exc)
            summary.failures[name] = summary.failures.get(name, 0) + 1


# --------------------------------------------------------------------------- OpenMetrics


def header(spec: Metric) -> bytes:
    return (
        f"# HELP {spec.family} {_escape(spec.help)}\n# TYPE {spec.family} {spec.kind}\n"
    ).encode()


def line(spec: Metric, s: Sample, t: int) -> bytes:
    """One sample with its timestamp (seconds). Labels in the catalogue's order; an empty
    value is an absent label to Prometheus, so it is left out."""
    values = dict(s.labels)
    labels = ",".join(
        f'{name}="{_escape(values[name])}"' for name in spec.labels if values.get(name)
    )
    body = f"{spec.name}{{{labels}}}" if labels else spec.name
    return f"{body} {floatToGoString(s.value)} {t}\n".encode()


def _escape(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
