"""The record every analysis module declares: one place that says what the analysis is
called, how it runs, what window it takes, how the exporter serves it and how it is
printed. The registry (`exporter/registry.py`) lists the records; the exporter's jobs, the
`report` names, the refresh defaults, the metric catalogue and the text renderers are all
derived from that list."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from ..config import Config
from ..metricdef import Metric
from ..render import Text
from ..samples import Sample

R = TypeVar("R")


@dataclass(frozen=True)
class Window:
    """The window argument of an analysis: `hours=` or `days=`."""

    unit: Literal["hours", "days"]
    default: Callable[[Config], float]  # when the caller names none
    served: Callable[[Config], float] | None = None  # the exporter's, when it differs


@dataclass(frozen=True)
class ResultView:
    """What turning one result into samples may read besides the result itself."""

    config: Config
    results: Mapping[str, Any]  # the latest result of each analysis, by name


@dataclass(frozen=True)
class Served(Generic[R]):
    """How the exporter serves an analysis: how often it runs, which metric families it
    owns (each family belongs to exactly one analysis) and how a result becomes samples."""

    refresh_seconds: float  # default; `exporter.refresh.<name>` overrides it
    metrics: tuple[Metric, ...]
    to_samples: Callable[[R, ResultView], Iterable[Sample]]
    depends_on: tuple[str, ...] = ()  # other analyses whose results `to_samples` reads


@dataclass(frozen=True)
class Analysis(Generic[R]):
    """One analysis. `run(ctx, now=..., <window.unit>=...)` returns its result, a
    JSON-serialisable TypedDict (the public API's plain dict)."""

    name: str  # `report NAME`, the `analysis` label, the refresh key
    title: str  # one line for `report --help` and the README
    run: Callable[..., R]
    render_text: Callable[[R, Text], None] | None = None
    window: Window | None = None
    serve: Served[R] | None = None
    aliases: tuple[str, ...] = ()  # earlier names, still accepted
    report: bool = True  # False: served only, not a `report NAME`
    # the exporter's state kept between its runs (passed as `run(..., state=)`); a run
    # with it returns what a run without it returns at the same `now`, only cheaper
    incremental: Callable[[], Any] | None = None
