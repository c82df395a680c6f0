"""A toy analysis, written the way a new analysis is added: one module with its record.
The tests register it (one line) and expect the exporter, `report` and the configuration
to know it without any other change."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypedDict

from psycopg import sql

from exporter.analyses.common import HOUR, NODE_ROW, Context, window_rows, window_seconds
from exporter.analyses.unit import Analysis, ResultView, Served, Window
from exporter.metricdef import NODE, gauge
from exporter.render import Text
from exporter.samples import Sample, sample


class NodeRows(TypedDict):
    node_name: str
    rows: int


class ToyResult(TypedDict):
    nodes: list[NodeRows]


def count_rows(ctx: Context, *, hours: float, now: int) -> ToyResult:
    """Node rows per node in the last `hours`."""
    start = now - window_seconds(hours, HOUR, "hours")
    query = sql.SQL(
        "SELECT node_name, count(*) AS rows FROM {rows} r WHERE {node}"
        " GROUP BY node_name ORDER BY node_name"
    ).format(rows=window_rows(ctx.store), node=NODE_ROW)
    with ctx.store.read() as cur:
        cur.execute(query, {"start": start, "now": now})
        return {"nodes": [{"node_name": r["node_name"], "rows": r["rows"]} for r in cur]}


ROWS = gauge("toy_rows", "Node rows in the toy window.", NODE)


def to_samples(result: ToyResult, view: ResultView) -> Iterator[Sample]:
    for n in result["nodes"]:
        yield sample("toy_rows", n["rows"], node=n["node_name"])


def render_text(result: ToyResult, t: Text) -> None:
    t.title("TOY ROWS")
    t.table(("node", "rows"), ((n["node_name"], n["rows"]) for n in result["nodes"]))


ANALYSIS = Analysis[ToyResult](
    name="toy",
    title="node rows per node",
    run=count_rows,
    render_text=render_text,
    window=Window("hours", lambda c: 1),
    serve=Served(refresh_seconds=30, metrics=(ROWS,), to_samples=to_samples),
)
