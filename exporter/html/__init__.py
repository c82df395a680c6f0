"""HTML for people: self-contained report pages with charts (`report --format html`,
needs the `html` extra: matplotlib) and the exporter's fleet page (`fleet.py`, plain HTML,
no extra)."""

from __future__ import annotations

import logging
from typing import Any

from ..analyses.common import Context

HTML_REPORTS = ("daily", "weekly", "capacity", "anomalies", "availability")


class HtmlUnavailable(Exception):
    """The HTML report cannot be made here (a missing extra, a report without a page)."""


def check_available() -> None:
    """Raise HtmlUnavailable, in one sentence, when matplotlib cannot be imported (before
    an analysis runs for a page that cannot be drawn)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise HtmlUnavailable(
            "--format html needs matplotlib, which is not installed: "
            "pip install 'perf-analyzer-exporter[html]'"
        ) from None
    # its font cache is built on first use and logged at info: not the user's business
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


def render_report(name: str, result: dict[str, Any], ctx: Context, now: int) -> str:
    """`result` of the analysis `name` as one self-contained HTML document."""
    if name not in HTML_REPORTS:
        raise HtmlUnavailable(
            f"report {name} has no HTML form; --format html works for {', '.join(HTML_REPORTS)}"
        )
    check_available()
    from .reports import BUILDERS

    return str(BUILDERS[name](result, ctx, now))
