"""The `perf-analyzer` command: parse, call, render, exit. No logic of its own.

Every failure a user can cause (bad flag, unreachable database, missing table) ends in one
sentence on stderr and exit status 1 (2 for usage errors), never a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from . import __version__, logs, registry, sampler
from . import demo as demo_run
from . import store as store_module
from .analyses.common import AnalysisError, Context, resolve_now
from .config import Config, load_columns, load_config
from .embedded import EmbeddedPostgresError
from .generate import dashboards as dashboard_files
from .generate import rules as rule_files
from .generate.alerts import DEFAULT_DASHBOARD_URL, DEFAULT_RUNBOOK_BASE
from .html import HTML_REPORTS, HtmlUnavailable
from .html import check_available as check_html
from .partitions import init_partitioned_table, utc_minute
from .retention import prune
from .schema import DEFAULT_TABLE, init_table
from .server import start_exporter
from .shard import Shard
from .simulate import FleetSpec, copy_fleet, simulate
from .stack import StackOptions
from .store import Store, StoreError
from .tablecheck import check_table

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    StoreError,
    AnalysisError,
    EmbeddedPostgresError,
    OSError,
    ValueError,
)


def _fail(message: str) -> None:
    click.echo(f"perf-analyzer: {message}", err=True)


class FriendlyGroup(click.Group):
    """Turns expected errors into one line on stderr; unexpected ones too, unless
    PERF_ANALYZER_DEBUG is set (then the traceback is shown for a bug report)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except EXPECTED_ERRORS as exc:
            _fail(str(exc))
            ctx.exit(1)
        except KeyboardInterrupt:
            _fail("interrupted")
            ctx.exit(130)
        except Exception as exc:
            if os.environ.get("PERF_ANALYZER_DEBUG"):
                raise
            _fail(
                f"unexpected error ({type(exc).__name__}: {exc}); "
                "set PERF_ANALYZER_DEBUG=1 to see the traceback"
            )
            ctx.exit(1)


def db_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--dsn and --table, shared by every command that reads or writes the table."""

    @click.option(
        "--table",
        default=DEFAULT_TABLE,
        show_default=True,
        envvar="PERF_ANALYZER_TABLE",
        help="Samples table, `table` or `schema.table` (always quoted, never pasted into SQL).",
    )
    @click.option(
        "--dsn",
        default=None,
        help="libpq connection string or URL. Default: $PERF_ANALYZER_DSN, "
        "$DATA_SOURCE_NAME (or their *_FILE variants), else libpq's PG* variables.",
    )
    @click.option(
        "--columns",
        "columns_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="YAML mapping of the standard column names to the table's "
        "(`sample_time: ts`); for reading a table whose columns are named differently.",
    )
    @wraps(func)
    def wrapper(*args: Any, columns_file: str | None, **kwargs: Any) -> Any:
        if columns_file is not None:
            store_module.default_columns.update(load_columns(columns_file))
        return func(*args, **kwargs)

    return wrapper


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="perf-analyzer")
def main() -> None:
    """perf-analyzer: SRE performance analysis of node and container samples kept in
    PostgreSQL, served to Prometheus."""
    logs.setup("info", "logfmt")


def log_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--log.level and --log.format, as Prometheus exporters spell them."""

    @click.option(
        "--log.level",
        "log_level",
        type=click.Choice(list(logs.LEVELS)),
        default="info",
        show_default=True,
    )
    @click.option(
        "--log.format",
        "log_format",
        type=click.Choice(["logfmt", "json"]),
        default="logfmt",
        show_default=True,
    )
    @wraps(func)
    def wrapper(*args: Any, log_level: str, log_format: str, **kwargs: Any) -> Any:
        logs.setup(log_level, log_format)
        return func(*args, **kwargs)

    return wrapper


# --------------------------------------------------------------------------- db


@main.group()
def db() -> None:
    """Create, check and prune the samples table."""


@db.command("init")
@db_options
@click.option(
    "--partitioned",
    is_flag=True,
    help="Partition the table by day on sample_time (RANGE), so `db prune` drops whole days.",
)
@click.option(
    "--premake-days",
    type=click.IntRange(0, 366),
    default=7,
    show_default=True,
    help="With --partitioned: also create the partitions of this many days after today.",
)
@click.option(
    "--from",
    "since",
    default=None,
    metavar="TIME",
    help="With --partitioned: create the daily partitions from this day on too (unix seconds "
    "or ISO 8601), e.g. the oldest sample of a table you will copy in.",
)
def db_init(
    dsn: str | None, table: str, partitioned: bool, premake_days: int, since: str | None
) -> None:
    """Create the samples table and the indexes the analyses need (idempotent)."""
    if since is not None and not partitioned:
        raise click.BadParameter("--from only applies with --partitioned", param_hint="--from")
    with Store(dsn, table) as store:
        if not partitioned:
            init_table(store)
            click.echo(f"table {table} and its indexes are ready in {store.target}")
            return
        first = parse_time(since) if since is not None else None
        created = init_partitioned_table(store, premake_days=premake_days, since=first)
        made = f"created {len(created)} daily partitions" if created else "no partition needed"
        click.echo(
            f"table {table} (partitioned by day on sample_time) and its indexes are ready in "
            f"{store.target}; {made}" + (f" ({created[0]} .. {created[-1]})" if created else "")
        )


@db.command("check")
@db_options
def db_check(dsn: str | None, table: str) -> None:
    """Compare a table with the expected schema, describe how it is stored (plain or
    partitioned, size, rows, days) and recommend; exit 0 only when the analyses can run."""
    with Store(dsn, table) as store:
        report = check_table(store)
    for note in report.notes:
        click.echo(f"info: {note}")
    for finding in report.findings:
        click.echo(f"{finding.level}: {finding.message}")
    for recommendation in report.recommendations:
        click.echo(f"recommendation: {recommendation}")
    if report.usable:
        rows = f" (about {report.rows_estimate:,} rows)" if report.rows_estimate else ""
        click.echo(f"table {table} is usable{rows}")
    else:
        raise SystemExit(1)


@db.command("prune")
@db_options
@click.option(
    "--keep-days",
    type=click.IntRange(min=1),
    required=True,
    help="Keep the samples of this many days (24 h each) before now; remove older ones.",
)
@click.option("--dry-run", is_flag=True, help="Say what would be removed; change nothing.")
@click.option(
    "--allow-delete",
    is_flag=True,
    help="On a plain (unpartitioned) table, DELETE the old rows in batches (then VACUUM).",
)
@click.option(
    "--premake-days",
    type=click.IntRange(0, 366),
    default=7,
    show_default=True,
    help="On a partitioned table, also create the partitions of this many days ahead.",
)
@click.option(
    "--batch-rows",
    type=click.IntRange(100, 10_000_000),
    default=50_000,
    show_default=True,
    help="Rows per DELETE transaction with --allow-delete.",
)
@click.option(
    "--at", "at", default=None, help="Prune as of this moment instead of now (unix or ISO 8601)."
)
def db_prune(
    dsn: str | None,
    table: str,
    keep_days: int,
    dry_run: bool,
    allow_delete: bool,
    premake_days: int,
    batch_rows: int,
    at: str | None,
) -> None:
    """Remove samples older than --keep-days: whole daily partitions of a partitioned
    table (cheap, no bloat); on a plain table only with --allow-delete."""
    now = parse_time(at) if at else None
    with Store(dsn, table) as store:
        result = prune(
            store,
            keep_days,
            now=now,
            dry_run=dry_run,
            allow_delete=allow_delete,
            premake_days=premake_days,
            batch_rows=batch_rows,
            progress=click.echo,
        )
    before = utc_minute(result.cutoff)
    if result.partitioned:
        click.echo(
            f"{'would drop' if dry_run else 'dropped'} {len(result.dropped)} partitions "
            f"({result.rows:,} rows) entirely older than {before}; kept {result.kept}"
        )
        if result.created:
            click.echo(
                f"{'would create' if dry_run else 'created'} {len(result.created)} partitions "
                "ahead: " + ", ".join(result.created)
            )
    else:
        click.echo(
            f"{'would delete' if dry_run else 'deleted'} {result.rows:,} rows older than "
            f"{before}" + (f" in {result.batches} batches" if result.batches else "")
        )
        if result.rows and not dry_run:
            click.echo(
                f"run VACUUM (ANALYZE) on table {table} now so the space is reused (VACUUM FULL "
                "or pg_repack returns it to the operating system, with a long lock)"
            )
    if keep_days < 31:
        click.echo(
            f"note: capacity planning reads 30 days by default; keeping {keep_days} shortens "
            "its history"
        )
    if dry_run:
        click.echo("dry run: nothing changed")


# --------------------------------------------------------------------------- report


def parse_time(value: str) -> int:
    """Unix seconds, or an ISO 8601 date/time (UTC unless it says otherwise)."""
    from datetime import UTC, datetime

    try:
        return int(float(value))
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither unix seconds nor an ISO 8601 time like 2026-03-01T14:30"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        default=None,
        envvar="PERF_ANALYZER_CONFIG",
        help="YAML file of thresholds and windows (unknown keys are errors).",
    )(func)


class AnalysisName(click.ParamType):
    """A name `report` accepts: read from the registry when the command runs."""

    name = "name"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "{" + "|".join(a.name for a in registry.reportable()) + "}"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        names = [a.name for a in registry.reportable()]
        try:
            analysis = registry.get(value)
        except KeyError:
            analysis = None
        if analysis is None or not analysis.report:
            self.fail(f"{value!r} is not one of {', '.join(names)}", param, ctx)
        return analysis.name


def load_settings(config_file: str | None) -> Config:
    """The configuration; its `table.columns` become the stores' column mapping unless
    --columns gave one."""
    config = load_config(config_file) if config_file else Config()
    registry.check_refresh(config)
    if not store_module.default_columns:
        store_module.default_columns.update(config.table.columns)
    return config


@main.command()
@click.argument("name", type=AnalysisName())
@db_options
@config_option
@click.option(
    "--at", "at", default=None, help="Replay as of this moment (unix seconds or ISO 8601)."
)
@click.option("--hours", type=float, default=None, help="Window of hour-based analyses.")
@click.option("--days", type=float, default=None, help="Window of day-based analyses.")
@click.option(
    "--cpu-count",
    type=click.IntRange(1, 4096),
    default=None,
    help="CPUs of every node (default: estimated per node from the data).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "html"]),
    default="text",
    show_default=True,
    help="html: one self-contained page with charts, into --out (the `html` extra).",
)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="File of --format html.")
@click.option("--no-color", is_flag=True, help="Plain text even on a terminal.")
def report(
    name: str,
    dsn: str | None,
    table: str,
    config_file: str | None,
    at: str | None,
    hours: float | None,
    days: float | None,
    cpu_count: int | None,
    fmt: str,
    out: str | None,
    no_color: bool,
) -> None:
    """Run one analysis and print it for a person (text) or a pipe (JSON), or write it as a
    page with charts (HTML)."""
    from .analyzer import PerformanceAnalyzer
    from .render import to_json

    if fmt == "html" and not out:
        raise click.UsageError("--format html writes a file: name it with --out FILE")
    if fmt == "html" and name not in HTML_REPORTS:
        raise click.UsageError(f"--format html is for the reports {', '.join(HTML_REPORTS)}")
    if fmt == "html":
        try:
            check_html()
        except HtmlUnavailable as exc:
            raise click.ClickException(str(exc)) from None
        if not Path(out or "").resolve().parent.is_dir():
            raise click.UsageError(f"--out {out}: its directory does not exist")

    config = load_settings(config_file)
    now = resolve_now(parse_time(at) if at else None)
    window = registry.get(name).window
    amount = None if window is None else {"hours": hours, "days": days}[window.unit]
    with PerformanceAnalyzer(Store(dsn, table), cpu_count=cpu_count, config=config) as analyzer:
        result = analyzer.run(name, amount, now=now)
        if fmt == "html":
            assert out is not None
            write_html(name, result, analyzer.ctx, now, out)
            return
    if fmt == "json":
        click.echo(to_json(result))
    else:
        colour = not no_color and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        click.echo(registry.render_text(name, result, colour=colour))


def write_html(name: str, result: dict[str, Any], ctx: Context, now: int, out: str) -> None:
    """The HTML page of `result` into `out` (its charts may read the table once more)."""
    from .html import render_report

    try:
        page = render_report(name, result, ctx, now)
    except HtmlUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    try:
        Path(out).write_text(page, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror}") from None
    click.echo(f"wrote {out} ({len(page.encode()) / 1e6:.2f} MB)", err=True)


# --------------------------------------------------------------------------- rules


@main.command()
@click.option(
    "--output",
    type=click.Path(file_okay=False),
    default="alert_rules",
    show_default=True,
    help="Folder for the rules, their promtool tests and the Alertmanager example.",
)
@click.option(
    "--runbooks",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to write the runbook (one section per alert) [default: OUTPUT/runbooks.md].",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["files", "prometheusrule"]),
    default="files",
    show_default=True,
    help="files: rules, promtool tests and Alertmanager example; prometheusrule: the same "
    "rule groups as one Kubernetes PrometheusRule (monitoring.coreos.com/v1).",
)
@click.option("--runbook-url-base", default=None, help="Base URL of the runbook in annotations.")
@click.option("--dashboard-url", default=None, help="URL of the node dashboard in annotations.")
@click.option(
    "--job",
    default="perf-analyzer",
    show_default=True,
    help="Prometheus job label of the exporter (for ExporterDown).",
)
@config_option
@click.option(
    "--dsn",
    default=None,
    hidden=True,
    help="No longer needed: the learned-threshold rules are in the main rules file.",
)
@click.option("--table", default=DEFAULT_TABLE, show_default=True)
def rules(
    output: str,
    runbooks: str | None,
    fmt: str,
    runbook_url_base: str | None,
    dashboard_url: str | None,
    job: str,
    config_file: str | None,
    dsn: str | None,
    table: str,
) -> None:
    """Write the Prometheus alert rules (learned thresholds included), their promtool tests,
    the Alertmanager example and the runbook (into OUTPUT unless --runbooks), or the rules
    as a Kubernetes PrometheusRule (--format prometheusrule)."""
    config = load_settings(config_file)
    written = rule_files.write(
        Path(output),
        runbook_path=Path(runbooks) if runbooks else Path(output) / rule_files.RUNBOOK_FILE,
        runbook_base=runbook_url_base or DEFAULT_RUNBOOK_BASE,
        dashboard_url=dashboard_url or DEFAULT_DASHBOARD_URL,
        job=job,
        config=config,
        fmt=fmt,
    )
    if dsn:
        click.echo(
            "note: --dsn is no longer needed; the learned-threshold rules are in "
            f"{rule_files.RULES_FILE} and cover every node that serves thresholds",
            err=True,
        )
    for path in written:
        click.echo(f"wrote {path}")


# --------------------------------------------------------------------------- dashboards


@main.command()
@click.option(
    "--output",
    type=click.Path(file_okay=False),
    default="dashboards",
    show_default=True,
    help="Folder for the Grafana dashboard JSON files.",
)
@config_option
def dashboards(output: str, config_file: str | None) -> None:
    """Write the Grafana dashboards (fleet, node, capacity, exporter) as JSON."""
    for path in dashboard_files.write(Path(output), config=load_settings(config_file)):
        click.echo(f"wrote {path}")


# --------------------------------------------------------------------------- backfill


def parse_steps(values: tuple[str, ...]) -> dict[str, float]:
    """`--step SECONDS` (every analysis) and `--step NAME=SECONDS` (one analysis)."""
    out = {}
    for value in values:
        name, _, seconds = value.rpartition("=")
        try:
            out[name] = float(seconds)
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is neither SECONDS nor NAME=SECONDS", param_hint="--step"
            ) from None
    return out


@main.command()
@db_options
@config_option
@click.option(
    "--days", type=click.FloatRange(min=0, min_open=True), required=True, help="History to write."
)
@click.option("--out", "out_file", type=click.Path(dir_okay=False), required=True)
@click.option("--end", default=None, help="Last moment (unix seconds or ISO 8601; default now).")
@click.option(
    "--step",
    multiple=True,
    help="Seconds between runs of every analysis (SECONDS) or of one (NAME=SECONDS); "
    "repeatable. Default: each analysis's refresh interval.",
)
@click.option(
    "--scrape-interval",
    type=click.IntRange(min=1),
    default=60,
    show_default=True,
    help="Seconds between the samples written (the last result is repeated, as scrapes do).",
)
@click.option(
    "--cpu-count",
    type=click.IntRange(1, 4096),
    default=None,
    help="CPUs of every node (default: estimated per node from the data).",
)
def backfill(
    dsn: str | None,
    table: str,
    config_file: str | None,
    days: float,
    out_file: str,
    end: str | None,
    step: tuple[str, ...],
    scrape_interval: int,
    cpu_count: int | None,
) -> None:
    """Replay the served analyses over the past DAYS and write what the exporter would have
    served, as OpenMetrics for `promtool tsdb create-blocks-from openmetrics`."""
    import time

    from .analyzer import PerformanceAnalyzer
    from .backfill import backfill as run_backfill

    config = load_settings(config_file)
    last = parse_time(end) if end else int(time.time())
    steps = parse_steps(step)
    with (
        PerformanceAnalyzer(Store(dsn, table), cpu_count=cpu_count, config=config) as analyzer,
        open(out_file, "wb") as out,
    ):
        summary = run_backfill(
            analyzer.ctx,
            out,
            start=last - int(days * 86400),
            end=last,
            step=steps,
            scrape=scrape_interval,
        )
    failed = ", ".join(f"{k} {v}" for k, v in summary.failures.items()) or "none"
    click.echo(
        f"wrote {out_file}: {summary.samples} samples of {summary.families} metric families "
        f"at {summary.ticks} moments; failed runs: {failed}"
    )


# --------------------------------------------------------------------------- synth


def fleet_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option("--nodes", type=click.IntRange(1, 100_000), default=14, show_default=True),
            click.option(
                "--containers",
                type=click.IntRange(0, 100),
                default=2,
                show_default=True,
                help="Containers per node.",
            ),
            click.option("--days", type=click.FloatRange(0.01, 400), default=30, show_default=True),
            click.option(
                "--interval",
                type=click.IntRange(1, 3600),
                default=60,
                show_default=True,
                help="Seconds between samples.",
            ),
            click.option("--seed", type=int, default=42, show_default=True),
        ]
    ):
        func = option(func)
    return func


@main.command()
@db_options
@fleet_options
@click.option("--end", type=int, default=None, help="Unix time of the last sample (default now).")
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write the ground truth (which node carries which finding, and its size) as JSON.",
)
def synth(
    dsn: str | None,
    table: str,
    nodes: int,
    containers: int,
    days: float,
    interval: int,
    seed: int,
    end: int | None,
    truth: str | None,
) -> None:
    """Write a simulated fleet, with injected findings, into the table."""
    spec = FleetSpec(
        nodes=nodes, containers=containers, days=days, interval=interval, seed=seed, end=end
    )
    fleet = simulate(spec)
    label = f"loading {fleet.row_count:,} rows"
    with (
        Store(dsn, table) as store,
        click.progressbar(length=fleet.row_count, label=label, file=sys.stderr) as bar,
    ):
        copy_fleet(store, fleet, progress=bar.update)
    if truth:
        with open(truth, "w", encoding="utf-8") as fh:
            json.dump(fleet.truth, fh, indent=2)
    placed = ", ".join(f"{f['kind']} on {f['node']}" for f in fleet.truth["findings"])
    click.echo(f"wrote {fleet.row_count:,} rows for {nodes} nodes; findings: {placed or 'none'}")


# --------------------------------------------------------------------------- serve


def _set_protect_probes(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    from . import server

    server.PROTECT_PROBES = value


def exporter_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The exporter's HTTP flags, shared by `serve` and `demo`."""
    for option in reversed(
        [
            click.option(
                "--web.listen-address",
                "listen_address",
                default=":10610",
                show_default=True,
                help="Address to listen on (host:port; :10610 is every interface).",
            ),
            click.option(
                "--web.telemetry-path",
                "telemetry_path",
                default="/metrics",
                show_default=True,
                help="Path of the metrics.",
            ),
            click.option(
                "--web.config.file",
                "web_config_file",
                type=click.Path(dir_okay=False),
                default=None,
                help="TLS and basic auth, in the Prometheus exporter-toolkit format.",
            ),
            click.option(
                "--web.protect-probes",
                "protect_probes",
                is_flag=True,
                default=False,
                expose_value=False,
                callback=_set_protect_probes,
                help="Require basic auth on /-/healthy and /-/ready too (they answer without "
                "credentials by default).",
            ),
            click.option(
                "--max-series",
                type=click.IntRange(1),
                default=None,
                help="Series budget (default from the configuration: 150,000).",
            ),
        ]
    ):
        func = option(func)
    return func


def _check_telemetry_path(path: str) -> None:
    if not path.startswith("/"):
        raise click.BadParameter("--web.telemetry-path must start with /")


def _parse_shard(value: str | None) -> Shard | None:
    if value is None:
        return None
    try:
        return Shard.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command()
@db_options
@config_option
@exporter_options
@click.option(
    "--cpu-count",
    type=click.IntRange(1, 4096),
    default=None,
    help="CPUs of every node (default: estimated per node from the data).",
)
@click.option(
    "--shard",
    "shard",
    default=None,
    metavar="I/N",
    callback=lambda ctx, param, value: _parse_shard(value),
    help="Serve only the nodes whose name hashes to shard I of N (run N replicas).",
)
@click.option(
    "--max-nodes",
    type=click.IntRange(1),
    default=None,
    help="Nodes the analyses read at most, those reporting now and for longest first "
    "(default from the configuration, else the series budget / 12).",
)
@log_options
def serve(
    dsn: str | None,
    table: str,
    config_file: str | None,
    listen_address: str,
    telemetry_path: str,
    web_config_file: str | None,
    max_series: int | None,
    cpu_count: int | None,
    shard: Shard | None,
    max_nodes: int | None,
) -> None:
    """The Prometheus exporter: analyses served on scrape at --web.telemetry-path."""
    _check_telemetry_path(telemetry_path)
    config = load_settings(config_file)
    if max_nodes is not None:
        exporter = dataclasses.replace(config.exporter, max_nodes=max_nodes)
        config = dataclasses.replace(config, exporter=exporter)
    store = Store(
        dsn,
        table,
        statement_timeout=config.exporter.statement_timeout_seconds,
        pool_size=config.exporter.workers + 1,
        shard=shard,
    )
    try:
        store.check_encoding()  # refused at start, not at every scrape
        start_exporter(
            store,
            config,
            listen_address=listen_address,
            telemetry_path=telemetry_path,
            web_config_file=web_config_file,
            max_series=max_series,
            cpu_count=cpu_count,
        )
    finally:
        store.close()


# --------------------------------------------------------------------------- sample


@main.command()
@db_options
@click.option(
    "--interval",
    type=click.FloatRange(1, 3600),
    default=60,
    show_default=True,
    help="Seconds between samples.",
)
@click.option("--count", type=click.IntRange(1), default=None, help="Stop after this many.")
@click.option("--node-name", default=None, help="Name of this node (default: the host name).")
@click.option(
    "--give-up-after",
    type=click.FloatRange(0, 86400),
    default=60,
    show_default=True,
    help="Seconds a missing table or INSERT right is retried before exiting with status 1.",
)
@click.option(
    "--flush-timeout",
    type=click.FloatRange(0, 3600),
    default=10,
    show_default=True,
    help="Seconds given to writing the queued rows on Ctrl-C or SIGTERM.",
)
def sample(
    dsn: str | None,
    table: str,
    interval: float,
    count: int | None,
    node_name: str | None,
    give_up_after: float,
    flush_timeout: float,
) -> None:
    """Sample this host (and the containers it can see) into the table every --interval.

    Readings keep their clock whatever the database does: rows wait in a bounded queue (up
    to an hour) while a write is slow, locked or refused, and are written when it is back."""
    _sigterm_as_interrupt()
    with Store(dsn, table) as store:
        written = sampler.run(
            store,
            interval=interval,
            count=count,
            node_name=node_name,
            give_up_after=give_up_after,
            flush_within=flush_timeout,
        )
    click.echo(f"wrote {written} rows", err=True)


# --------------------------------------------------------------------------- demo


@main.command()
@fleet_options
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the embedded database here between runs (default: a temporary directory).",
)
@click.option(
    "--live/--no-live",
    default=True,
    help="Keep appending fresh samples every --interval (the default), so the findings stay "
    "current; --no-live freezes the data as loaded.",
)
@click.option(
    "--realistic/--clean",
    default=True,
    help="Healthy nodes sample the way real samplers do (15/60/300 s, jitter, late rows, "
    "misses, autocorrelated noise); --clean gives every node the same clean 60 s grid.",
)
@click.option(
    "--stack",
    is_flag=True,
    help="Also run a local Prometheus (scraping the demo, with the shipped alert rules and an "
    "hour of backfilled history) and Alertmanager (the shipped routing), from the binaries on "
    "PATH; Ctrl-C stops all.",
)
@click.option("--prometheus-port", type=click.IntRange(1, 65535), default=9090, show_default=True)
@click.option("--alertmanager-port", type=click.IntRange(1, 65535), default=9093, show_default=True)
@click.option(
    "--history-hours",
    type=click.FloatRange(0, 24 * 14),
    default=1.0,
    show_default=True,
    help="Hours of history `--stack` backfills into Prometheus (0: none).",
)
@exporter_options
@log_options
def demo(
    nodes: int,
    containers: int,
    days: float,
    interval: int,
    seed: int,
    data_dir: str | None,
    live: bool,
    realistic: bool,
    listen_address: str,
    telemetry_path: str,
    web_config_file: str | None,
    max_series: int | None,
    stack: bool,
    prometheus_port: int,
    alertmanager_port: int,
    history_hours: float,
) -> None:
    """Embedded PostgreSQL, a simulated fleet with every kind of finding, and the exporter
    serving it (http://localhost:10610/metrics by default)."""
    _check_telemetry_path(telemetry_path)
    _sigterm_as_interrupt()  # until the exporter takes over SIGTERM: stop cleanly while loading
    spec = FleetSpec(
        nodes=nodes,
        containers=containers,
        days=days,
        interval=interval,
        seed=seed,
        realistic=realistic,
    )
    demo_run.run(
        demo_run.DemoOptions(
            spec,
            data_dir=data_dir,
            live=live,
            listen_address=listen_address,
            telemetry_path=telemetry_path,
            web_config_file=web_config_file,
            max_series=max_series,
            stack=StackOptions(prometheus_port, alertmanager_port, history_hours)
            if stack
            else None,
        )
    )


def _sigterm_as_interrupt() -> None:
    """SIGTERM stops `sample` and `demo` the same clean way Ctrl-C does."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    main()
