"""The alert catalogue: one definition per alert (expression, `for`, labels, annotations,
runbook text and the promtool test data that proves it), from the same configuration the
analyzer uses.

Priorities are P1 critical, P2 warning, P3 advisory, and map to
the `severity` label that mixin tooling, kube-prometheus inhibitions and PagerDuty
integrations expect.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..analyses.emergency import CATALOGUE, CHECKS
from ..config import Config
from .learned import learned_alerts

SEVERITY = {"P1": "critical", "P2": "warning", "P3": "info"}
PREFIX = "PerfAnalyzer"
INF70 = " ".join(["+Inf"] * 71)  # promtool's expanding notation does not take Inf
INF400 = " ".join(["+Inf"] * 401)
DEFAULT_RUNBOOK_BASE = "https://github.com/perf-analyzer/perf-analyzer/blob/main/docs/runbooks.md"
DEFAULT_DASHBOARD_URL = "http://grafana.example/d/perf-analyzer-node/perf-analyzer-node"


@dataclass(frozen=True)
class Case:
    """promtool test data: input series (name{labels} -> values) and for how long."""

    series: dict[str, str]
    minutes: int = 60
    value: float | None = None  # $value when it is not the first series' first value


@dataclass(frozen=True)
class Alert:
    name: str
    group: str
    expr: str
    for_: str
    priority: str  # P1, P2, P3
    summary: str
    description: str  # Prometheus template text
    action: str  # the immediate action, for the runbook
    verify: str  # how to confirm, for the runbook
    fire: Case  # makes the alert fire once `for` has passed
    calm: Case  # the same series below the threshold: never fires
    labels: dict[str, str] = field(default_factory=dict)
    identity: tuple[str, ...] = ("node",)  # labels that identify the finding
    # alerts of the same kind that win over this one: while one of them fires for the same
    # finding, this one is quiet (one event, one alert of each kind)
    stronger: tuple[str, ...] = ()
    cause: bool = False  # carries the `cause` label of `perf_analyzer:top_cause`

    @property
    def severity(self) -> str:
        return SEVERITY[self.priority]

    @property
    def for_minutes(self) -> int:
        unit = self.for_[-1]
        return int(self.for_[:-1]) * {"m": 1, "h": 60}[unit]


def quiet_while(expr: str, stronger: tuple[str, ...], identity: tuple[str, ...]) -> str:
    """`expr` unless a stronger alert of the same kind fires for the same finding. Rules of a
    group run in order and the stronger ones come first, so even with `for: 0s` the weaker
    one sees the stronger one's `ALERTS` sample of the same evaluation."""
    names = "|".join(stronger)
    return (
        f"({expr})\nunless on ({', '.join(identity)})\n"
        f'ALERTS{{alertname=~"{names}",alertstate="firing"}}'
    )


def chain(alerts: list[Alert]) -> list[Alert]:
    """The alerts of one kind, strongest first, each quiet while a stronger one fires."""
    out = []
    for i, a in enumerate(alerts):
        stronger = tuple(b.name for b in alerts[:i])
        expr = quiet_while(a.expr, stronger, a.identity) if stronger else a.expr
        out.append(replace(a, expr=expr, stronger=stronger))
    return out


def fmt(value: float) -> str:
    """A threshold as a person writes it: 0.9, 95, 1e-06, never 0.9000000000000001."""
    return f"{value:.6g}"


STORAGE = ("disk", "inodes")  # emergency checks of the optional host-fact columns


def _emergency(config: Config) -> list[Alert]:
    cfg = config.emergency
    titles = {
        "cpu": "Cpu", "memory": "Memory", "temperature": "Temperature", "load": "Load",
        "swap": "SwapThrashing", "iowait": "IoWait", "network_errors": "NetworkErrors",
        "disk": "DiskFull", "inodes": "InodesFull", "stale": "NodeStale",
    }  # fmt: skip
    alerts = []
    for check in CHECKS:
        item = CATALOGUE[check]
        levels = getattr(cfg, {"cpu": "cpu_pct", "memory": "mem_available_pct",
                               "temperature": "temperature_c", "load": "load_per_cpu",
                               "swap": "swap_growth_mb_per_min", "iowait": "iowait_pct",
                               "network_errors": "network_errors_per_s",
                               "disk": "disk_used_ratio", "inodes": "inodes_used_ratio",
                               "stale": "stale_seconds"}[check])  # fmt: skip
        levels_of_check = []
        for priority, level, word, for_ in (
            ("P1", 3, "Critical", "2m"),
            ("P2", 2, "Warning", "5m"),
        ):
            threshold = levels.p1 if priority == "P1" else levels.p2
            selector = f'perf_analyzer_emergency_threat{{check="{check}"}}'
            levels_of_check.append(
                Alert(
                    name=f"{PREFIX}{titles[check]}{word}",
                    # storage checks in a group of their own: a group stays small
                    group=f"perf-analyzer-{'storage' if check in STORAGE else 'emergency'}",
                    expr=f"{selector} >= {level}",
                    for_="1m" if check == "stale" else for_,
                    priority=priority,
                    summary=f"{item.message.split(' - ')[1].capitalize()} ({check} {word.lower()})",
                    description=(
                        f"{{{{ $labels.node }}}}: the emergency check {check} is at level "
                        f"{{{{ $value }}}} ({priority}; threshold {fmt(threshold)} {item.unit})."
                    ),
                    action=item.action,
                    verify=f"`perf-analyzer report emergency` lists the {check} threat with its "
                    "value, threshold and sample count; the node dashboard shows the trend.",
                    fire=Case({f'{selector[:-1]},node="n1"}}': f"{level}x70"}),
                    calm=Case({f'{selector[:-1]},node="n1"}}': f"{level - 1}x70"}),
                    labels={"check": check, "cause": check},
                    identity=("node", "check"),
                )
            )
        alerts += chain(levels_of_check)
    alerts.append(
        Alert(
            name=f"{PREFIX}EmergencyAdvisory",
            group="perf-analyzer-emergency",
            expr="perf_analyzer_emergency_threat == 1",
            for_="15m",
            priority="P3",
            summary="An emergency check is at advisory level",
            description="{{ $labels.node }}: the emergency check {{ $labels.check }} has been at "
            "P3-ADVISORY (level {{ $value }}) for 15 minutes.",
            action="Nothing urgent: look at the node during working hours before it becomes a "
            "warning.",
            verify="`perf-analyzer report emergency` lists the advisories.",
            fire=Case({'perf_analyzer_emergency_threat{check="cpu",node="n1"}': "1x70"}),
            calm=Case({'perf_analyzer_emergency_threat{check="cpu",node="n1"}': "0x70"}),
            identity=("node", "check"),
        )
    )
    forget = fmt(config.emergency.forget_after_hours)
    alerts.append(  # the stale alerts stop once a node is forgotten: dead must not read as fixed
        Alert(
            name=f"{PREFIX}NodeForgotten",
            group="perf-analyzer-emergency",
            expr="perf_analyzer_node_forgotten == 1",
            for_="5m",
            priority="P3",
            summary="Node forgotten: decommissioned or dead for a week",
            description="{{ $labels.node }} has sent no node row for more than "
            f"{forget} hours (node_forgotten = {{{{ $value }}}}); its emergency checks have "
            "stopped.",
            action="Confirm the node was decommissioned (then delete its rows or let retention "
            "prune them); otherwise bring its sampler back: the node is dead or cut off.",
            verify="`perf-analyzer report emergency` lists it under forgotten nodes; "
            "`perf_analyzer_node_last_sample_timestamp_seconds` gives its last row.",
            fire=Case({'perf_analyzer_node_forgotten{node="n1"}': "1x70"}),
            calm=Case({'perf_analyzer_node_forgotten{node="n1"}': "0x70"}),
        )
    )
    return alerts


def _slo(config: Config) -> list[Alert]:
    objective = config.sli.good  # the GOOD grade's boundary is the objective
    budget = 1 - objective
    out = []
    ceiling = 1.0  # the error ratio of the test that fires this alert and no stronger one
    for priority, long, short, factor, for_ in (
        ("P1", "1h", "5m", 14.4, "2m"),
        ("P1", "6h", "30m", 6, "15m"),
        ("P2", "1d", "2h", 3, "1h"),
        ("P2", "3d", "6h", 1, "3h"),
    ):
        name = f"{PREFIX}SliBudgetBurn{'Fast' if factor > 5 else 'Slow'}{long}"
        threshold = factor * budget
        error = float(fmt((threshold + ceiling) / 2)) if threshold < ceiling else 1.0
        ceiling = min(ceiling, threshold)
        out.append(
            Alert(
                name=name,
                group="perf-analyzer-slo",
                expr=(
                    f"(\n  perf_analyzer:sli_error_ratio:avg{long} > {fmt(threshold)}\n"
                    f"  and perf_analyzer:sli_error_ratio:avg{short} > {fmt(threshold)}\n)\n"
                    f"* on (node) group_left (cause) {TOP_CAUSE}"
                ),
                for_=for_,
                priority=priority,
                summary=f"SLI error budget burning {fmt(factor)}x too fast ({long} and {short})",
                description=(
                    "{{ $labels.node }}: the "
                    "{{ $labels.sli }}"
                    f" SLI is out of compliance "
                    "{{ $value | humanizePercentage }} of the time over the last "
                    f"{long}, a {fmt(factor)}x burn of its {fmt(budget * 100)} % error budget "
                    f"(objective {fmt(objective * 100)} %). Top cause found by the analyses: "
                    "{{ $labels.cause }}."
                ),
                action="Start from the `cause` label: `contention` is a container starving its "
                "neighbours (`perf-analyzer report contention` names it), an emergency check "
                "name (`cpu`, `iowait`, `stale`, ...) is that threat, `anomaly:<metric>` an "
                "unusual metric; `unknown`: the node dashboard shows which of CPU, I/O wait, "
                "load, memory or swap crosses its SLI threshold, or whether the node stops "
                "reporting.",
                verify="`perf-analyzer report availability --hours 1` gives the ratios.",
                fire=Case(
                    {
                        'perf_analyzer_sli_current_ratio{node="n1",sli="performance"}': (
                            f"{fmt(1 - error)}x300"
                        )
                    },
                    minutes=300,
                    value=error,
                ),
                calm=Case(
                    {'perf_analyzer_sli_current_ratio{node="n1",sli="performance"}': "1x300"},
                    minutes=300,
                ),
                labels={"slo": f"{fmt(objective * 100)}%"},
                identity=("node", "sli"),
                cause=True,
            )
        )
    return chain(out)


TOP_CAUSE = "perf_analyzer:top_cause"


def top_cause(config: Config) -> str:
    """One series per node whose `cause` label is the most specific finding the analyses
    have for it now: a container starving its neighbours, else the worst emergency check at
    P2 or above, else the strongest anomaly at P2 or above, else `unknown`. Value 1, so a
    rule multiplies by it to copy the label without changing its value."""
    one = "* 0 + 1"
    return "\nor on (node)\n".join(
        [
            f'max by (node, cause) (label_replace(perf_analyzer_contention_score > 0.5, "cause", '
            f'"contention", "", "")) {one}',
            "max by (node, cause) (label_replace(topk by (node) (1, "
            f'perf_analyzer_emergency_threat >= 2), "cause", "$1", "check", "(.+)")) {one}',
            "max by (node, cause) (label_replace(topk by (node) (1, "
            f"abs(perf_analyzer_anomaly_score) >= {fmt(config.anomalies.p2_score)}), "
            f'"cause", "anomaly:$1", "metric", "(.+)")) {one}',
            'max by (node, cause) (label_replace(perf_analyzer_sli_current_ratio, "cause", '
            f'"unknown", "", "")) {one}',
        ]
    )


def recording_rules(config: Config | None = None) -> list[dict[str, str]]:
    """Error ratio of each SLI over the burn-rate windows, from the 5-minute signal, and the
    top cause of each node's trouble for the burn-rate alerts."""
    config = config or Config()
    return [
        *(
            {
                "record": f"perf_analyzer:sli_error_ratio:avg{w}",
                "expr": f"1 - avg_over_time(perf_analyzer_sli_current_ratio[{w}])",
            }
            for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
        ),
        {"record": TOP_CAUSE, "expr": top_cause(config)},
    ]


def _health(config: Config) -> list[Alert]:
    cap = []
    cap.append(
        Alert(
            name=f"{PREFIX}NodeGradePoor",
            group="perf-analyzer-health",
            expr="perf_analyzer_health_score <= 1",
            for_="30m",
            priority="P2",
            summary="Node graded POOR or CRITICAL",
            description="{{ $labels.node }} has been graded POOR or CRITICAL for 30 minutes "
            "(score {{ $value }}: 1 poor, 0 critical).",
            action="Open the node dashboard: the SLI panel shows which of availability, "
            "performance or capacity is below 90 %.",
            verify="`perf-analyzer report availability` lists the node's ratios and grade.",
            fire=Case({'perf_analyzer_health_score{node="n1"}': "1x70"}),
            calm=Case({'perf_analyzer_health_score{node="n1"}': "2x70"}),
        )
    )
    cap.append(
        Alert(
            name=f"{PREFIX}CapacityExhaustionImminent",
            group="perf-analyzer-health",
            expr="perf_analyzer_time_to_exhaustion_seconds < 2 * 86400\n"
            "and perf_analyzer_capacity_peak_ratio > 0.9",
            for_="30m",
            priority="P1",
            summary="Resource exhausted within two days",
            description="{{ $labels.node }}: {{ $labels.resource }} reaches its limit in "
            "{{ $value | humanizeDuration }} at the current trend, and its daily peak is already "
            "above 90 %.",
            action="Add capacity or stop the growth now (a leak: restart the service that grows; "
            "a workload: move it).",
            verify="`perf-analyzer report capacity` shows the trend, its r² and the interval.",
            fire=Case(
                {
                    'perf_analyzer_time_to_exhaustion_seconds{node="n1",resource="memory"}': "86400x70",
                    'perf_analyzer_capacity_peak_ratio{node="n1",resource="memory"}': "0.95x70",
                }
            ),
            calm=Case(
                {
                    'perf_analyzer_time_to_exhaustion_seconds{node="n1",resource="memory"}': "86400x70",
                    'perf_analyzer_capacity_peak_ratio{node="n1",resource="memory"}': "0.5x70",
                }
            ),
            identity=("node", "resource"),
        )
    )
    cap.append(
        Alert(
            name=f"{PREFIX}CapacityExhaustionSoon",
            group="perf-analyzer-health",
            expr="perf_analyzer_time_to_exhaustion_seconds < 7 * 86400\n"
            "and perf_analyzer_capacity_peak_ratio > 0.8",
            for_="1h",
            priority="P2",
            summary="Resource exhausted within a week",
            description="{{ $labels.node }}: {{ $labels.resource }} reaches its limit in "
            "{{ $value | humanizeDuration }} at the current trend.",
            action="Plan the capacity change this week: resize, add nodes, or fix the leak.",
            verify="`perf-analyzer report capacity` shows the forecast and its interval.",
            fire=Case(
                {
                    'perf_analyzer_time_to_exhaustion_seconds{node="n1",resource="cpu"}': "400000x70",
                    'perf_analyzer_capacity_peak_ratio{node="n1",resource="cpu"}': "0.85x70",
                }
            ),
            calm=Case(
                {
                    'perf_analyzer_time_to_exhaustion_seconds{node="n1",resource="cpu"}': INF70,
                    'perf_analyzer_capacity_peak_ratio{node="n1",resource="cpu"}': "0.85x70",
                }
            ),
            identity=("node", "resource"),
        )
    )
    cap.append(
        Alert(
            name=f"{PREFIX}CapacityExhaustionForecast",
            group="perf-analyzer-health",
            expr="perf_analyzer_time_to_exhaustion_seconds < 30 * 86400",
            for_="6h",
            priority="P3",
            summary="Resource exhausted within a month",
            description="{{ $labels.node }}: {{ $labels.resource }} reaches its limit in "
            "{{ $value | humanizeDuration }} at the current trend.",
            action="Put the capacity change on the plan for this month.",
            verify="`perf-analyzer report capacity`.",
            fire=Case(
                {
                    'perf_analyzer_time_to_exhaustion_seconds{node="n1",resource="swap"}': "1000000x400"
                },
                minutes=400,
            ),
            calm=Case(
                {'perf_analyzer_time_to_exhaustion_seconds{node="n1",resource="swap"}': INF400},
                minutes=400,
            ),
            identity=("node", "resource"),
        )
    )
    cap.append(
        Alert(
            name=f"{PREFIX}AnomalySevere",
            group="perf-analyzer-health",
            expr=f"abs(perf_analyzer_anomaly_score) >= {fmt(config.anomalies.p1_score)}",
            for_="10m",
            priority="P2",
            summary="A metric is far outside its usual range",
            description="{{ $labels.node }}{{ with $labels.container }} (container {{ . }}){{ end }}: "
            "{{ $labels.metric }} scores "
            "{{ $value }} robust deviations from its seasonal baseline.",
            action="Find what changed on the node (deploy, traffic, batch job) at the time the "
            "anomaly started.",
            verify="`perf-analyzer report anomalies --hours 1` gives value, baseline and since when.",
            fire=Case(
                {
                    'perf_analyzer_anomaly_score{container="",metric="cpu_total_pct",node="n1"}': "12x70"
                }
            ),
            calm=Case(
                {
                    'perf_analyzer_anomaly_score{container="",metric="cpu_total_pct",node="n1"}': "3x70"
                }
            ),
            identity=("node", "container", "metric"),
        )
    )
    cap.append(
        Alert(
            name=f"{PREFIX}AnomalySustained",
            group="perf-analyzer-health",
            expr=f"abs(perf_analyzer_anomaly_score) >= {fmt(config.anomalies.p2_score)}",
            for_="15m",
            priority="P3",
            summary="A metric is outside its usual range",
            description="{{ $labels.node }}{{ with $labels.container }} (container {{ . }}){{ end }}: "
            "{{ $labels.metric }} scores "
            "{{ $value }} robust deviations from its seasonal baseline.",
            action="Look at it during working hours; it resolves by itself if the change was "
            "expected (the detector learns a new normal after a sustained shift).",
            verify="`perf-analyzer report anomalies`.",
            fire=Case(
                {
                    'perf_analyzer_anomaly_score{container="app",metric="c_rss_mb",node="n1"}': "-7x70"
                }
            ),
            calm=Case(
                {'perf_analyzer_anomaly_score{container="app",metric="c_rss_mb",node="n1"}': "0x70"}
            ),
            identity=("node", "container", "metric"),
        )
    )
    cap.append(
        Alert(
            name=f"{PREFIX}ResourceContention",
            group="perf-analyzer-health",
            expr="perf_analyzer_contention_score > 0.5",
            for_="15m",
            priority="P3",
            summary="Containers contend for a node's resource",
            description="{{ $labels.node }}: {{ $labels.resource }} contention score "
            "{{ $value | humanizePercentage }}.",
            action="`perf-analyzer report contention` names the top consumer: limit it, or move it.",
            verify="The node dashboard's container panels show each container's share.",
            fire=Case({'perf_analyzer_contention_score{node="n1",resource="cpu"}': "0.7x70"}),
            calm=Case({'perf_analyzer_contention_score{node="n1",resource="cpu"}': "0.2x70"}),
            labels={"cause": "contention"},
            identity=("node", "resource"),
        )
    )
    grade, capacity, anomaly, contention = cap[:1], cap[1:4], cap[4:6], cap[6:]
    return [*grade, *chain(capacity), *chain(anomaly), *contention]


def _exporter(job: str) -> list[Alert]:
    sel = f'job="{job}"'
    return [
        Alert(
            name=f"{PREFIX}ExporterDown",
            group="perf-analyzer-exporter",
            expr=f"up{{{sel}}} == 0 or absent(up{{{sel}}}) * 0",
            for_="5m",
            priority="P2",
            summary="perf-analyzer cannot be scraped",
            description="Prometheus has not scraped perf-analyzer ({{ $labels.instance }}) for "
            "5 minutes (up = {{ $value }}): none of the node findings are current.",
            action="Check the exporter process (`systemctl status perf-analyzer`, the pod) and "
            "its /-/healthy endpoint.",
            verify="The Prometheus targets page shows the scrape error.",
            fire=Case({f'up{{{sel},instance="pa:10610"}}': "0x70"}),
            calm=Case({f'up{{{sel},instance="pa:10610"}}': "1x70"}),
            identity=("instance",),
        ),
        Alert(
            name=f"{PREFIX}DatabaseDown",
            group="perf-analyzer-exporter",
            expr="perf_analyzer_database_up == 0",
            for_="5m",
            priority="P1",
            summary="perf-analyzer cannot reach its database",
            description="perf-analyzer ({{ $labels.instance }}) has not reached PostgreSQL for "
            "5 minutes (database_up = {{ $value }}); it serves the last good analyses, which "
            "are getting old.",
            action="Check PostgreSQL and the network path; the exporter's log says why the "
            "connection fails (without the password).",
            verify="`perf_analyzer_analysis_last_success_timestamp_seconds` stops advancing.",
            fire=Case({'perf_analyzer_database_up{instance="pa:10610"}': "0x70"}),
            calm=Case({'perf_analyzer_database_up{instance="pa:10610"}': "1x70"}),
            identity=("instance",),
        ),
        Alert(
            name=f"{PREFIX}AnalysisFailing",
            group="perf-analyzer-exporter",
            expr="perf_analyzer_analysis_last_run_success == 0",
            for_="15m",
            priority="P2",
            summary="An analysis keeps failing",
            description="perf-analyzer ({{ $labels.instance }}): the {{ $labels.analysis }} "
            "analysis has failed for 15 minutes (last_run_success = {{ $value }}); its last "
            "good result is being served.",
            action="Read the exporter's log for the analysis' error (statement timeout, "
            "permission, missing column: `perf-analyzer db check`).",
            verify="`perf_analyzer_analysis_errors_total` grows.",
            fire=Case(
                {
                    'perf_analyzer_analysis_last_run_success{analysis="availability",instance="pa:10610"}': "0x70"
                }
            ),
            calm=Case(
                {
                    'perf_analyzer_analysis_last_run_success{analysis="availability",instance="pa:10610"}': "1x70"
                }
            ),
            identity=("instance", "analysis"),
        ),
        Alert(
            name=f"{PREFIX}ExpositionFailing",
            group="perf-analyzer-exporter",
            expr="increase(perf_analyzer_exposition_errors_total[15m]) > 0",
            for_="0m",
            priority="P2",
            summary="An analysis's results cannot be turned into metrics",
            description="perf-analyzer ({{ $labels.instance }}): the {{ $labels.analysis }} "
            "analysis ran, but its result could not be turned into metrics "
            "({{ $value | humanize }} failures in 15 minutes); its metric families are missing "
            "from the scrape.",
            action="A bug in perf-analyzer: read the exporter's log for the traceback of "
            "'building the metrics of analysis', and report it with the version "
            "(`perf_analyzer_build_info`).",
            verify="`perf_analyzer_exposition_errors_total` stops growing after an upgrade.",
            fire=Case(
                {
                    'perf_analyzer_exposition_errors_total{analysis="capacity",instance="pa:10610"}': "0+1x70"
                },
                value=2.0,  # at 2 min the counter has risen by 2 (no extrapolation before 0)
            ),
            calm=Case(
                {
                    'perf_analyzer_exposition_errors_total{analysis="capacity",instance="pa:10610"}': "0x70"
                }
            ),
            identity=("instance", "analysis"),
        ),
        Alert(
            name=f"{PREFIX}AnalysisStale",
            group="perf-analyzer-exporter",
            expr="time() - perf_analyzer_analysis_last_success_timestamp_seconds\n"
            "> 3 * perf_analyzer_analysis_refresh_interval_seconds + 600",
            for_="10m",
            priority="P3",
            summary="An analysis has not succeeded for a long time",
            description="perf-analyzer ({{ $labels.instance }}): {{ $labels.analysis }} last "
            "succeeded {{ $value | humanizeDuration }} ago.",
            action="Look for slow queries (statement timeouts) or a stuck database connection.",
            verify="`perf_analyzer_analysis_duration_seconds` of the analysis.",
            fire=Case(
                {
                    'perf_analyzer_analysis_last_success_timestamp_seconds{analysis="capacity",instance="pa:10610"}': "0x70",
                    'perf_analyzer_analysis_refresh_interval_seconds{analysis="capacity",instance="pa:10610"}': "900x70",
                }
            ),
            calm=Case(
                {
                    'perf_analyzer_analysis_last_success_timestamp_seconds{analysis="capacity",instance="pa:10610"}': "0+60x70",
                    'perf_analyzer_analysis_refresh_interval_seconds{analysis="capacity",instance="pa:10610"}': "900x70",
                }
            ),
            identity=("instance", "analysis"),
        ),
        Alert(
            name=f"{PREFIX}SeriesDropped",
            group="perf-analyzer-exporter",
            expr='sum by (instance) (perf_analyzer_series_dropped{kind!="node"}) > 0',
            for_="1h",
            priority="P3",
            summary="The series budget cuts series",
            description="perf-analyzer ({{ $labels.instance }}) cuts {{ $value }} series to "
            "stay within --max-series.",
            action="Raise --max-series if Prometheus can take it, or shard the fleet.",
            verify="`perf_analyzer_series_dropped` by kind.",
            fire=Case(
                {'perf_analyzer_series_dropped{instance="pa:10610",kind="anomaly_zero"}': "10x70"}
            ),
            calm=Case(
                {'perf_analyzer_series_dropped{instance="pa:10610",kind="anomaly_zero"}': "0x70"}
            ),
            identity=("instance",),
        ),
        Alert(
            name=f"{PREFIX}NodesDropped",
            group="perf-analyzer-exporter",
            expr='sum by (instance) (perf_analyzer_series_dropped{kind="node"}) > 0',
            for_="15m",
            priority="P2",
            summary="The series budget hides whole nodes",
            description="perf-analyzer ({{ $labels.instance }}) serves nothing for some nodes "
            "({{ $value }} series cut): their alerts cannot fire.",
            action="Raise --max-series or shard the fleet (--shard I/N); the exporter log names "
            "how many nodes are cut. Junk node names (a sampler writing random names) also "
            "cause this: look for them with `perf-analyzer db check`.",
            verify='`perf_analyzer_series_dropped{kind="node"}` is back to 0.',
            fire=Case({'perf_analyzer_series_dropped{instance="pa:10610",kind="node"}': "40x70"}),
            calm=Case({'perf_analyzer_series_dropped{instance="pa:10610",kind="node"}': "0x70"}),
            identity=("instance",),
        ),
        Alert(
            name=f"{PREFIX}NodesIgnored",
            group="perf-analyzer-exporter",
            expr="max by (instance) (perf_analyzer_nodes_ignored) > 0",
            for_="15m",
            priority="P2",
            summary="The node guard leaves nodes unanalysed",
            description="perf-analyzer ({{ $labels.instance }}) does not analyse "
            "{{ $value }} nodes: the table names more nodes than --max-nodes (by default "
            "--max-series / 12), and those that reported least recently and for the shortest "
            "time are left out.",
            action="Read the exporter log line `node guard (exporter.max_nodes N): M of K "
            "nodes not analysed`. Junk node names (a sampler writing random names) are the "
            "usual cause: find them with `perf-analyzer db check` and delete their rows. A "
            "fleet that really is this large needs a larger --max-series (or --max-nodes) or "
            "more replicas (--shard I/N).",
            verify="`perf_analyzer_nodes_ignored` is back to 0.",
            fire=Case({'perf_analyzer_nodes_ignored{instance="pa:10610"}': "19167x70"}),
            calm=Case({'perf_analyzer_nodes_ignored{instance="pa:10610"}': "0x70"}),
            identity=("instance",),
        ),
    ]


def catalogue(config: Config | None = None, *, job: str = "perf-analyzer") -> list[Alert]:
    """Every alert, in file order."""
    config = config or Config()
    return [
        *_emergency(config), *_slo(config), *_learned(), *_health(config), *_exporter(job)
    ]  # fmt: skip


def _learned() -> list[Alert]:
    """The learned-threshold alerts of `learned.py`."""
    alerts = [
        Alert(**{**kw, "fire": Case(kw["fire"]), "calm": Case(kw["calm"])})
        for kw in learned_alerts(PREFIX)
    ]
    by_metric: dict[str, list[Alert]] = {}
    for a in alerts:  # P2 before P3 for each metric
        by_metric.setdefault(a.labels["metric"], []).append(a)
    return [b for levels in by_metric.values() for b in chain(levels)]
