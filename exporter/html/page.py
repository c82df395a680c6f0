"""The page skeleton every HTML document shares: inline styles (no network to view it),
a layout that reads on a phone and prints, and escaping. Everything that reaches the page
goes through `esc` or is markup built here: node names are data, never markup."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from .. import __version__
from ..render import cell, when

GRADE_CLASS = {
    "EXCELLENT": "ok",
    "GOOD": "ok",
    "ACCEPTABLE": "warn",
    "POOR": "bad",
    "CRITICAL": "bad",
    "UNKNOWN": "dim",
}
PRIORITY_CLASS = {"P1-CRITICAL": "bad", "P2-WARNING": "warn", "P3-ADVISORY": "info"}
STATUS_CLASS = {"CRITICAL": "bad", "WARNING": "warn", "OK": "ok"}

STYLE = """
:root { --fg:#1d232a; --dim:#67707a; --bg:#fff; --line:#d8dde3; --ok:#1a7f37;
  --warn:#9a6700; --bad:#cf222e; --info:#0969da; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); margin: 0 auto; padding: 12px; max-width: 1100px; }
h1 { font-size: 1.4em; margin: .2em 0; } h2 { font-size: 1.15em; margin: 1.4em 0 .4em;
  border-bottom: 1px solid var(--line); padding-bottom: .2em; }
.sub { color: var(--dim); margin: 0 0 .8em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .3em 0; font-variant-numeric: tabular-nums; }
th, td { padding: .25em .6em; border-bottom: 1px solid var(--line); text-align: left; }
td.n { text-align: right; }
th, td.n, td:first-child { white-space: nowrap; }
@media (max-width: 600px) { body { font-size: 14px; padding: 8px; }
  th, td { padding: .2em .35em; } }
th { color: var(--dim); font-weight: 600; }
.ok { color: var(--ok); } .warn { color: var(--warn); } .bad { color: var(--bad); }
.info { color: var(--info); } .dim { color: var(--dim); }
.badge { font-weight: 700; }
figure { margin: .8em 0; padding: .4em; border: 1px solid var(--line); border-radius: 6px;
  break-inside: avoid; page-break-inside: avoid; }
figure svg { width: 100%; height: auto; display: block; }
figcaption { color: var(--dim); font-size: .9em; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 480px), 1fr));
  gap: .6em; }
ul { padding-left: 1.2em; }
footer { color: var(--dim); font-size: .85em; margin-top: 2em; }
@media print { body { max-width: none; font-size: 11pt; } a { color: inherit; }
  .charts { display: block; } }
"""


def esc(value: Any) -> str:
    """Text as HTML text or attribute value: quotes too."""
    return html.escape(str(value), quote=True)


class Page:
    """An HTML document under construction: every method escapes what it is given."""

    def __init__(self, title: str, subtitle: str = "", *, refresh: int | None = None) -> None:
        self.title = title
        self.refresh = refresh
        self.parts: list[str] = [f"<h1>{esc(title)}</h1>"]
        if subtitle:
            self.parts.append(f'<p class="sub">{esc(subtitle)}</p>')

    def heading(self, text: str, anchor: str | None = None) -> None:
        ident = f' id="{esc(anchor)}"' if anchor else ""
        self.parts.append(f"<h2{ident}>{esc(text)}</h2>")

    def para(self, text: str, css: str | None = None) -> None:
        klass = f' class="{esc(css)}"' if css else ""
        self.parts.append(f"<p{klass}>{esc(text)}</p>")

    def raw(self, markup: str) -> None:
        """Markup made by this package (a chart's SVG, links built with `esc`)."""
        self.parts.append(markup)

    def items(self, lines: Iterable[tuple[str, str | None]]) -> None:
        """A bulleted list of (text, css class) pairs."""
        rows = [f'<li class="{esc(c or "")}">{esc(t)}</li>' for t, c in lines]
        self.parts.append("<ul>" + "".join(rows) + "</ul>" if rows else '<p class="dim">none</p>')

    def table(
        self,
        headers: Sequence[str],
        rows: Iterable[Sequence[Any]],
        classes: Iterable[Sequence[str | None]] | None = None,
        *,
        css: str = "",
    ) -> None:
        """A table of values shown as the text report shows them (`render.cell`)."""
        rows = list(rows)
        if not rows:
            self.parts.append('<p class="dim">none</p>')
            return
        css_rows = list(classes) if classes is not None else [[None] * len(headers)] * len(rows)
        head = "".join(f"<th>{esc(h)}</th>" for h in headers)
        body = "".join(
            "<tr>"
            + "".join(
                f'<td class="{esc(" ".join(filter(None, (c, _numeric(v)))))}">{esc(cell(v))}</td>'
                for v, c in zip(r, cr, strict=True)
            )
            + "</tr>"
            for r, cr in zip(rows, css_rows, strict=True)
        )
        klass = f' class="{esc(css)}"' if css else ""
        self.parts.append(
            f'<div class="scroll"><table{klass}><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>"
        )

    def figure(self, svg: str, caption: str, **data: str) -> str:
        """A chart with its caption; `data` become data-* attributes (what the chart is of)."""
        attrs = "".join(f' data-{esc(k.replace("_", "-"))}="{esc(v)}"' for k, v in data.items())
        return f'<figure class="chart"{attrs}>{svg}<figcaption>{esc(caption)}</figcaption></figure>'

    def charts(self, figures: Sequence[str]) -> None:
        if figures:
            self.parts.append('<div class="charts">' + "".join(figures) + "</div>")
        else:
            self.parts.append('<p class="dim">none</p>')

    def __str__(self) -> str:
        refresh = (
            f'<meta http-equiv="refresh" content="{int(self.refresh)}">' if self.refresh else ""
        )
        return (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="icon" href="data:,">'  # no favicon request: viewing needs no network
            f"{refresh}<title>{esc(self.title)}</title><style>{STYLE}</style></head><body>"
            + "".join(self.parts)
            + f"<footer>perf-analyzer {esc(__version__)}</footer></body></html>\n"
        )


def _numeric(value: Any) -> str | None:
    """The class of a number's cell: numbers align right."""
    if isinstance(value, int | float) or (isinstance(value, str) and value.endswith("%")):
        return "n"
    return None


def stamp(ts: int | float | None) -> str:
    return when(ts)


def pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{100 * ratio:.2f} %"
