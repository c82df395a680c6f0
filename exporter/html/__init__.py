"""HTML for people: self-contained report pages with charts (`report --format html`,
needs the `html` extra: matplotlib) and the exporter's fleet page (`fleet.py`, plain HTML,
no extra)."""

from __future__ import annotations

from typing import Any

from ..analyses.common import Context

HTML_REPORTS = ("daily", "weekly", "capacity", "anomalies", "availability")


class HtmlUnavailable(Exception):
    """The HTML report cannot be made here (a missing extra, a report without a page)."""


def render_report(name: str, result: dict[str, Any], ctx: Context, now: int) -> str:
    """`result` of the analysis `name` as one self-contained HTML document."""
    if name not in HTML_REPORTS:
        raise HtmlUnavailable(
            f"report {name} has no HTML form; --format html works for {', '.join(HTML_REPORTS)}"
        )
    try:
        from .reports import BUILDERS
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("matplotlib"):
            raise
        raise HtmlUnavailable(
            f"--format html needs matplotlib ({exc.name} is missing): "
            "pip install 'perf-analyzer-exporter[html]'"
        ) from None
    return str(BUILDERS[name](result, ctx, now))
