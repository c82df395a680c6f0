"""Reports for people (aligned text, colour only on a terminal) and for pipes (JSON)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

RULE = "=" * 64
COLOURS = {"red": "31", "yellow": "33", "green": "32", "blue": "34", "bold": "1", "dim": "2"}
PRIORITY_COLOUR = {"P1-CRITICAL": "red", "P2-WARNING": "yellow", "P3-ADVISORY": "blue"}
GRADE_COLOUR = {
    "CRITICAL": "red",
    "POOR": "red",
    "ACCEPTABLE": "yellow",
    "GOOD": "green",
    "EXCELLENT": "green",
    "UNKNOWN": "dim",
}
STATUS_COLOUR = {"CRITICAL": "red", "WARNING": "yellow", "OK": "green"}


def to_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, sort_keys=False, allow_nan=False)


class Text:
    """A text report under construction; `paint` is a no-op without colour."""

    def __init__(self, colour: bool) -> None:
        self.colour = colour
        self.lines: list[str] = []

    def paint(self, text: str, colour: str | None) -> str:
        if not self.colour or colour is None:
            return text
        return f"\033[{COLOURS[colour]}m{text}\033[0m"

    def title(self, text: str) -> None:
        self.lines += [self.paint(text, "bold"), RULE]

    def line(self, text: str = "") -> None:
        self.lines.append(text)

    def table(
        self,
        headers: Sequence[str],
        rows: Iterable[Sequence[Any]],
        colour_of: Callable[[Sequence[Any]], str | None] = lambda r: None,
    ) -> None:
        rows = [[cell(v) for v in r] for r in rows]
        if not rows:
            self.line("   (none)")
            return
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        fmt = "   " + "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
        self.line(self.paint(fmt.format(*headers), "dim"))
        for r in rows:
            self.line(self.paint(fmt.format(*r), colour_of(r)))

    def __str__(self) -> str:
        return "\n".join(self.lines)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:.3g}"
    return str(value)


def when(ts: int | float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{100 * ratio:.2f}%"
