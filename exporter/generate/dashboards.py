"""Grafana dashboards (fleet overview, node detail, capacity planning, the exporter itself),
built with grafana-foundation-sdk so the JSON follows Grafana 11.6's schema, and written from
`exporter.metrics` so a panel can never name a metric the exporter does not serve."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from ..analyses.capacity import RESOURCES
from ..config import Config
from ..metrics import BY_NAME, GRADES

TAGS = ["perf-analyzer"]
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
DAY_SECONDS = 86400
MIB = 1048576
ALERTS_QUERY = 'ALERTS{alertname=~"PerfAnalyzer.*"}'
GRADE_COLOURS = ("red", "orange", "yellow", "green", "dark-green")  # index = health_score
THREAT_LEVELS = (("none", "green"), ("P3-ADVISORY", "blue"), ("P2-WARNING", "orange"),
                 ("P1-CRITICAL", "red"))  # fmt: skip


# --------------------------------------------------------------------------- queries


def sel(name: str, /, *, node: bool = True, **matchers: str) -> str:
    """A selector of an exported metric, filtered by the dashboard's job and node variables;
    fails here, not in Grafana, when the metric is not one the exporter serves."""
    if name not in BY_NAME:
        raise KeyError(f"{name} is not in exporter.metrics")
    labels = ['job=~"$job"']
    if node and "node" in BY_NAME[name].labels:
        labels.append('node=~"$node"')
    labels += [f'{k}="{v}"' for k, v in matchers.items()]
    return f"{name}{{{','.join(labels)}}}"


def q(expr: str, legend: str = "", *, instant: bool = False, ref: str = "A") -> prom.Dataquery:
    query = prom.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if instant:
        return query.instant().format(PromQueryFormat.TABLE)
    return query.range().legend_format(legend or "__auto")


# --------------------------------------------------------------------------- panel helpers


def _steps(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=v, color=c) for v, c in steps])
    )


def sli_thresholds(config: Config | None = None) -> dash.ThresholdsConfig:
    """Colours at the grade boundaries of the configuration the SLI analysis uses."""
    cfg = (config or Config()).sli
    return _steps(
        (None, "red"),
        (cfg.acceptable, "yellow"),
        (cfg.good, "green"),
        (cfg.excellent, "dark-green"),
    )


def grade_mappings() -> list[model.ValueMapping]:
    """health_score 0..4 as the grade name in its colour."""
    options = {
        str(score): model.ValueMappingResult(text=name.upper(), color=GRADE_COLOURS[score],
                                             index=score)
        for score, name in enumerate(GRADES)
    }  # fmt: skip
    return [model.ValueMap(options=options)]


def threat_mappings() -> list[model.ValueMapping]:
    options = {
        str(level): model.ValueMappingResult(text=text, color=colour, index=level)
        for level, (text, colour) in enumerate(THREAT_LEVELS)
    }
    return [model.ValueMap(options=options)]


def up_mappings(down: str, up: str) -> list[model.ValueMapping]:
    return [
        model.ValueMap(
            options={
                "0": model.ValueMappingResult(text=down, color="red", index=0),
                "1": model.ValueMappingResult(text=up, color="green", index=1),
            }
        )
    ]


def organize(rename: dict[str, str], hide: tuple[str, ...] = ("Time", "job", "instance")) -> Any:
    """Tables of instant queries: hide the time and scrape labels, name the value column."""
    return model.DataTransformerConfig(
        id_val="organize",
        options={"excludeByName": dict.fromkeys(hide, True), "renameByName": rename},
    )


def table_panel(
    title: str, description: str, unit: str, expr: str, value: str, *, sort_asc: bool = False
) -> table.Panel:
    """A table of one instant query: a row per series, its labels as columns."""
    return (
        table.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .with_target(q(expr, instant=True))
        .with_transformation(organize({"Value": value}, ("Time", "job", "instance", "__name__")))
        .sort_by([common_b.TableSortByFieldState().display_name(value).desc(not sort_asc)])
        .cell_height(common.TableCellHeight.SM)
    )


def stat_panel(title: str, description: str, unit: str, *targets: prom.Dataquery) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def ts_panel(title: str, description: str, unit: str, *targets: prom.Dataquery) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .line_width(1)
        .fill_opacity(10)
        .legend(
            common_b.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.RIGHT)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(common_b.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def gauge_panel(title: str, description: str, unit: str, expr: str, legend: str) -> bargauge.Panel:
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .with_target(q(expr, legend))
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .orientation(common.VizOrientation.HORIZONTAL)
    )


# --------------------------------------------------------------------------- dashboard helpers


def variables() -> list[Any]:
    """datasource, job and node (node depends on job), re-read when the time range changes."""
    datasource = (
        dash.DatasourceVariable("datasource").label("Data source").type("prometheus").regex("")
    )

    def labels(name: str, label: str, query: str) -> dash.QueryVariable:
        return (
            dash.QueryVariable(name)
            .label(label)
            .datasource(DATASOURCE)
            .query(query)
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(model.VariableSort.NATURAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".+")
            .current(model.VariableOption(selected=True, text="All", value="$__all"))
        )

    return [
        datasource,
        labels("job", "Job", "label_values(perf_analyzer_build_info, job)"),
        labels(
            "node",
            "Node",
            'label_values(perf_analyzer_node_last_sample_timestamp_seconds{job=~"$job"}, node)',
        ),
    ]


def new_dashboard(uid: str, title: str, description: str) -> dash.Dashboard:
    return (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .timezone("browser")
        .refresh("1m")
        .variables(variables())
        .link(
            dash.DashboardLink("perf-analyzer")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(TAGS)
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
            .target_blank(False)
        )
    )


Layout = list[tuple[str | None, list[tuple[Any, int, int]]]]  # (row title, [(panel, w, h)])


def assemble(board: dash.Dashboard, layout: Layout) -> dict[str, Any]:
    """Place the panels on the grid row by row (ids in order), then encode the dashboard."""
    next_id = 1
    for row, panels in layout:
        if row is not None:
            board = board.with_row(dash.Row(row).id(next_id))
            next_id += 1
        for panel, w, h in panels:
            board = board.with_panel(panel.id(next_id).span(w).height(h))
            next_id += 1
    data = json.loads(JSONEncoder(sort_keys=False).encode(board.build()))
    data["id"] = None  # provisioning and the import API want a null id, not a missing one
    return data


# --------------------------------------------------------------------------- fleet overview


def fleet(config: Config | None = None) -> dict[str, Any]:
    """Where to look first: grades, emergencies, SLIs, exhaustion, anomalies, freshness."""
    grade = [
        (
            stat_panel(
                "Nodes per grade",
                "How many nodes hold each health grade now (perf_analyzer_health_grade).",
                "short",
                q(f"sum by (grade) ({sel('perf_analyzer_health_grade')})", "{{grade}}"),
            ),
            12,
            5,
        ),
        (
            stat_panel(
                "Health grade per node",
                "Each node's grade: 4 excellent, 3 good, 2 acceptable, 1 poor, 0 critical.",
                "none",
                q(sel("perf_analyzer_health_score"), "{{node}}"),
            ).mappings(grade_mappings()),
            12,
            5,
        ),
    ]
    now = [
        (
            table_panel(
                "Emergency threats now",
                "Emergency checks at P3 or above per node and check (0 none, 1 P3-ADVISORY, "
                "2 P2-WARNING, 3 P1-CRITICAL).",
                "none",
                f"{sel('perf_analyzer_emergency_threat')} > 0",
                "level",
            ).mappings(threat_mappings()),
            8,
            8,
        ),
        (
            table_panel(
                "SLI compliance per node",
                "Share of the SLI window in compliance per node and SLI; colours at the grade "
                "boundaries (above 99 % excellent, 95 % good, 90 % acceptable).",
                "percentunit",
                sel("perf_analyzer_sli_compliance_ratio"),
                "compliance",
                sort_asc=True,
            )
            .thresholds(sli_thresholds(config))
            .cell_options(common.TableColoredBackgroundCellOptions()),
            8,
            8,
        ),
        (
            table_panel(
                "Pending and firing alerts",
                "perf-analyzer alerts Prometheus holds now, pending or firing (ALERTS).",
                "none",
                ALERTS_QUERY,
                "active",
            ),
            8,
            8,
        ),
    ]
    ranks = [
        (
            table_panel(
                "Nodes closest to exhaustion",
                "The 10 node resources whose daily peak reaches its limit soonest, in days "
                "(+Inf: not trending to exhaustion, 0: already exhausted).",
                "d",
                f"bottomk(10, {sel('perf_analyzer_time_to_exhaustion_seconds')} / {DAY_SECONDS})",
                "days left",
                sort_asc=True,
            ),
            8,
            8,
        ),
        (
            table_panel(
                "Worst anomaly scores",
                "The 10 series furthest from their seasonal baseline (signed robust score; "
                "negative is below normal).",
                "none",
                f"{sel('perf_analyzer_anomaly_score')} "
                f"and topk(10, abs({sel('perf_analyzer_anomaly_score')}))",
                "score",
            ),
            8,
            8,
        ),
        (
            table_panel(
                "Data freshness",
                "Age of each node's newest sample: a node that stopped reporting grows here "
                "before its stale check fires.",
                "s",
                f"time() - {sel('perf_analyzer_node_last_sample_timestamp_seconds')}",
                "age",
            ).thresholds(_steps((None, "green"), (300, "orange"), (900, "red"))),
            8,
            8,
        ),
    ]
    return assemble(
        new_dashboard(
            "perf-analyzer-fleet",
            "perf-analyzer / Fleet overview",
            "Health grades, emergencies, SLIs, capacity, anomalies and freshness of every node.",
        ),
        [("Health", grade), ("Now", now), ("Ranking", ranks)],
    )


# --------------------------------------------------------------------------- node detail


def _vs_thresholds(title: str, metric: str, learned: str, unit: str, what: str) -> Any:
    """A current value over time against the node's learned P1..P3 thresholds."""
    threshold = sel("perf_analyzer_dynamic_threshold", metric=learned)  # in base units
    return ts_panel(
        title,
        f"{what} (last 5 minutes' average) against the P1/P2/P3 alert thresholds learned "
        "from the node's own history (perf_analyzer_dynamic_threshold).",
        unit,
        q(sel(metric), "{{node}}"),
        q(threshold, "{{node}} {{level}} threshold", ref="B"),
    )


def node(config: Config | None = None) -> dict[str, Any]:
    """Everything the exporter knows about one node (or a few)."""
    health = [
        (
            stat_panel(
                "Health grade",
                "The node's grade now: 4 excellent, 3 good, 2 acceptable, 1 poor, 0 critical "
                "(critical while a P1 emergency is active).",
                "none",
                q(sel("perf_analyzer_health_score"), "{{node}}"),
            ).mappings(grade_mappings()),
            6,
            6,
        ),
        (
            stat_panel(
                "SLI compliance",
                "Share of the SLI window in compliance per SLI; colours at the grade boundaries.",
                "percentunit",
                q(sel("perf_analyzer_sli_compliance_ratio"), "{{node}} {{sli}}"),
            ).thresholds(sli_thresholds(config)),
            10,
            6,
        ),
        (
            table_panel(
                "Emergency checks",
                "Level of every emergency check of the node (0 none .. 3 P1-CRITICAL).",
                "none",
                sel("perf_analyzer_emergency_threat"),
                "level",
            ).mappings(threat_mappings()),
            8,
            6,
        ),
        (
            ts_panel(
                "SLI error ratio over the last hour",
                "Error ratio of each SLI averaged over 1 h (recording rule "
                "perf_analyzer:sli_error_ratio:avg1h): what the fast burn-rate alerts read.",
                "percentunit",
                q(
                    'perf_analyzer:sli_error_ratio:avg1h{job=~"$job",node=~"$node"}',
                    "{{node}} {{sli}}",
                ),
            ),
            24,
            7,
        ),
    ]
    current = [
        (
            _vs_thresholds("CPU", "perf_analyzer_cpu_usage_ratio", "cpu_total_pct",
                           "percentunit", "CPU busy"),
            12,
            8,
        ),
        (
            _vs_thresholds("Memory available", "perf_analyzer_memory_available_bytes",
                           "mem_available_mb", "bytes", "Available memory"),
            12,
            8,
        ),
        (
            _vs_thresholds("Load", "perf_analyzer_load1", "load_1m", "short",
                           "1-minute load average"),
            12,
            8,
        ),
        (
            _vs_thresholds("Temperature", "perf_analyzer_temperature_celsius", "temperature_c",
                           "celsius", "Hottest sensor"),
            12,
            8,
        ),
    ]  # fmt: skip
    anomalies = [
        (
            ts_panel(
                "Anomaly scores",
                "Signed robust score of each metric against its own seasonal baseline (0 when "
                "normal); node-level series and containers.",
                "none",
                q(sel("perf_analyzer_anomaly_score"), "{{node}} {{container}} {{metric}}"),
            ),
            24,
            8,
        ),
    ]
    capacity = [
        (
            ts_panel(
                "Daily peak",
                "Current daily peak of each resource, as a share of its limit.",
                "percentunit",
                q(sel("perf_analyzer_capacity_peak_ratio"), "{{node}} {{resource}}"),
            ),
            8,
            8,
        ),
        (
            ts_panel(
                "Peak growth per day",
                "Growth of the daily peak per day as a share of the limit (0 without a "
                "significant trend).",
                "percentunit",
                q(sel("perf_analyzer_capacity_trend_ratio_per_day"), "{{node}} {{resource}}"),
            ),
            8,
            8,
        ),
        (
            table_panel(
                "Forecast",
                "Days until each resource's daily peak reaches its limit (+Inf: not trending "
                "to exhaustion, 0: already exhausted).",
                "d",
                f"{sel('perf_analyzer_time_to_exhaustion_seconds')} / {DAY_SECONDS}",
                "days left",
                sort_asc=True,
            ),
            8,
            8,
        ),
    ]
    workload = [
        (
            stat_panel(
                "CPU peak hour",
                "Hour of day (UTC, 0..23) of the node's CPU peak; needs two days of complete "
                "hours.",
                "none",
                q(sel("perf_analyzer_workload_peak_hour"), "{{node}}"),
            ),
            6,
            6,
        ),
        (
            gauge_panel(
                "Seasonality",
                "Strength of the daily and weekly CPU cycle, 0..1.",
                "percentunit",
                sel("perf_analyzer_workload_seasonality_ratio"),
                "{{node}} {{period}}",
            ),
            8,
            6,
        ),
        (
            table_panel(
                "Correlated metrics",
                "Pearson coefficient of the node's strongly correlated metric pairs.",
                "none",
                sel("perf_analyzer_metric_correlation"),
                "pearson",
            ),
            10,
            6,
        ),
    ]
    containers = [
        (
            ts_panel(
                "Container CPU",
                "Each container's CPU as a share of the node's whole CPU.",
                "percentunit",
                q(sel("perf_analyzer_container_cpu_usage_ratio"), "{{node}} {{container}}"),
            ).stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL)),
            9,
            8,
        ),
        (
            ts_panel(
                "Container resident memory",
                "Each container's resident memory (RSS).",
                "bytes",
                q(sel("perf_analyzer_container_memory_rss_bytes"), "{{node}} {{container}}"),
            ).stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL)),
            9,
            8,
        ),
        (
            gauge_panel(
                "Contention",
                "Contention between the node's containers for each resource, 0..1.",
                "percentunit",
                sel("perf_analyzer_contention_score"),
                "{{node}} {{resource}}",
            ),
            6,
            8,
        ),
    ]
    return assemble(
        new_dashboard(
            "perf-analyzer-node",
            "perf-analyzer / Node detail",
            "Grade, SLIs, current values against learned thresholds, anomalies, capacity, "
            "workload, correlations and containers of the selected nodes.",
        ),
        [
            ("Health", health),
            ("Current values", current),
            ("Anomalies", anomalies),
            ("Capacity", capacity),
            ("Workload and correlations", workload),
            ("Containers", containers),
        ],
    )


# --------------------------------------------------------------------------- capacity


def capacity(config: Config | None = None) -> dict[str, Any]:
    """Daily peaks and their growth per resource across the fleet, and the forecasts."""
    del config
    trends = []
    for resource in RESOURCES:  # disk and inodes too: the simulated fleets write them
        trends += [
            (
                ts_panel(
                    f"Daily peak: {resource}",
                    f"Daily peak of {resource} on every node, as a share of its limit.",
                    "percentunit",
                    q(sel("perf_analyzer_capacity_peak_ratio", resource=resource), "{{node}}"),
                ),
                12,
                7,
            ),
            (
                ts_panel(
                    f"Peak growth per day: {resource}",
                    f"Growth of the daily {resource} peak per day as a share of its limit "
                    "(0 without a significant trend).",
                    "percentunit",
                    q(
                        sel("perf_analyzer_capacity_trend_ratio_per_day", resource=resource),
                        "{{node}}",
                    ),
                ),
                12,
                7,
            ),
        ]
    forecasts = [
        (
            table_panel(
                "Forecast status",
                "The current forecast status of each node and resource (exhaustion, "
                "already_exhausted, no_significant_trend, decreasing, beyond_horizon, "
                "insufficient_data).",
                "none",
                f"{sel('perf_analyzer_capacity_forecast_status')} == 1",
                "current",
            ),
            12,
            10,
        ),
        (
            table_panel(
                "Time to exhaustion",
                "Days until each resource's daily peak reaches its limit, soonest first "
                "(+Inf: not trending to exhaustion, 0: already exhausted).",
                "d",
                f"{sel('perf_analyzer_time_to_exhaustion_seconds')} / {DAY_SECONDS}",
                "days left",
                sort_asc=True,
            ).thresholds(_steps((None, "red"), (7, "orange"), (30, "yellow"), (90, "green"))),
            12,
            10,
        ),
    ]
    return assemble(
        new_dashboard(
            "perf-analyzer-capacity",
            "perf-analyzer / Capacity planning",
            "Daily peaks, their growth and the time to exhaustion of every node's resources.",
        ),
        [("Forecasts", forecasts), ("Peaks and trends", trends)],
    )


# --------------------------------------------------------------------------- the exporter


def exporter(config: Config | None = None) -> dict[str, Any]:
    """Is the exporter healthy: scrapes, database, analyses, series budget."""
    del config
    up = [
        (
            stat_panel(
                "Target up",
                "Whether Prometheus scraped the exporter successfully (up).",
                "none",
                q('up{job=~"$job"}', "{{instance}}"),
            ).mappings(up_mappings("DOWN", "UP")),
            6,
            5,
        ),
        (
            stat_panel(
                "Database up",
                "Whether the exporter's latest database round trip succeeded.",
                "none",
                q(sel("perf_analyzer_database_up"), "{{instance}}"),
            ).mappings(up_mappings("DOWN", "UP")),
            6,
            5,
        ),
        (
            stat_panel(
                "Series cut by the budget",
                "Series dropped by --max-series in the latest scrape, all kinds together.",
                "short",
                q(f"sum({sel('perf_analyzer_series_dropped')})", "dropped"),
            ).thresholds(_steps((None, "green"), (1, "orange"))),
            6,
            5,
        ),
        (
            ts_panel(
                "Scrape duration",
                "How long Prometheus's scrapes of the exporter take (scrape_duration_seconds).",
                "s",
                q('scrape_duration_seconds{job=~"$job"}', "{{instance}}"),
            ),
            6,
            5,
        ),
    ]
    analyses = [
        (
            ts_panel(
                "Analysis durations",
                "Duration of the latest run of each analysis.",
                "s",
                q(sel("perf_analyzer_analysis_duration_seconds"), "{{analysis}}"),
            ),
            12,
            8,
        ),
        (
            ts_panel(
                "Time since last success",
                "Age of each analysis's latest successful run; compare with its refresh interval.",
                "s",
                q(
                    f"time() - {sel('perf_analyzer_analysis_last_success_timestamp_seconds')}",
                    "{{analysis}}",
                ),
            ),
            12,
            8,
        ),
        (
            ts_panel(
                "Analysis errors",
                "Failed analysis runs per second.",
                "cps",
                q(
                    "sum by (analysis) (rate("
                    f"{sel('perf_analyzer_analysis_errors_total')}[$__rate_interval]))",
                    "{{analysis}}",
                ),
            ),
            12,
            8,
        ),
        (
            table_panel(
                "Latest run",
                "Whether the latest run of each analysis succeeded.",
                "none",
                sel("perf_analyzer_analysis_last_run_success"),
                "latest run",
            ).mappings(up_mappings("FAILED", "OK")),
            12,
            8,
        ),
    ]
    budget = [
        (
            ts_panel(
                "Series cut by the budget, by kind",
                "Series cut by --max-series per kind, least important first: zero anomaly "
                "scores, correlations, thresholds, container values, non-zero anomalies.",
                "short",
                q(sel("perf_analyzer_series_dropped"), "{{kind}}"),
            ),
            12,
            8,
        ),
        (
            ts_panel(
                "Nodes not analysed (node guard)",
                "Nodes the analyses do not read because the table names more than "
                "--max-nodes (by default --max-series / 12): those that reported least "
                "recently and for the shortest time.",
                "short",
                q(sel("perf_analyzer_nodes_ignored"), "{{instance}}"),
            ),
            12,
            8,
        ),
        (
            ts_panel(
                "Newest sample age per node",
                "Age of each node's newest sample in the table: the sampler's health as the "
                "exporter sees it.",
                "s",
                q(
                    f"time() - {sel('perf_analyzer_node_last_sample_timestamp_seconds')}",
                    "{{node}}",
                ),
            ),
            12,
            8,
        ),
    ]
    return assemble(
        new_dashboard(
            "perf-analyzer-exporter",
            "perf-analyzer / Exporter",
            "Scrapes, database connection, analysis runs and the series budget of the exporter.",
        ),
        [("Scrape", up), ("Analyses", analyses), ("Series and samples", budget)],
    )


# --------------------------------------------------------------------------- files

DASHBOARDS: dict[str, Callable[[Config | None], dict[str, Any]]] = {
    "perf-analyzer-fleet.json": fleet,
    "perf-analyzer-node.json": node,
    "perf-analyzer-capacity.json": capacity,
    "perf-analyzer-exporter.json": exporter,
}
PROVISIONING_FILE = "provisioning.yml"
PROVISIONING = """\
# Generated by `perf-analyzer dashboards`; do not edit. Change exporter/generate/ instead.
# Grafana file provisioning: copy to /etc/grafana/provisioning/dashboards/ and point `path`
# at the folder holding the dashboards' JSON files.
apiVersion: 1
providers:
  - name: perf-analyzer
    orgId: 1
    folder: perf-analyzer
    type: file
    disableDeletion: false
    allowUiUpdates: false
    updateIntervalSeconds: 60
    options:
      path: /var/lib/grafana/dashboards/perf-analyzer
      foldersFromFilesStructure: false
"""


def render(config: Config | None = None) -> dict[str, str]:
    """File name -> text of every dashboard and the provisioning example."""
    files = {
        name: json.dumps(build(config), indent=2, sort_keys=False) + "\n"
        for name, build in DASHBOARDS.items()
    }
    files[PROVISIONING_FILE] = PROVISIONING
    return files


def write(output: Path, config: Config | None = None) -> list[Path]:
    """Write the dashboards and the provisioning example; returns the paths written."""
    output.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render(config).items():
        path = output / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel but rows, including panels nested in collapsed rows."""
    out = []
    for panel in board.get("panels", []):
        if panel.get("type") == "row":
            out += panel.get("panels", [])
        else:
            out.append(panel)
    return out
