"""`perf-analyzer demo`: an embedded PostgreSQL, a simulated fleet with every kind of finding,
and the exporter serving it, so the whole path can be seen without a database of one's own.

The demo talks to the person who started it (what it loads, what it found, where it
serves), so unlike the library modules it prints, on stdout and stderr like the CLI.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass

import click
from psycopg import sql

from . import registry
from .analyzer import PerformanceAnalyzer
from .config import Config
from .embedded import EmbeddedPostgres
from .errors import StoreError
from .rollups import SETTLE_SECONDS
from .schema import DEFAULT_TABLE
from .server import ExporterServer, start_exporter
from .simulate import Fleet, FleetSpec, copy_columns, copy_fleet, simulate, table_has_facts
from .stack import SCRAPE_SECONDS, Stack, StackOptions, StackUnavailable, find_programs
from .store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoOptions:
    """Where the demo keeps its database and how it serves (the `demo` command's flags)."""

    spec: FleetSpec
    data_dir: str | None
    live: bool
    listen_address: str
    telemetry_path: str
    web_config_file: str | None
    max_series: int | None
    stack: StackOptions | None = None  # `--stack`: Prometheus and Alertmanager beside it


def run(options: DemoOptions) -> None:
    """Start the database, load the fleet, print what it holds, and serve until stopped
    (SIGTERM, SIGINT or Ctrl-C); the database is stopped in every case."""
    data_dir = options.data_dir
    if data_dir:
        os.makedirs(data_dir, exist_ok=True)
    stack_options = options.stack
    if stack_options is not None:
        try:
            find_programs()
        except StackUnavailable as exc:
            click.echo(f"{exc}; running the demo without them", err=True)
            stack_options = None
        else:
            if data_dir and not stack_options.state_dir:
                stack_options = dataclasses.replace(
                    stack_options, state_dir=os.path.join(data_dir, "stack")
                )
    stack: Stack | None = None
    pg = EmbeddedPostgres(os.path.join(data_dir, "pgdata") if data_dir else None)
    click.echo("starting embedded PostgreSQL ...", err=True)
    pg.start()
    try:
        with Store(pg.dsn, DEFAULT_TABLE) as store:
            fleet = load_data(store, options.spec)
            print_summary(store, pg.dsn, fleet)
            appender = LiveAppender(store, options.spec, fleet.end) if options.live else None

            def ready(server: ExporterServer) -> None:
                host = options.listen_address.rpartition(":")[0].strip("[]") or "localhost"
                click.echo(
                    f"\nserving {server.scheme}://{host}:{server.port}{options.telemetry_path}"
                    "  (Ctrl-C stops)"
                )
                if appender:
                    appender.start()
                if stack_options is not None:
                    nonlocal stack
                    stack = start_stack(store, stack_options, options.listen_address, server.port)

            start_exporter(
                store,
                Config(),
                listen_address=options.listen_address,
                telemetry_path=options.telemetry_path,
                web_config_file=options.web_config_file,
                max_series=options.max_series,
                on_ready=ready,
            )
            if appender:
                appender.stop()
    except KeyboardInterrupt:
        pass
    finally:
        click.echo("stopping", err=True)
        if stack is not None:
            stack.stop()
        pg.stop()


def start_stack(
    store: Store, options: StackOptions, listen_address: str, port: int
) -> Stack | None:
    """Prometheus and Alertmanager over the serving exporter, and history loading behind
    them; a stack that cannot start is one sentence, and the plain demo goes on."""
    host = listen_address.rpartition(":")[0].strip("[]")
    target = f"{'127.0.0.1' if host in ('', '0.0.0.0', '::') else host}:{port}"
    stack = Stack(options, find_programs(), target)
    try:
        stack.start()
    except StackUnavailable as exc:
        stack.stop()
        click.echo(f"{exc}; serving the demo without Prometheus and Alertmanager", err=True)
        return None
    click.echo(
        f"prometheus   {stack.prometheus_url}  (scrapes the exporter every "
        f"{SCRAPE_SECONDS} s, evaluates the shipped alert rules)"
    )
    click.echo(
        f"alertmanager {stack.alertmanager_url}  (the shipped routing; receivers are "
        "placeholders, see the alerts in its UI)"
    )
    click.echo(f"stack files  {stack.state}  (configuration, logs, data)")
    click.echo("alerts fire after their `for:` durations, counted from now")
    stack.start_history(PerformanceAnalyzer(store).ctx, int(time.time()), click.echo)
    return stack


def load_data(store: Store, spec: FleetSpec) -> Fleet:
    """A new fleet, or (with a kept data directory) the old one topped up to now."""
    newest = store.newest_sample_time()
    fleet = simulate(spec, count_rows=newest is None)
    if newest is None:
        label = f"loading {fleet.row_count:,} rows"
        with click.progressbar(length=fleet.row_count, label=label, file=sys.stderr) as bar:
            return copy_fleet(store, fleet, progress=bar.update)
    facts = table_has_facts(store)
    added = store.copy_in(copy_columns(facts), fleet.copy_chunks(since=newest, facts=facts))
    click.echo(f"kept the fleet in the data directory; added {added:,} samples up to now", err=True)
    return fleet


# Findings placed hours before the fleet's end: a live demo would let them slide out of
# their windows, so they recur daily at the time of day they had when the demo started.
DAILY_FINDINGS = ("outage_gap", "anomaly_spike")
# Findings of the fleet's last minutes: an incident of the last 20 minutes. Appending
# each new slot from the fleet ending now would stretch them over every minute since the
# demo started (hours of 92 % CPU grade the node POOR and escalate its anomaly), so their
# nodes' rows not yet settled into the exporter's hourly rollups are rewritten at every
# append: from the fleet ending now after `_incident_floor`, healthy before it. Each
# incident then lasts its stated duration, cut at the last hour that settles (at least 5
# minutes: the emergency check's window), and the rollups' cached hours never hold an
# incident that later vanishes from the table.
RECENT_FINDINGS = (
    "cpu_saturation",
    "memory_exhausted",
    "overheating",
    "iowait_high",
    "network_errors",
    "noisy_neighbour",
)
DAY = 86400
HOUR = 3600
INCIDENT_S = 2 * HOUR  # longer than every recent finding's window


class LiveAppender:
    """Appends the simulated fleet's newest samples every interval (`demo`, unless
    `--no-live`), from the last slot loaded on, so the demo shows the same findings for as
    long as it runs: the healthy, trend and stale nodes from the fleet re-simulated to end
    now; the nodes of `RECENT_FINDINGS` rewritten over their unsettled rows, so each incident
    is as recent and about as long as at the start; the nodes of `DAILY_FINDINGS`
    from the fleet ending at the next whole day after the first load, so their outage and
    spike recur every day instead of leaving the 24-hour windows. Host facts are written
    when the table has their columns."""

    def __init__(self, store: Store, spec: FleetSpec, since: int) -> None:
        self.store, self.spec = store, spec
        self.last = self.anchor = since
        truth = simulate(spec, count_rows=False).truth
        self.daily = {f["node"] for f in truth["findings"] if f["kind"] in DAILY_FINDINGS}
        self.recent = {f["node"] for f in truth["findings"] if f["kind"] in RECENT_FINDINGS}
        self.facts = table_has_facts(store)
        if self.recent:  # the loaded incidents too: none reaches into a settled hour
            fleet = simulate(spec, count_rows=False)
            self._rewrite(fleet, since, copy_columns(self.facts), since - INCIDENT_S)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.spec.interval - time.time() % self.spec.interval):
            try:
                self.append(int(time.time()))
            except StoreError as exc:
                log.warning("live samples not written: %s", exc)

    def append(self, now: int) -> int:
        """Write the samples after the last slot written up to `now` (and rewrite the recent
        findings' nodes); returns rows added."""
        end = now // self.spec.interval * self.spec.interval
        if end <= self.last:
            return 0
        columns = copy_columns(self.facts)
        fleet = simulate(dataclasses.replace(self.spec, end=end), count_rows=False)
        others = [n for n in fleet.truth["nodes"] if n not in self.daily | self.recent]
        chunks = fleet.copy_chunks(since=self.last, nodes=others, facts=self.facts)
        added = self.store.copy_in(columns, chunks)
        if self.recent:
            added += self._rewrite(fleet, end, columns)
        if self.daily:
            days = -(-(end - self.anchor) // DAY)  # the next whole day after the first end
            daily = simulate(
                dataclasses.replace(self.spec, end=self.anchor + days * DAY), count_rows=False
            )
            chunks = daily.copy_chunks(
                since=self.last, until=end, nodes=self.daily, facts=self.facts
            )
            added += self.store.copy_in(columns, chunks)
        self.last = end
        return added

    def _rewrite(
        self, fleet: Fleet, end: int, columns: tuple[str, ...], since: int | None = None
    ) -> int:
        """Replace the recent findings' nodes' rows after `since` (default: the unsettled
        ones, after the rollups' settled hours) with healthy rows up to `_incident_floor`
        and `fleet`'s (the fleet ending now) after it, in one transaction (a reader never
        sees them missing); returns the rows added."""
        wall = int(time.time())
        settled = min(end // HOUR * HOUR, (wall - SETTLE_SECONDS) // HOUR * HOUR)
        step = max(self.spec.interval, end - self.last)  # the next append comes as late
        floor = max(settled, self._incident_floor(end, wall, step))
        if since is None:  # from the slot at the settled hour's end (always written healthy)
            since = min(self.last, settled - self.spec.interval)  # or the last one written
        else:
            floor = self._incident_floor(end, wall, step)
        # ending past every incident window yet still holding the rows rewritten here
        healthy = simulate(dataclasses.replace(self.spec, end=end + INCIDENT_S), count_rows=False)
        parts = [
            healthy.copy_chunks(since=since, until=floor, nodes=self.recent, facts=self.facts),
            fleet.copy_chunks(since=max(since, floor), nodes=self.recent, facts=self.facts),
        ]
        table = self.store.table
        copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            table, sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        added = 0
        with self.store.write() as cur:
            cur.execute(  # container rows trail their node row by up to the offset
                sql.SQL(
                    "DELETE FROM {} WHERE node_name = ANY(%s)"
                    " AND sample_time > %s + CASE WHEN node_flag THEN 0 ELSE %s END"
                ).format(table),
                (sorted(self.recent), since, self.spec.shapes().container_offset_s),
            )
            before = cur.rowcount
            for chunks in parts:
                with cur.copy(copy) as out:
                    for data, rows in chunks:
                        out.write(data)
                        added += rows
        return added - before

    def _incident_floor(self, end: int, wall: int, step: int) -> int:
        """The first time an incident row may be written: the start of the hour that will
        still be unsettled at the next append, `step` later (rows before it settle into the
        rollups first, so they are written healthy)."""
        return min((end + step) // HOUR * HOUR, (wall + step - SETTLE_SECONDS) // HOUR * HOUR)


def print_summary(store: Store, dsn: str, fleet: Fleet) -> None:
    """The database, the injected findings and the emergency check, before serving."""
    click.echo(f"database: {dsn}  table: {store.table_name}")
    click.echo(
        f"fleet: {fleet.spec.nodes} nodes, {fleet.row_count:,} samples over "
        f"{fleet.spec.days:g} days; injected findings:"
    )
    for finding in fleet.truth["findings"]:
        click.echo(f"  {finding['node']}: {finding['kind']}")
    click.echo()
    analyzer = PerformanceAnalyzer(store)
    emergency = analyzer.emergency_health_check()
    click.echo(registry.render_text("emergency", emergency, colour=sys.stdout.isatty()))
    click.echo()
    click.echo(f"more: perf-analyzer report daily --dsn {dsn}")
