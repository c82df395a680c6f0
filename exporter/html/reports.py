"""One builder per report: the analysis's result (the same dict `--format json` prints) as
one self-contained HTML page. The builders read the result; where a chart needs data the
result does not carry (an anomaly's series around the event, the grades of the days before)
they read it here, with read-only queries beside the function that runs them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from psycopg import sql

from ..analyses.common import CONTAINER_ROW, DAY, HOUR, NODE_ROW, Context, clean, window_rows
from ..analyses.sli import system_availability_check
from ..render import when
from .charts import anomaly_chart, forecast_chart, grade_heatmap, paired_bars
from .page import GRADE_CLASS, PRIORITY_CLASS, STATUS_CLASS, Page, esc, pct

AROUND_EVENT = 6 * HOUR  # an anomaly's chart shows this much before and after it
UNIT_LABEL = {"percent": "%", "MiB": "MiB"}


# --------------------------------------------------------------------------- sections


def sli_section(page: Page, nodes: Sequence[dict[str, Any]], title: str) -> None:
    page.heading(title, "slis")
    page.table(
        ("node", "availability", "performance", "capacity", "grade"),
        (
            (
                n["node_name"],
                pct(n["availability"]),
                pct(n["performance"]),
                pct(n["capacity"]),
                n["grade"],
            )
            for n in nodes
        ),
        ([None, None, None, None, GRADE_CLASS.get(n["grade"])] for n in nodes),
    )


# Days of the heat-map graded at once: each is one SLI run from scratch, bound by the database
# (a day's raw rows read and de-duplicated), so they overlap on a server with cores to spare.
PARALLEL_DAYS = 3


def week_grades(ctx: Context, end: int, today: Sequence[Any] | None = None) -> list[dict[str, str]]:
    """{node: grade} of the 24 h ending at this time of each of the 7 days to `end`, oldest
    first; the last is `today`'s grades when given, else a run with the live threats."""

    def day(k: int) -> dict[str, str]:
        # threats=[]: CRITICAL is a live state (a P1 threat now), not a grade of a past day
        run = system_availability_check(
            ctx, hours=24, now=end - k * DAY, threats=None if k == 0 else []
        )
        return {n["node_name"]: n["grade"] for n in run["nodes"]}

    days = range(6, -1 if today is None else 0, -1)
    with ThreadPoolExecutor(PARALLEL_DAYS, thread_name_prefix="grades") as pool:
        columns = list(pool.map(day, days))
    if today is not None:
        columns.append({n["node_name"]: n["grade"] for n in today})
    return columns


def grade_week(ctx: Context, end: int, today: Sequence[Any] | None = None) -> tuple[str, str]:
    """The heat-map of grades per node over the 7 days to `end` (the last column is
    `today`, the report's own grades, when the report has them) and its caption."""
    columns = week_grades(ctx, end, today)
    nodes = sorted(columns[-1])
    labels = [datetime.fromtimestamp(end - (6 - i) * DAY, UTC).strftime("%a %d") for i in range(7)]
    grades = [[col.get(n, "UNKNOWN") for col in columns] for n in nodes]
    caption = (
        "Grade per node over the 24 h ending at this time of each of the last 7 days "
        "(E excellent, G good, A acceptable, P poor, C critical, ? unknown); "
        "CRITICAL only in the last column, where it means a P1 threat now."
    )
    return grade_heatmap(nodes, labels, grades), caption


def threat_section(page: Page, threats: Sequence[dict[str, Any]]) -> None:
    page.heading("Threats now", "threats")
    page.items(
        (f"[{t['priority']}] {t['message']}", PRIORITY_CLASS.get(t["priority"])) for t in threats
    )


def forecast_figure(page: Page, f: dict[str, Any], now: int) -> str | None:
    """A forecast's chart, or None when it has no daily peaks to draw."""
    ev = f["evidence"]
    peaks = [p for p in ev.get("daily_peaks") or [] if p is not None]
    if not peaks or ev.get("fit_start") is None or ev.get("fit_end") is None:
        return None
    start, end = ev["fit_start"], ev["fit_end"]
    span_days = round((end - start) / DAY)
    consecutive = span_days == len(peaks)
    # a peak sits at its busiest hour; the result keeps its day, so it is drawn at midday
    times = (
        [start + (i + 0.5) * DAY for i in range(len(peaks))]
        if consecutive
        else [start + (i + 0.5) * (end - start) / len(peaks) for i in range(len(peaks))]
    )
    slope, limit = f["trend_per_day"], f["limit"]
    trend = None
    if slope is not None and f["status"] in ("exhaustion", "beyond_horizon", "decreasing"):
        if (
            f["status"] == "exhaustion"
            and limit is not None
            and f["days_to_exhaustion"] is not None
        ):
            at_now = limit - slope * f["days_to_exhaustion"]  # the fit's value now
        else:
            # no exhaustion to anchor on: the line through the peaks' centre (approximate
            # when weekday levels are in the model)
            mean_t = sum(times) / len(times)
            at_now = sum(peaks) / len(peaks) + slope * (now - mean_t) / DAY
        t1 = f["exhaustion_time"] or now
        trend = (start, at_now + slope * (start - now) / DAY, t1, at_now + slope * (t1 - now) / DAY)
    interval = None
    iv = f["days_to_exhaustion_interval"]
    if iv and iv[0] is not None:
        interval = (now + iv[0] * DAY, None if iv[1] is None else now + iv[1] * DAY)
    exhaustion = f["exhaustion_time"]
    label = ""
    if f["status"] == "exhaustion" and exhaustion is not None:
        label = f"exhaustion {exhaustion_day(exhaustion)}"
    elif f["status"] == "already_exhausted":
        label, exhaustion = "already exhausted", now
    title = f"{f['node_name']} · {f['resource_type']}"
    svg = forecast_chart(
        title,
        times,
        peaks,
        trend,
        limit,
        interval,
        exhaustion,
        label,
        UNIT_LABEL.get(f["unit"], f["unit"]),
        now,
    )
    caption = f"{status_text(f)}; {f['recommendation']}"
    if not consecutive:
        caption += " (days without enough hours are left out: peaks spread evenly over the fit)"
    return page.figure(
        svg,
        caption,
        node=f["node_name"],
        resource=f["resource_type"],
        kind="forecast",
        exhaustion=label,
    )


def exhaustion_day(ts: int) -> str:
    """The UTC day a forecast marks."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def status_text(f: dict[str, Any]) -> str:
    if f["status"] == "exhaustion" and f["days_to_exhaustion"] is not None:
        iv = f["days_to_exhaustion_interval"] or [None, None]
        hi = "?" if iv[1] is None else f"{iv[1]:.0f}"
        lo = "?" if iv[0] is None else f"{iv[0]:.0f}"
        return (
            f"exhaustion on {exhaustion_day(f['exhaustion_time'])} "
            f"(in ~{f['days_to_exhaustion']:.0f} days, 95 % interval {lo} to {hi} days)"
        )
    return f["status"].replace("_", " ")


CHARTED = ("exhaustion", "already_exhausted", "beyond_horizon", "decreasing")


def capacity_section(page: Page, forecasts: Sequence[dict[str, Any]], now: int, title: str) -> None:
    """A chart for every forecast with a trend or an exhaustion to show (CHARTED); the flat
    ones (no significant trend, too few days) are rows of the table only, which keeps the
    whole fleet's page small and quick."""
    page.heading(title, "capacity")
    charted = [f for f in forecasts if f["status"] in CHARTED]
    figures = [fig for f in charted if (fig := forecast_figure(page, f, now)) is not None]
    page.charts(figures)
    page.table(
        ("node", "resource", "peak", "limit", "trend / day", "status"),
        (
            (
                f["node_name"],
                f["resource_type"],
                f["current_peak"],
                f["limit"],
                f["trend_per_day"],
                status_text(f),
            )
            for f in forecasts
        ),
    )


SERIES_SQL = """
SELECT sample_time, {value} AS v FROM {rows} r
WHERE node_name = %(node)s AND {kind} AND container_name IS NOT DISTINCT FROM %(container)s
ORDER BY sample_time
"""


def series_around(ctx: Context, a: dict[str, Any], end: int) -> tuple[list[float], list[float]]:
    """The anomaly's series from AROUND_EVENT before it to AROUND_EVENT after (not past
    `end`): valid values only, as the analyses read them."""
    metric = a["metric"]
    query = sql.SQL(SERIES_SQL).format(
        value=clean(metric),
        rows=window_rows(
            ctx.store, (metric, "mem_total_mb") if metric == "mem_available_mb" else (metric,)
        ),
        kind=CONTAINER_ROW if a["container_name"] is not None else NODE_ROW,
    )
    start = a["sample_time"] - AROUND_EVENT
    if a.get("since") is not None:
        start = min(start, a["since"] - AROUND_EVENT)
    params = {
        "start": start,
        "now": min(end, a["sample_time"] + AROUND_EVENT),
        "node": a["node_name"],
        "container": a["container_name"],
    }
    with ctx.store.read() as cur:
        cur.execute(query, params)
        rows = [(r["sample_time"], r["v"]) for r in cur if r["v"] is not None]
    return [float(t) for t, _ in rows], [float(v) for _, v in rows]


def anomaly_figure(page: Page, ctx: Context, a: dict[str, Any], end: int) -> str:
    times, values = series_around(ctx, a, end)
    base, scale = a["baseline"], a["scale"]
    band: tuple[float, float, str] | None = None
    if a.get("range_low") is not None and a.get("range_high") is not None:
        band = (a["range_low"], a["range_high"], "range before")
    elif base is not None and scale:
        k = ctx.config.anomalies.score_threshold
        band = (base - k * scale, base + k * scale, f"baseline ± {k:g} scales")
    where = a["node_name"] + (f" / {a['container_name']}" if a["container_name"] else "")
    title = f"{where} · {a['metric']}"
    svg = anomaly_chart(title, times, values, a["sample_time"], a["value"], base, band, a["metric"])
    score = "-" if a["score"] is None else f"{a['score']:+.1f}"
    caption = f"[{a['priority']}] {a['kind']} at {when(a['sample_time'])}, score {score}"
    return page.figure(
        svg,
        caption,
        node=a["node_name"],
        container=a["container_name"] or "",
        metric=a["metric"],
        kind="anomaly",
    )


def anomaly_section(
    page: Page, ctx: Context, anomalies: Sequence[dict[str, Any]], end: int, title: str
) -> None:
    page.heading(title, "anomalies")
    page.charts([anomaly_figure(page, ctx, a, end) for a in anomalies])


# --------------------------------------------------------------------------- reports


def daily(r: dict[str, Any], ctx: Context, now: int) -> Page:
    """The day's grades as a table: the grade heat-map over the week costs six more SLI runs
    and lives in the weekly and availability pages."""
    end = r["window"]["end"]
    page = Page(f"Daily health report — {when(end)}", r["summary"]["text"])
    page.raw(f'<p class="badge {esc(STATUS_CLASS.get(r["status"], ""))}">{esc(r["status"])}</p>')
    sli_section(page, r["nodes"], f"SLIs and grades — last {r['window']['hours']:g} h")
    threat_section(page, r["threats"])
    if r["immediate_actions"]:
        page.heading("Immediate actions")
        page.items((x, None) for x in r["immediate_actions"])
    anomaly_section(page, ctx, r["anomalies"], end, "Anomalies — last 24 h")
    capacity_section(page, r["capacity_warnings"], end, "Capacity: exhausting within 30 days")
    return page


def weekly(r: dict[str, Any], ctx: Context, now: int) -> Page:
    end = r["window"]["end"]
    page = Page(f"Weekly performance summary — week to {when(end)}")
    page.heading("Week over week: mean CPU", "trends")
    nodes = r["nodes"]
    cpu = [n["metrics"]["cpu_total_pct"] for n in nodes]
    svg = paired_bars(
        [n["node_name"] for n in nodes],
        [c["this_week"]["mean"] for c in cpu],
        [c["last_week"]["mean"] for c in cpu],
        "mean CPU %",
    )
    page.raw(page.figure(svg, "Mean CPU % per node, last week against this week.", kind="weekly"))
    page.table(
        ("node", "cpu this week", "last week", "change", "peak hour"),
        (
            (
                n["node_name"],
                c["this_week"]["mean"],
                c["last_week"]["mean"],
                c["change"],
                c["this_week"]["peak_hour_mean"],
            )
            for n, c in zip(nodes, cpu, strict=True)
        ),
    )
    sli_section(page, r["worst_nodes"], "Worst nodes — last 7 days")
    svg, caption = grade_week(ctx, end)  # the report's SLIs are of the week, not of a day
    page.raw(page.figure(svg, caption, kind="grades"))
    page.heading("Workload patterns", "patterns")
    page.table(
        ("node", "pattern", "peak hour", "time zone", "daily", "weekly"),
        (
            (
                p["node_name"],
                p["pattern"],
                p.get("peak_hour"),
                p.get("timezone", "UTC"),
                p["daily_seasonality"],
                p["weekly_seasonality"],
            )
            for p in r["patterns"]
        ),
    )
    capacity_section(page, r["capacity_warnings"], end, "Capacity: exhausting within 30 days")
    return page


def capacity(r: dict[str, Any], ctx: Context, now: int) -> Page:
    end = r["window"]["end"]
    page = Page(f"Capacity planning — {when(end)}")
    capacity_section(page, r["forecasts"], end, "Forecasts")
    return page


def anomalies(r: dict[str, Any], ctx: Context, now: int) -> Page:
    w = r["window"]
    page = Page(f"Anomalies — {when(w['start'])} to {when(w['end'])}")
    anomaly_section(page, ctx, r["anomalies"], w["end"], "Anomalies")
    return page


def availability(r: dict[str, Any], ctx: Context, now: int) -> Page:
    w = r["window"]
    page = Page(f"SLI compliance — last {w['hours']:g} h to {when(w['end'])}")
    sli_section(page, r["nodes"], "SLIs and grades")
    svg, caption = grade_week(ctx, w["end"], r["nodes"])
    page.raw(page.figure(svg, caption, kind="grades"))
    return page


BUILDERS: dict[str, Callable[[dict[str, Any], Context, int], Page]] = {
    "daily": daily,
    "weekly": weekly,
    "capacity": capacity,
    "anomalies": anomalies,
    "availability": availability,
}
