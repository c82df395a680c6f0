"""The list of analyses. Everything that names an analysis is derived from it: the
exporter's jobs and their refresh defaults, `report NAME`, the metric catalogue and the
text renderers. Adding an analysis is one module in `analyses/` and one line here."""

from __future__ import annotations

from typing import Any

from .analyses import (
    anomalies,
    capacity,
    contention,
    correlation,
    cpus,
    current,
    daily,
    emergency,
    patterns,
    sli,
    summary,
    thresholds,
    weekly,
)
from .analyses.common import Context
from .analyses.hosts import guard_nodes
from .analyses.unit import Analysis
from .config import Config, ConfigError
from .render import Text

ANALYSES: tuple[Analysis[Any], ...] = (
    current.ANALYSIS,
    emergency.ANALYSIS,
    sli.ANALYSIS,
    anomalies.ANALYSIS,
    capacity.ANALYSIS,
    contention.ANALYSIS,
    cpus.ANALYSIS,
    correlation.ANALYSIS,
    patterns.ANALYSIS,
    thresholds.ANALYSIS,
    daily.ANALYSIS,
    weekly.ANALYSIS,
    summary.ANALYSIS,
)


def get(name: str) -> Analysis[Any]:
    """The analysis called `name` or one of its earlier names."""
    for analysis in ANALYSES:
        if name == analysis.name or name in analysis.aliases:
            return analysis
    raise KeyError(name)


def served() -> tuple[Analysis[Any], ...]:
    """The analyses the exporter runs, in the order their metrics are served."""
    return tuple(a for a in ANALYSES if a.serve is not None)


def reportable() -> tuple[Analysis[Any], ...]:
    """The analyses `perf-analyzer report NAME` prints."""
    return tuple(a for a in ANALYSES if a.report)


def run(
    analysis: Analysis[Any], ctx: Context, window: float | None, now: int, state: Any = None
) -> Any:
    """Run `analysis` as of `now` over `window` (its unit; None: its default); `state`:
    its incremental state (`Analysis.incremental`), None for a run from scratch."""
    extra = {} if state is None else {"state": state}
    guard_nodes(ctx, now)  # only the nodes that can be served are read
    if analysis.window is None:
        return analysis.run(ctx, now=now, **extra)
    if window is None:
        window = analysis.window.default(ctx.config)
    return analysis.run(ctx, now=now, **{analysis.window.unit: window}, **extra)


def served_window(analysis: Analysis[Any], config: Config) -> float | None:
    """The window the exporter runs `analysis` over (None: the analysis has none)."""
    if analysis.window is None:
        return None
    chosen = analysis.window.served or analysis.window.default
    return chosen(config)


def refresh_seconds(analysis: Analysis[Any], config: Config) -> float:
    """Seconds between the exporter's runs of `analysis`: `exporter.refresh.<name>` (or an
    earlier name of it), else the analysis's default."""
    assert analysis.serve is not None
    for key in (analysis.name, *analysis.aliases):
        if key in config.exporter.refresh:
            return float(config.exporter.refresh[key])
    return analysis.serve.refresh_seconds


def check_refresh(config: Config) -> None:
    """Refuse `exporter.refresh` keys that name no served analysis, in one sentence."""
    names = {n for a in served() for n in (a.name, *a.aliases)}
    for key in config.exporter.refresh:
        if key not in names:
            known = ", ".join(a.name for a in served())
            raise ConfigError(
                f"configuration key exporter.refresh.{key} names no analysis the exporter "
                f"runs; known: {known}"
            )


def render_text(name: str, result: Any, *, colour: bool) -> str:
    """`result` of analysis `name` as text for a person."""
    analysis = get(name)
    if analysis.render_text is None:
        raise KeyError(name)
    text = Text(colour)
    analysis.render_text(result, text)
    return str(text)
