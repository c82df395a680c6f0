"""The Prometheus collector: analyses refreshed in the background, served as finished text.

- Each analysis runs on its own refresh interval in a small thread pool, started by a
  ticker whether or not anyone scrapes, and by a scrape that finds it due; concurrent
  scrapes (an HA pair of Prometheus servers) share the run in progress (single flight).
- Right after a run, its result is turned into samples and rendered to exposition text
  once per format; a scrape joins the finished parts. A warm scrape's cost therefore does
  not grow with the fleet (beyond copying bytes).
- A scrape waits, at most until its deadline (Prometheus's scrape timeout minus a margin),
  only for analyses with interval 0 ("every scrape") and those that have no result yet.
  A run that fails is never cached: the last good result is served.
- One failing analysis never blanks the others, and nothing raises out of a scrape.
- The process (`process_*`) and interpreter (`python_*`) metrics and the exporter's own
  HTTP counters are collected on every scrape and put before the cached body (the own
  per-analysis series are rendered once per change); under gzip these few hundred bytes are
  compressed and spliced in front of the body's cached deflate stream, so the body is
  compressed once per result change, never per scrape.
- `perf_analyzer_database_up` follows the latest database round trip, whichever analysis
  made it, so it drops to 0 when the database goes away and comes back with it.
- With `exporter.worker_process`, the long-window analyses (`WORKER_ANALYSES`) run in one
  spawned worker process that keeps its own rollups and connection: one at a time (bounded
  memory), and their numpy and result building never hold the interpreter lock that the
  scrapes need. Results come back pickled; the collector turns them into text as before.
- A cold start's first runs of the rollup-based analyses spend `exporter.cold_start_seconds`
  reading rollups at most (one budget for all of them, not one each), answer from the
  newest days read by then (served with the seconds of history they read,
  `perf_analyzer_analysis_history_seconds`), and run again at once, with the whole
  history.
"""

from __future__ import annotations

import gzip
import logging
import multiprocessing
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import (
    CancelledError,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder

from . import __version__, allocator, registry
from .analyses.common import resolve_now
from .analyses.unit import Analysis, ResultView
from .analyzer import PerformanceAnalyzer
from .config import Config
from .exposition import (
    DROP_KINDS,
    OPENMETRICS_EOF,
    Encoder,
    SampleCache,
    apply_budget,
    families,
    is_openmetrics,
    log_nodes_dropped,
    render,
    same,
    shorten_names,
)
from .rollups import HourlyRollups, Reading, reading
from .samples import Sample, sample
from .shard import Shard
from .store import Store, StoreError

log = logging.getLogger(__name__)


# Analyses that read hours to weeks of samples or the rollups: these go to the worker
# process when there is one. The cheap every-few-seconds ones stay in the exporter.
WORKER_ANALYSES = frozenset(
    {"availability", "anomalies", "contention", "correlation", "capacity", "patterns",
     "alert-config"}
)  # fmt: skip
# Worker analyses that read the table, not the rollups, with little work of their own in
# Python: their first run is done here, at once, while the worker process is still busy
# with the rollup-based analyses' cold runs (the learned thresholds' is mostly the
# database's sorts, which this overlaps with the worker's).
WARM_IN_PROCESS = frozenset({"availability", "contention", "alert-config"})
# Started after the others when several are due at once (a cold start): the worker runs
# one analysis at a time, and this one's first run (a day of raw rows) costs several
# times the others' first runs from the newest rollups, so it goes last in its queue.
STARTED_LAST = frozenset({"correlation"})


@dataclass(frozen=True)
class WorkerSpec:
    """What the worker process needs to open its own analyzer on the same table."""

    dsn: str
    table: str
    shard: Shard | None
    statement_timeout: float
    connect_timeout: float
    application_name: str
    cpu_count: int | None
    config: Config
    log_level: int


class AnalysisFailed(Exception):
    """An analysis failed in the worker: its exception's type name and message (the
    exception itself may not survive pickling)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(kind, message)
        self.kind, self.message = kind, message


_worker: PerformanceAnalyzer | None = None  # the worker process's analyzer
# the worker process's incremental state per analysis (`Analysis.incremental`), kept
# across its runs as the scheduler keeps `JobState.state` for the runs in this process
_worker_states: dict[str, Any] = {}
# the worker's latest samples and text per analysis: equal samples are not rendered again
_worker_texts: dict[str, tuple[list[Sample], dict[str, bytes]]] = {}
_worker_cold: list[float] = []  # what the worker's first runs left of the reading budget


def _left(budget: float | None, cold: list[float]) -> float | None:
    """What is left of the cold start's one reading budget (`cold` holds it once used);
    None (no limit) stays None."""
    if budget is None:
        return None
    return cold[0] if cold else budget


def _spent(served: Reading, cold: list[float]) -> None:
    """Keep what a run left of the reading budget for the next first run (runs at once in
    the exporter's threads each take off their own reading: the least left is kept)."""
    if served.left is not None:
        cold[:] = [min(cold[0], served.left) if cold else served.left]


def _worker_start(spec: WorkerSpec) -> None:
    global _worker
    logging.basicConfig(level=spec.log_level, format="level=%(levelname)s %(message)s")
    try:
        os.nice(spec.config.exporter.worker_niceness)
    except OSError as e:  # not allowed (a sandbox): run at the exporter's priority
        logging.getLogger(__name__).warning("worker process: nice() failed: %s", e)
    allocator.return_freed_memory()  # as in the exporter: freed arrays leave RSS
    store = Store(
        spec.dsn,
        spec.table,
        statement_timeout=spec.statement_timeout,
        connect_timeout=spec.connect_timeout,
        pool_size=1,  # one analysis at a time
        application_name=spec.application_name,
        shard=spec.shard,
    )
    _worker = PerformanceAnalyzer(store, cpu_count=spec.cpu_count, config=spec.config)


# What the worker process made of a result for the exporter: its samples, and their text
# per content type of `DEFAULT_FORMATS` (None: the exporter builds them, as for any result).
Rendered = tuple[list[Sample], dict[str, bytes]] | None


def _worker_run(
    name: str, window: float | None, now: int, budget: float | None = None
) -> tuple[Any, float, dict[str, int], Rendered, Reading]:
    """(result, seconds, rollup history, samples and text, history it was computed from) of
    one analysis run in the worker process, which spends on reading rollups at most what the
    first runs before it left of `budget` (None: no limit)."""
    assert _worker is not None
    started = time.monotonic()
    analysis = registry.get(name)
    if analysis.incremental is not None and name not in _worker_states:
        _worker_states[name] = analysis.incremental()
    try:
        with reading(_left(budget, _worker_cold)) as served:
            result = registry.run(analysis, _worker.ctx, window, now, _worker_states.get(name))
        _spent(served, _worker_cold)
        if served.partial:  # state built on part of the history: the rerun starts afresh
            _worker_states.pop(name, None)
        seconds = time.monotonic() - started
        rendered = _worker_render(analysis, result)
    except StoreError as exc:
        raise StoreError(str(exc), unreachable=exc.unreachable, permanent=exc.permanent) from None
    except Exception as exc:
        raise AnalysisFailed(type(exc).__name__, str(exc)) from None
    finally:
        allocator.trim()
    return result, seconds, _history(_worker), rendered, served


def _worker_render(analysis: Analysis[Any], result: Any) -> Rendered:
    """The result's samples and text, built here so that the exporter's interpreter (which
    the scrapes need) only joins them; None for an analysis whose samples read another
    analysis's result (`Served.depends_on`) or whose conversion fails (the exporter then
    builds them, and counts the failure, as usual)."""
    assert _worker is not None
    serve = analysis.serve
    if serve is None or serve.depends_on:
        return None
    try:
        view = ResultView(_worker.ctx.config, {analysis.name: result})
        samples = [shorten_names(s) for s in serve.to_samples(result, view)]
        kept = _worker_texts.get(analysis.name)
        if kept is not None and kept[0] == samples:  # most runs of the 10-second analyses
            return kept
        grouped = families(samples)
        formats = (choose_encoder(accept) for accept in DEFAULT_FORMATS)
        texts = {content_type: render(grouped, enc) for enc, content_type in formats}
        _worker_texts[analysis.name] = (samples, texts)
        return samples, texts
    except Exception:
        return None


def _worker_stateful() -> list[str]:
    """The analyses whose incremental state the worker process holds (for tests)."""
    return sorted(_worker_states)


def _history(analyzer: PerformanceAnalyzer) -> dict[str, int]:
    """Seconds of hourly rollups read so far per kind ({} before any analysis needed them)."""
    rollups = analyzer.ctx.caches.get("rollups")
    return rollups.history() if isinstance(rollups, HourlyRollups) else {}


@dataclass
class JobState:
    analysis: Analysis[Any] = field(repr=False)
    interval: float
    result: dict[str, Any] | None = None
    last_success: float | None = None  # wall clock, for the exposed timestamp
    started: float | None = None  # monotonic start of the latest run
    duration: float | None = None
    last_ok: bool | None = None
    errors: int = 0
    runs: int = 0
    future: Future[None] | None = field(default=None, repr=False)
    state: Any = field(default=None, repr=False)  # the analysis's incremental state
    # seconds of rollup history the result was computed from (None: it read none), and
    # whether that was less than it asked for (a cold start's first run: run again at once)
    history: int | None = None
    partial: bool = False

    @property
    def name(self) -> str:
        return self.analysis.name


class Scheduler:
    """Runs the analyses in a small thread pool when they are due."""

    def __init__(self, analyzer: PerformanceAnalyzer, config: Config) -> None:
        self.analyzer = analyzer
        self.config = config
        registry.check_refresh(config)
        self._worker_spec = self._spec(analyzer, config)
        worker = set(WORKER_ANALYSES) if self._worker_spec is not None else set()
        self.jobs = {  # the worker process keeps its analyses' state itself
            a.name: JobState(
                a,
                registry.refresh_seconds(a, config),
                state=a.incremental() if a.incremental and a.name not in worker else None,
            )
            for a in registry.served()
        }
        # the order due runs are started in: the worker's queue is first come, first served
        self._order = sorted(self.jobs.values(), key=lambda j: j.name in STARTED_LAST)
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=config.exporter.workers, thread_name_prefix="analysis"
        )
        self._db_contact: tuple[float, bool] | None = None  # (monotonic, reached)
        self.ever_reached_database = False
        self.listeners: list[Callable[[], None]] = []  # called after every successful run
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._worker: ProcessPoolExecutor | None = None
        self._worker_history: dict[str, int] = {}
        self._cold: list[float] = []  # what in-process first runs left of the reading budget
        self._rendered: dict[str, tuple[Any, list[Sample], dict[str, bytes]]] = {}
        # the thread that waits for the worker, so that a queue of long-window runs never
        # holds the pool the every-few-seconds analyses run in; one, as the worker runs one
        # analysis at a time: its queue keeps the order the runs were started in (several
        # threads would race to submit), and each run's `now` is taken as it starts
        self._waiters = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worker-wait")

    @staticmethod
    def _spec(analyzer: PerformanceAnalyzer, config: Config) -> WorkerSpec | None:
        """The worker's recipe, or None when the analyses run in this process: the key is
        off, the store borrows a connection, or capacity advice is overridden in Python."""
        store = analyzer.store
        if not config.exporter.worker_process or not store.dsn:
            return None
        if type(analyzer) is not PerformanceAnalyzer:
            return None
        return WorkerSpec(
            dsn=store.dsn,
            table=store.table_name,
            shard=store.shard,
            statement_timeout=store.statement_timeout,
            connect_timeout=store.connect_timeout,
            application_name=store.application_name,
            cpu_count=analyzer.ctx.cpu_count,
            config=config,
            log_level=logging.getLogger().getEffectiveLevel(),
        )

    def rollup_history(self) -> dict[str, int]:
        """Seconds of hourly rollups read so far, per kind: in the worker process (as of
        its latest run) or in this one. A cold start reads them newest first."""
        with self._lock:
            if self._worker_spec is not None:
                return dict(self._worker_history)
        return _history(self.analyzer)

    def _in_worker(
        self, name: str, window: float | None, now: int, budget: float | None = None
    ) -> tuple[Any, float, Rendered, Reading]:
        """Run one analysis in the worker process (started on first use, and again if it
        died): (result, seconds of the run itself, not of the wait for the worker, its
        samples and text when the worker built them, and the rollup history it read)."""
        assert self._worker_spec is not None
        with self._lock:
            if self._worker is None:
                self._worker = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_worker_start,
                    initargs=(self._worker_spec,),
                )
            worker = self._worker
        try:
            result, seconds, history, rendered, served = worker.submit(
                _worker_run, name, window, now, budget
            ).result()
        except BrokenProcessPool:
            with self._lock:
                if self._worker is worker:
                    self._worker = None
            worker.shutdown(wait=False, cancel_futures=True)
            raise
        with self._lock:
            self._worker_history = history
        return result, seconds, rendered, served

    def take_rendered(self) -> dict[str, tuple[Any, list[Sample], dict[str, bytes]]]:
        """analysis -> (result, its samples, their text per content type) built in the worker
        process since the previous call, for the collector's caches."""
        with self._lock:
            rendered, self._rendered = self._rendered, {}
        return rendered

    @property
    def database_up(self) -> bool:
        return bool(self._db_contact and self._db_contact[1])

    def refresh(self, deadline: float) -> bool:
        """Start what is due; wait, at most until `deadline` (monotonic), for the runs whose
        result must be fresh (every-scrape analyses, analyses without a result yet). True
        when there were such runs."""
        with self._lock:
            waits = [
                future
                for job in self._order
                if (future := self._start_if_due(job)) and (job.interval == 0 or job.result is None)
            ]
        if waits:
            wait(waits, timeout=max(0.0, deadline - time.monotonic()))
        return bool(waits)

    def start_ticker(self, period: float = 1.0) -> None:
        """Refresh the analyses on their intervals in the background, scraped or not, so a
        scrape finds them ready (analyses with interval 0 still run on scrape)."""

        def tick() -> None:
            while not self._stop.wait(period):
                with self._lock:
                    if self._stop.is_set():
                        return
                    for job in self._order:
                        if job.interval > 0:
                            self._start_if_due(job)

        self._ticker = threading.Thread(target=tick, name="ticker", daemon=True)
        self._ticker.start()

    def _start_if_due(self, job: JobState) -> Future[None] | None:
        if job.future is not None:
            return job.future  # single flight: share the run in progress
        if job.started is not None:
            if job.last_ok:
                wait_for = 0 if job.partial else job.interval  # partial: the whole history next
            else:
                wait_for = min(job.interval, self.config.exporter.retry_seconds)
            if time.monotonic() - job.started < wait_for:
                return None
        job.started = time.monotonic()
        in_worker = self._in_worker_now(job)
        job.future = (self._waiters if in_worker else self._executor).submit(
            self._run, job, in_worker
        )
        return job.future

    def _in_worker_now(self, job: JobState) -> bool:
        """Whether this run of `job` goes to the worker process: its analyses do, except the
        first runs of those that read the table only (`WARM_IN_PROCESS`), which would
        otherwise wait behind the rollup-based analyses' cold runs there."""
        if self._worker_spec is None or job.name not in WORKER_ANALYSES:
            return False
        return not (job.name in WARM_IN_PROCESS and job.result is None)

    def _run(self, job: JobState, in_worker: bool = False) -> None:
        started = time.monotonic()
        reached: bool | None = None
        ran: float | None = None
        rendered: Rendered = None
        served = Reading()
        # a first run reads rollups only so long; later runs read all they need
        budget = self.config.exporter.cold_start_seconds if job.result is None else None
        try:
            analysis = job.analysis
            window = registry.served_window(analysis, self.config)
            if in_worker:
                result, ran, rendered, served = self._in_worker(
                    job.name, window, resolve_now(None), budget
                )
            else:
                with reading(_left(budget, self._cold)) as served:
                    result = registry.run(
                        analysis, self.analyzer.ctx, window, resolve_now(None), job.state
                    )
                _spent(served, self._cold)
            ok, reached = True, True
        except StoreError as exc:
            result, ok, reached = None, False, not exc.unreachable
            log.warning("analysis=%s failed: %s", job.name, exc)
        except AnalysisFailed as exc:
            result, ok = None, False
            log.error("analysis=%s failed: %s: %s", job.name, exc.kind, exc.message)
        except (CancelledError, BrokenProcessPool) as exc:
            result, ok = None, False
            # a run stopped by shutting down is no failure worth an error line
            level = logging.DEBUG if self._stop.is_set() else logging.ERROR
            log.log(level, "analysis=%s failed: %s: %s", job.name, type(exc).__name__, exc)
        except Exception as exc:  # a bug in one analysis must not take the others down
            result, ok = None, False
            log.error(
                "analysis=%s failed: %s: %s",
                job.name,
                type(exc).__name__,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
        with self._lock:
            job.duration = time.monotonic() - started if ran is None else ran
            job.last_ok = ok
            job.runs += 1
            if ok:
                job.result = result
                job.last_success = time.time()
                job.history, job.partial = served.history, served.partial
                if served.partial and not in_worker and job.analysis.incremental:
                    job.state = job.analysis.incremental()  # built on part of the history
                if rendered is not None:
                    self._rendered[job.name] = (result, *rendered)
            else:
                job.errors += 1
            if reached is not None:
                self._db_contact = (time.monotonic(), reached)
                self.ever_reached_database |= reached
            job.future = None
        allocator.trim()  # the run's temporary arrays go back to the system
        if ok:
            for listener in self.listeners:
                try:
                    listener()
                except Exception:
                    log.exception("after analysis=%s: a listener failed", job.name)

    def snapshot(self) -> list[JobState]:
        with self._lock:
            return [
                JobState(**{k: v for k, v in vars(j).items() if k != "future"})
                for j in self.jobs.values()
            ]

    def close(self, wait_for_runs: bool = True) -> None:
        with self._lock:
            self._stop.set()
            worker, self._worker = self._worker, None
        self._executor.shutdown(wait=wait_for_runs, cancel_futures=True)
        self._waiters.shutdown(wait=wait_for_runs, cancel_futures=True)
        if worker is not None:
            if not wait_for_runs:  # a run in progress only reads: stop it, do not wait for it
                for process in list(getattr(worker, "_processes", {}).values()):
                    process.terminate()
            worker.shutdown(wait=wait_for_runs, cancel_futures=True)


class HttpCounters(Protocol):
    """What the collector reads of the server's `ConnectionLimits`."""

    counts: dict[str, int]
    accept_errors: int


class PerfAnalyzerCollector:
    """Turns the scheduler's last good results into exposition text.

    Every analysis result is turned into samples and rendered to text once per result and
    format (in the analysis thread, right after the run, for the formats scrapers asked
    for), so a warm scrape only joins finished parts: its cost does not grow with the fleet
    except for copying bytes. Fresh families every time, no long-lived Gauge objects: a node
    that disappears disappears from the output. Over the series budget the slow path cuts
    samples across analyses in the documented order (`exposition.apply_budget`)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.config = scheduler.config
        # the HTTP server's connection counters, set by the server that serves this
        self.http_limits: HttpCounters | None = None
        self._samples = SampleCache(self.config)
        self._parts: dict[tuple[str, str], tuple[tuple[Any, ...], bytes, list[Sample]]] = {}
        # content type -> ((budget, analyses), what the cut was made from, its text, series
        # dropped by kind)
        self._budgeted: dict[
            str, tuple[tuple[int, tuple[str, ...]], tuple[Any, ...], bytes, dict[str, int]]
        ] = {}
        # content type -> encoder: the formats scrapers asked for (and the two usual ones),
        # rendered in the background after every run
        self._formats: dict[str, Encoder] = dict(
            choose_encoder(accept)[::-1] for accept in DEFAULT_FORMATS
        )
        # content type -> the last body: between two analysis runs every scrape gets the
        # same Body, so its gzip is compressed once
        self._bodies: dict[str, Body] = {}
        # content type -> (the exporter's own per-analysis samples, their text)
        self._heads: dict[str, tuple[tuple[Sample, ...], bytes]] = {}
        self._lock = threading.Lock()
        self._single_flight: dict[Any, threading.Lock] = {}
        self._building = threading.Lock()  # one body build at a time (`_body`)
        # process_* and python_* in a registry of our own (not the global one), so that two
        # exporters in one process (tests) do not clash
        self._runtime = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self._runtime)
        PlatformCollector(registry=self._runtime)
        GCCollector(registry=self._runtime)
        scheduler.listeners.append(self._prerender)

    def exposition(
        self, encoder: Encoder, content_type: str, deadline: float | None = None
    ) -> Scrape:
        """The body of one scrape in the format of `encoder` (its `content_type`)."""
        with self._lock:
            self._formats.setdefault(content_type, encoder)
        waited = self._refresh(deadline)
        body = self._body(encoder, content_type, previous_while_building=not waited)
        # after the body: counts its failures
        head = self._head(self.scheduler.snapshot(), encoder, content_type)
        return Scrape(self._runtime_text(encoder) + head, body)

    def _runtime_text(self, encoder: Encoder) -> bytes:
        """The process and interpreter metrics, now (reading /proc/self: well under a ms)."""
        try:
            return encoder(self._runtime).removesuffix(OPENMETRICS_EOF)
        except Exception:  # never raise out of a scrape
            log.exception("collecting the process metrics failed")
            return b""

    def _head(self, jobs: list[JobState], encoder: Encoder, content_type: str) -> bytes:
        """The exporter's own metrics, served before the cached body: those that change on
        every scrape (HTTP counters, database up) rendered now, the per-analysis ones only
        when they changed (after a run), so a scrape renders a handful of lines."""
        try:
            live, stable = self._live_samples(), tuple(self._self_samples(jobs))
            with self._flight(("head", content_type)):
                cached = self._heads.get(content_type)
                if cached is None or cached[0] != stable:
                    cached = (stable, render(families(stable), encoder))
                    self._heads[content_type] = cached
            return render(families(live), encoder) + cached[1]
        except Exception:  # never raise out of a scrape
            log.exception("building the exporter's own metrics failed")
            return b""

    def _runtime_series(self) -> int:
        """The process and interpreter series served beside the body (counted in the
        budget: it bounds the whole output)."""
        try:
            return sum(len(m.samples) for m in self._runtime.collect())
        except Exception:  # never raise out of a scrape
            return 0

    def _body(
        self, encoder: Encoder, content_type: str, *, previous_while_building: bool = False
    ) -> Body:
        """The analyses' text (and the series the budget dropped), rebuilt only when a
        result changed; its deflate stream is compressed once per change, not per scrape.
        One build at a time, each from a snapshot taken inside, so that no build works from
        older results than the one before it (the budget's cut, and its log line, would
        step back and forth between the runs' threads).

        `previous_while_building`: while a build is under way (the one that follows every
        run, in the background), serve the body it replaces instead of waiting for it. A
        scrape that waited for a run (an every-scrape analysis, one without a result yet)
        waits for the build too; any other scrape would otherwise wait, at fleet scale, for
        the rendering of a result that finished a moment before it arrived."""
        if previous_while_building and content_type in self._bodies:
            if not self._building.acquire(blocking=False):
                return self._bodies[content_type]
        else:
            self._building.acquire()
        try:
            return self._build_body(encoder, content_type)
        finally:
            self._building.release()

    def _build_body(self, encoder: Encoder, content_type: str) -> Body:
        jobs = self.scheduler.snapshot()
        # the budget is for the whole body: the exporter's own series are counted in it
        reserve = len(self._live_samples()) + len(self._self_samples(jobs)) + len(DROP_KINDS)
        reserve += self._runtime_series()
        self._take_rendered()
        try:
            parts, dropped = self._analysis_parts(
                self._results(jobs), encoder, content_type, reserve
            )
        except Exception:
            log.exception("building the analysis metrics failed")
            parts, dropped = [], {}
        key = tuple(sorted(dropped.items()))
        with self._flight(("body", content_type)):
            cached = self._bodies.get(content_type)
            if cached is not None and cached.dropped == key and same(cached.parts, tuple(parts)):
                return cached  # nothing changed since the last scrape
            raw = render(families(_dropped(dropped)), encoder) + b"".join(parts)
            if is_openmetrics(content_type):
                raw += OPENMETRICS_EOF
            body = Body(key, tuple(parts), raw)
            self._bodies[content_type] = body
            return body

    def _take_rendered(self) -> None:
        """Put what the worker process built (samples, text per format) in the caches, keyed
        by its result as if built here, so that turning it into text costs this interpreter
        nothing."""
        for name, (result, samples, texts) in self.scheduler.take_rendered().items():
            self._samples.seed(name, (result,), samples)
            for content_type, text in texts.items():
                with self._flight((name, content_type)):
                    self._parts[(name, content_type)] = ((result,), text, samples)

    def _flight(self, key: Any) -> threading.Lock:
        """A lock per key: one thread builds a part or body, the others wait and reuse it."""
        with self._lock:
            return self._single_flight.setdefault(key, threading.Lock())

    def _refresh(self, deadline: float | None) -> bool:
        """`Scheduler.refresh`: whether the scrape waited for a run."""
        if deadline is None:
            deadline = time.monotonic() + self.config.exporter.scrape_timeout_seconds
        try:
            return self.scheduler.refresh(deadline)
        except Exception:  # never raise out of a scrape: serve what we have
            log.exception("refreshing the analyses failed")
            return True

    @staticmethod
    def _results(jobs: list[JobState]) -> dict[str, Any]:
        return {j.name: j.result for j in jobs}

    def _analysis_parts(
        self, results: dict[str, Any], encoder: Encoder, content_type: str, reserve: int = 0
    ) -> tuple[list[bytes], dict[str, int]]:
        max_series = max(0, self.config.exporter.max_series - reserve)
        if self._samples.too_many_nodes(results, max_series):
            # nodes will be cut: only those that can stay are turned into samples
            by_job = self._samples.keys(results)
            keys, shape = tuple(by_job.values()), (max_series, tuple(by_job))
            flight = self._flight(("budget", content_type))
            cut = self._budgeted.get(content_type)
            if cut is not None and cut[0] == shape and not same(cut[1], keys):
                # being recut (after a run, in the background): the previous cut meanwhile
                if flight.acquire(blocking=False):
                    flight.release()
                else:
                    return [cut[2]], dict(cut[3])
            with flight:
                cut = self._budgeted.get(content_type)
                if cut is None or cut[0] != shape or not same(cut[1], keys):
                    kept, dropped = self._samples.budget(results, max_series)
                    cut = (shape, keys, render(families(kept), encoder), dropped)
                    self._budgeted[content_type] = cut
            return [cut[2]], dict(cut[3])
        per_job = self._samples.per_job(results)
        if sum(len(samples) for _, samples in per_job.values()) > max_series:
            # the cut is kept until a result changes: a scrape between two runs reuses it
            keys = tuple(key for key, _ in per_job.values())
            shape = (max_series, tuple(per_job))
            with self._flight(("budget", content_type)):
                cut = self._budgeted.get(content_type)
                if cut is None or cut[0] != shape or not same(cut[1], keys):
                    everything = [s for _, samples in per_job.values() for s in samples]
                    kept, dropped = apply_budget(everything, max_series)
                    cut = (shape, keys, render(families(kept), encoder), dropped)
                    self._budgeted[content_type] = cut
            return [cut[2]], dict(cut[3])
        parts = []
        for job, (key, samples) in per_job.items():
            with self._flight((job, content_type)):
                cached = self._parts.get((job, content_type))
                if cached is None or not same(cached[0], key):
                    # a new result with the same samples (the emergency check's levels
                    # between two 10-second runs, mostly) keeps its text
                    if cached is not None and cached[2] == samples:
                        text = cached[1]
                    else:
                        text = render(families(samples), encoder)
                    cached = (key, text, samples)
                    self._parts[(job, content_type)] = cached
            parts.append(cached[1])
        log_nodes_dropped(0, 0)
        return parts, dict.fromkeys(DROP_KINDS, 0)

    def _prerender(self) -> None:
        """After a run: the scrape bodies (and their gzip) of every format in use, so that
        a scrape finds them ready."""
        with self._lock:
            formats = list(self._formats.items())
        for content_type, encoder in formats:
            self._body(encoder, content_type).deflated()

    def _live_samples(self) -> list[Sample]:
        """The exporter's own series that may change between two scrapes."""
        out = [sample("database_up", 1 if self.scheduler.database_up else 0)]
        if self.http_limits is not None:
            counts = dict(self.http_limits.counts)
            out += [
                sample("http_connections_accepted_total", counts.get("accepted", 0)),
                sample("http_connections_refused_total", counts.get("refused", 0)),
                sample("http_connections_evicted_total", counts.get("evicted", 0)),
                sample("http_connections_head_timeout_total", counts.get("head_timeout", 0)),
                sample("http_accept_errors_total", self.http_limits.accept_errors),
            ]
        return out

    def _self_samples(self, jobs: list[JobState]) -> list[Sample]:
        """The exporter's own series that change only with a run (or a rollup read)."""
        out = [sample("build_info", 1, version=__version__)]
        out.append(sample("nodes_ignored", self.scheduler.analyzer.store.node_guard.ignored))
        for kind, seconds in sorted(self.scheduler.rollup_history().items()):
            out.append(sample("rollup_history_seconds", seconds, kind=kind))
        exposition_errors = self._samples.errors.copy()
        for j in jobs:
            out.append(sample("analysis_refresh_interval_seconds", j.interval, analysis=j.name))
            out.append(sample("analysis_errors_total", j.errors, analysis=j.name))
            out.append(
                sample("exposition_errors_total", exposition_errors[j.name], analysis=j.name)
            )
            if j.duration is not None:
                out.append(sample("analysis_duration_seconds", j.duration, analysis=j.name))
                out.append(
                    sample("analysis_last_run_success", 1 if j.last_ok else 0, analysis=j.name)
                )
            if j.last_success is not None:
                out.append(
                    sample(
                        "analysis_last_success_timestamp_seconds", j.last_success, analysis=j.name
                    )
                )
            if j.history is not None:
                out.append(sample("analysis_history_seconds", j.history, analysis=j.name))
        return out


@dataclass
class Body:
    """The analyses' exposition text, the same for every scrape between two results; its
    gzip is compressed once, on first demand."""

    dropped: tuple[tuple[str, int], ...]  # series the budget dropped, by kind
    parts: tuple[bytes, ...]  # the analyses' rendered text
    raw: bytes
    _gzip: bytes | None = field(default=None, repr=False)

    _deflate: tuple[bytes, int] | None = field(default=None, repr=False)

    def gzipped(self) -> bytes:
        if self._gzip is None:  # two threads may both compress: same result, no harm
            self._gzip = gzip.compress(self.raw, compresslevel=1)
        return self._gzip

    def deflated(self) -> tuple[bytes, int]:
        """The raw deflate stream of the body (final block included) and its CRC-32,
        compressed once, for `Scrape.gzipped` to splice behind a fresh prefix."""
        if self._deflate is None:
            compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
            stream = compressor.compress(self.raw) + compressor.flush(zlib.Z_FINISH)
            self._deflate = (stream, zlib.crc32(self.raw))
        return self._deflate


# gzip member header: magic, deflate, no flags, no mtime, no extra flags, unknown OS
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


@dataclass
class Scrape:
    """What one scrape serves: the runtime metrics, collected now, then the cached body."""

    runtime: bytes
    body: Body

    @property
    def raw(self) -> bytes:
        return self.runtime + self.body.raw

    def gzipped(self) -> bytes:
        """One gzip stream without recompressing the body: the prefix is deflated and
        flushed to a byte boundary (no final block), the body's cached deflate stream
        follows (it refers only to its own bytes), and the CRC covers both."""
        if not self.runtime:
            return self.body.gzipped()
        stream, _ = self.body.deflated()
        compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
        prefix = compressor.compress(self.runtime) + compressor.flush(zlib.Z_SYNC_FLUSH)
        crc = zlib.crc32(self.body.raw, zlib.crc32(self.runtime))
        size = (len(self.runtime) + len(self.body.raw)) & 0xFFFFFFFF
        return _GZIP_HEADER + prefix + stream + struct.pack("<II", crc, size)


# Formats rendered from the start: Prometheus's preferred OpenMetrics, and plain text.
DEFAULT_FORMATS = ("application/openmetrics-text;version=1.0.0", "text/plain;version=0.0.4")


def _dropped(dropped: dict[str, int]) -> list[Sample]:
    return [sample("series_dropped", n, kind=kind) for kind, n in dropped.items()]
