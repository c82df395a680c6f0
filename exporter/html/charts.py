"""Charts as inline SVG, drawn by matplotlib's SVG backend (the `html` extra).

Text stays text in the SVG (`svg.fonttype: none`), so a node name in a chart is searchable,
selectable and escaped by the SVG writer; mathtext is off, so a `$` in a name is a dollar.
Each chart gets its own id salt: several SVGs in one page never share an element id."""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import matplotlib
import matplotlib.dates as mdates
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

STYLE: Any = {  # Any: matplotlib types rcParams keys as literals
    "svg.fonttype": "none",
    "text.parse_math": False,
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "path.simplify": True,
    "axes.titley": 1.0,  # a fixed title position: no layout pass to place it (a third faster)
}
_salt = itertools.count()
# grade colours, worst to best, then UNKNOWN
GRADE_ORDER = ("CRITICAL", "POOR", "ACCEPTABLE", "GOOD", "EXCELLENT", "UNKNOWN")
GRADE_COLOURS = ("#cf222e", "#fa8c8c", "#f2cc60", "#8fd19e", "#1a7f37", "#d8dde3")


def _dates(ts: Sequence[float] | np.ndarray) -> list[datetime]:
    return [datetime.fromtimestamp(float(t), UTC) for t in ts]


def to_svg(fig: Figure, tight: bool = False) -> str:
    """The figure as an `<svg>` element (no XML prolog: it goes inside HTML). `tight` fits
    the margins to the labels (a second draw: three times slower), for charts whose labels
    are node names of any length; the time-series charts have fixed margins."""
    buf = io.StringIO()
    salt: Any = {"svg.hashsalt": f"c{next(_salt)}"}
    with matplotlib.rc_context(salt):
        fig.savefig(buf, format="svg", bbox_inches="tight" if tight else None)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _figure(width: float, height: float, margins: bool = False) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height))  # no pyplot: no global figure state
    if margins:
        fig.subplots_adjust(left=0.11, right=0.97, top=0.86, bottom=0.17)
    return fig, fig.add_subplot()


def _date_axis(ax: Any) -> None:
    locator = mdates.AutoDateLocator(minticks=3, maxticks=6)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def forecast_chart(
    title: str,
    peak_times: Sequence[float],
    peaks: Sequence[float],
    trend: tuple[float, float, float, float] | None,
    limit: float | None,
    interval: tuple[float, float | None] | None,
    exhaustion: float | None,
    exhaustion_label: str,
    unit: str,
    now: float,
) -> str:
    """Daily peaks (dots), the fitted trend (line from (t0, y0) to (t1, y1)), the 95 %
    interval of the exhaustion day (shaded), the limit (dashed) and the exhaustion day."""
    with matplotlib.rc_context(STYLE):
        fig, ax = _figure(6.0, 2.6, margins=True)
        ax.plot(_dates(peak_times), peaks, "o", ms=3, color="#0969da", label="daily peak")
        right = now
        if trend is not None:
            t0, y0, t1, y1 = trend
            ax.plot(_dates([t0, t1]), [y0, y1], "-", color="#1d232a", lw=1.2, label="trend")
            right = max(right, t1)
        if interval is not None:
            lo, hi = interval
            hi_edge = hi if hi is not None else max(right, lo) + 0.1 * (right - peak_times[0])
            ax.axvspan(
                *_dates([lo, hi_edge]), color="#f2cc60", alpha=0.35, lw=0, label="95 % interval"
            )
            right = max(right, hi_edge)
        if limit is not None:
            ax.axhline(limit, ls="--", color="#cf222e", lw=1, label="limit")
        if exhaustion is not None:
            (day,) = _dates([exhaustion])
            ax.axvline(day, color="#cf222e", lw=1)
            ax.annotate(
                exhaustion_label,
                (day, 0.0),
                xycoords=("data", "axes fraction"),
                xytext=(-3, 4),
                ha="right",
                textcoords="offset points",
                color="#cf222e",
                fontsize=8,
            )
        ax.axvline(_dates([now])[0], color="#67707a", lw=0.8, ls=":")
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + 0.18 * (high - low))  # room for the legend above the limit
        ax.set_title(title, loc="left", fontsize=10)
        ax.set_ylabel(unit)
        _date_axis(ax)
        ax.legend(fontsize=7, loc="upper left", frameon=False, ncols=2)
        return to_svg(fig)


def anomaly_chart(
    title: str,
    times: Sequence[float],
    values: Sequence[float],
    event: float,
    event_value: float | None,
    baseline: float | None,
    band: tuple[float, float, str] | None,
    unit: str,
) -> str:
    """The series around the event, its baseline and band (low, high, label), the event
    marked."""
    with matplotlib.rc_context(STYLE):
        fig, ax = _figure(6.0, 2.4, margins=True)
        if len(times):
            ax.plot(_dates(times), values, "-", lw=0.9, color="#0969da", label="samples")
        if baseline is not None:
            ax.axhline(baseline, color="#1a7f37", lw=1, label="baseline")
        if band is not None:
            ax.axhspan(band[0], band[1], color="#8fd19e", alpha=0.3, lw=0, label=band[2])
        (at,) = _dates([event])
        ax.axvline(at, color="#cf222e", lw=0.8, ls=":")
        if event_value is not None:
            ax.plot([at], [event_value], "o", ms=5, color="#cf222e", label="anomaly")
        ax.set_title(title, loc="left", fontsize=10)
        ax.set_ylabel(unit)
        _date_axis(ax)
        ax.legend(fontsize=7, loc="best", frameon=False, ncols=2)
        return to_svg(fig)


def grade_heatmap(
    nodes: Sequence[str], days: Sequence[str], grades: Sequence[Sequence[str]]
) -> str:
    """Nodes (rows) by days (columns), each cell coloured by its grade and lettered."""
    index = {g: i for i, g in enumerate(GRADE_ORDER)}
    grid = np.array([[index.get(g, len(GRADE_ORDER) - 1) for g in row] for row in grades])
    with matplotlib.rc_context(STYLE | {"axes.grid": False}):
        fig, ax = _figure(1.2 + 0.75 * len(days), 0.8 + 0.24 * len(nodes))
        ax.imshow(
            grid,
            cmap=ListedColormap(GRADE_COLOURS),
            vmin=-0.5,
            vmax=len(GRADE_ORDER) - 0.5,
            aspect="auto",
            interpolation="nearest",
        )
        for (r, c), g in np.ndenumerate(grid):
            ax.text(
                c,
                r,
                GRADE_ORDER[g][:1] if g < len(GRADE_ORDER) - 1 else "?",
                ha="center",
                va="center",
                fontsize=7,
            )
        ax.set_xticks(range(len(days)), days, fontsize=7)
        ax.set_yticks(range(len(nodes)), nodes, fontsize=7)
        ax.xaxis.tick_top()
        for side in ("left", "bottom"):
            ax.spines[side].set_visible(False)
        return to_svg(fig, tight=True)


def paired_bars(
    labels: Sequence[str], this: Sequence[float | None], last: Sequence[float | None], unit: str
) -> str:
    """Horizontal paired bars per label: this week over last week."""
    y = np.arange(len(labels))
    a = np.array([np.nan if v is None else v for v in this], dtype=float)
    b = np.array([np.nan if v is None else v for v in last], dtype=float)
    with matplotlib.rc_context(STYLE):
        fig, ax = _figure(6.0, 0.8 + 0.28 * len(labels))
        ax.barh(y - 0.2, b, height=0.4, color="#b6c2cf", label="last week")
        ax.barh(y + 0.2, a, height=0.4, color="#0969da", label="this week")
        ax.set_yticks(y, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(unit)
        ax.legend(fontsize=7, loc="lower right", frameon=False)
        return to_svg(fig, tight=True)
