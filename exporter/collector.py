"""The Prometheus collector: runs the analyses on scrape, each on its own refresh interval.

- A scrape that finds an analysis older than its interval starts it; concurrent scrapes
  (an HA pair of Prometheus servers) share the run in progress (single flight).
- A scrape waits, at most until its deadline (Prometheus's scrape timeout minus a margin),
  for the analyses it must not serve stale: those refreshed every scrape (current values,
  emergency check) and those that have no result yet. A slower analysis that is merely due
  refreshes in the background while the scrape serves its last good result, so a 2-second
  anomaly run never makes a scrape take 2 seconds. A run that fails is never cached.
- One failing analysis never blanks the others, and nothing raises out of `collect()`.
- `perf_analyzer_database_up` follows the latest database round trip, whichever analysis
  made it, so it drops to 0 when the database goes away and comes back with it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import Metric

from . import __version__
from .analyses import hosts, sli, summary
from .analyses.common import resolve_now
from .analyzer import PerformanceAnalyzer
from .config import Config
from .exposition import Sample, SampleCache, apply_budget, families, sample
from .store import StoreError

log = logging.getLogger(__name__)


def _current(analyzer: PerformanceAnalyzer, config: Config) -> dict[str, Any]:
    """The last few minutes' averages and every node's newest sample."""
    now = resolve_now(None)
    window = config.exporter.current_window_seconds / 3600
    return {
        "summary": summary.export_metrics_summary(analyzer.ctx, hours=window, now=now),
        "spans": hosts.node_spans(analyzer.ctx, now),
        # the SLIs over the same few minutes: what burn-rate rules average over time
        "sli": sli.system_availability_check(
            analyzer.ctx, hours=window, now=now, emergency={"threats": []}
        ),
    }


# name -> what runs; the refresh interval of each is in config.exporter.refresh
JOBS: dict[str, Callable[[PerformanceAnalyzer, Config], dict[str, Any]]] = {
    "current": _current,
    "emergency": lambda a, c: a.emergency_health_check(),
    "sli": lambda a, c: a.system_availability_check(),
    "anomalies": lambda a, c: a.detect_anomalies(hours=1),
    "contention": lambda a, c: a.resource_contention_analysis(hours=1),
    "correlation": lambda a, c: a.correlation_analysis(hours=c.correlation.window_hours),
    "capacity": lambda a, c: a.capacity_planning_analysis(days=c.capacity.days),
    "patterns": lambda a, c: a.workload_pattern_analysis(days=c.patterns.days),
    "thresholds": lambda a, c: a.generate_alert_config(),
}


@dataclass
class JobState:
    name: str
    interval: float
    result: dict[str, Any] | None = None
    last_success: float | None = None  # wall clock, for the exposed timestamp
    started: float | None = None  # monotonic start of the latest run
    duration: float | None = None
    last_ok: bool | None = None
    errors: int = 0
    runs: int = 0
    future: Future[None] | None = field(default=None, repr=False)


class Scheduler:
    """Runs the analyses in a small thread pool when they are due."""

    def __init__(self, analyzer: PerformanceAnalyzer, config: Config) -> None:
        self.analyzer = analyzer
        self.config = config
        refresh = config.exporter.refresh
        self.jobs = {name: JobState(name, getattr(refresh, name)) for name in JOBS}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=config.exporter.workers, thread_name_prefix="analysis"
        )
        self._db_contact: tuple[float, bool] | None = None  # (monotonic, reached)
        self.ever_reached_database = False

    @property
    def database_up(self) -> bool:
        return bool(self._db_contact and self._db_contact[1])

    def refresh(self, deadline: float) -> None:
        """Start what is due; wait, at most until `deadline` (monotonic), for the runs whose
        result must be fresh (every-scrape analyses, analyses without a result yet)."""
        with self._lock:
            waits = [
                future
                for job in self.jobs.values()
                if (future := self._start_if_due(job)) and (job.interval == 0 or job.result is None)
            ]
        if waits:
            wait(waits, timeout=max(0.0, deadline - time.monotonic()))

    def _start_if_due(self, job: JobState) -> Future[None] | None:
        if job.future is not None:
            return job.future  # single flight: share the run in progress
        if job.started is not None:
            wait_for = (
                job.interval
                if job.last_ok
                else min(job.interval, self.config.exporter.retry_seconds)
            )
            if time.monotonic() - job.started < wait_for:
                return None
        job.started = time.monotonic()
        job.future = self._executor.submit(self._run, job)
        return job.future

    def _run(self, job: JobState) -> None:
        started = time.monotonic()
        reached: bool | None = None
        try:
            result = JOBS[job.name](self.analyzer, self.config)
            ok, reached = True, True
        except StoreError as exc:
            result, ok, reached = None, False, not exc.unreachable
            log.warning("analysis=%s failed: %s", job.name, exc)
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
            job.duration = time.monotonic() - started
            job.last_ok = ok
            job.runs += 1
            if ok:
                job.result = result
                job.last_success = time.time()
            else:
                job.errors += 1
            if reached is not None:
                self._db_contact = (time.monotonic(), reached)
                self.ever_reached_database |= reached
            job.future = None

    def snapshot(self) -> list[JobState]:
        with self._lock:
            return [
                JobState(**{k: v for k, v in vars(j).items() if k != "future"})
                for j in self.jobs.values()
            ]

    def close(self, wait_for_runs: bool = True) -> None:
        self._executor.shutdown(wait=wait_for_runs, cancel_futures=True)


class PerfAnalyzerCollector:
    """A prometheus_client collector over a Scheduler; builds fresh families every scrape
    (no long-lived Gauge objects: a node that disappears disappears from the output)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.config = scheduler.config
        self._samples = SampleCache(self.config)
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        return []  # registering must not run the analyses

    def collect(self, deadline: float | None = None) -> Iterator[Metric]:
        if deadline is None:
            deadline = time.monotonic() + self.config.exporter.scrape_timeout_seconds
        try:
            self.scheduler.refresh(deadline)
        except Exception:  # never raise out of collect(): serve what we have
            log.exception("refreshing the analyses failed")
        jobs = self.scheduler.snapshot()
        samples = self._self_samples(jobs)
        try:
            results = {j.name: j.result for j in jobs}
            with self._lock:  # concurrent scrapes share one cache
                analysis = self._samples.samples(results)
            kept, dropped = apply_budget(analysis, self.config.exporter.max_series)
        except Exception:
            log.exception("building the analysis metrics failed")
            kept, dropped = [], {}
        samples += kept
        samples += [sample("series_dropped", n, kind=kind) for kind, n in dropped.items()]
        yield from families(samples)

    def _self_samples(self, jobs: list[JobState]) -> list[Sample]:
        out = [
            sample("database_up", 1 if self.scheduler.database_up else 0),
            sample("build_info", 1, version=__version__),
        ]
        for j in jobs:
            out.append(sample("analysis_refresh_interval_seconds", j.interval, analysis=j.name))
            out.append(sample("analysis_errors_total", j.errors, analysis=j.name))
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
        return out
