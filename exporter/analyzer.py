"""PerformanceAnalyzer: the original library's API over the analyses in `analyses/`.

Every method takes `now=` (unix seconds, default the wall clock) and then sees only samples
up to `now`, exactly as it would have at that moment; every method returns plain
JSON-serialisable dicts whose findings carry their evidence.
"""

from __future__ import annotations

from typing import Any

from .analyses import anomalies as anomaly_detection
from .analyses import (
    capacity,
    contention,
    correlation,
    emergency,
    patterns,
    reports,
    sli,
    summary,
    thresholds,
)
from .analyses.common import Context, resolve_now
from .config import Config
from .rollups import HourlyRollups
from .schema import DEFAULT_TABLE
from .store import Store

Result = dict[str, Any]


class PerformanceAnalyzer:
    """SRE analyses of one samples table.

    `connection` is a psycopg 3 connection, a psycopg_pool ConnectionPool, a DSN string, or
    a `Store`. `cpu_count=None` estimates each node's CPU count from its data (see
    `analyses/hosts.py`); an int overrides it for every node."""

    def __init__(
        self,
        connection: Any = None,
        table_name: str = DEFAULT_TABLE,
        cpu_count: int | None = None,
        *,
        config: Config | None = None,
    ) -> None:
        if cpu_count is not None and (not isinstance(cpu_count, int) or cpu_count < 1):
            raise ValueError(f"cpu_count must be a positive int or None, got {cpu_count!r}")
        store = connection if isinstance(connection, Store) else Store(connection, table_name)
        self.store = store
        self.config = config or Config()
        self.ctx = Context(store=store, config=self.config, cpu_count=cpu_count)
        self.rollups = self.ctx.cache(
            "rollups", lambda: HourlyRollups(store, max_days=_rollup_days(self.config))
        )

    # -- emergency & immediate response ---------------------------------------------------

    def emergency_health_check(self, *, now: float | None = None) -> Result:
        return emergency.emergency_health_check(self.ctx, now=resolve_now(now))

    def system_availability_check(
        self, hours: float | None = None, *, now: float | None = None
    ) -> Result:
        hours = self.config.sli.window_hours if hours is None else hours
        return sli.system_availability_check(self.ctx, hours=hours, now=resolve_now(now))

    # -- anomalies ------------------------------------------------------------------------

    def detect_anomalies(self, hours: float = 24, *, now: float | None = None) -> Result:
        return anomaly_detection.detect_anomalies(self.ctx, hours=hours, now=resolve_now(now))

    def resource_contention_analysis(self, hours: float = 1, *, now: float | None = None) -> Result:
        return contention.resource_contention_analysis(self.ctx, hours=hours, now=resolve_now(now))

    def correlation_analysis(self, hours: float = 24, *, now: float | None = None) -> Result:
        return correlation.correlation_analysis(self.ctx, hours=hours, now=resolve_now(now))

    # -- capacity -------------------------------------------------------------------------

    def capacity_planning_analysis(self, days: float = 30, *, now: float | None = None) -> Result:
        return capacity.capacity_planning_analysis(
            self.ctx,
            days=days,
            now=resolve_now(now),
            cpu_recommendation=self._get_cpu_recommendation,
            memory_recommendation=self._get_memory_recommendation,
        )

    def workload_pattern_analysis(self, days: float = 7, *, now: float | None = None) -> Result:
        return patterns.workload_pattern_analysis(self.ctx, days=days, now=resolve_now(now))

    # -- reports --------------------------------------------------------------------------

    def daily_health_report(self, *, now: float | None = None) -> Result:
        return reports.daily_health_report(self, now=resolve_now(now))

    def weekly_performance_summary(self, *, now: float | None = None) -> Result:
        return reports.weekly_performance_summary(self, now=resolve_now(now))

    def generate_alert_config(self, *, now: float | None = None) -> Result:
        return thresholds.generate_alert_config(self.ctx, now=resolve_now(now))

    def export_metrics_summary(self, hours: float = 1, *, now: float | None = None) -> Result:
        return summary.export_metrics_summary(self.ctx, hours=hours, now=resolve_now(now))

    # -- overridable advice (as in the original README) ----------------------------------

    def _get_cpu_recommendation(self, current_avg: float, trend: float) -> str:
        """Advice for a node's CPU given its daily peak (percent) and trend (points/day)."""
        if current_avg >= 90:
            return "Scale now: CPU peaks are at saturation"
        if current_avg >= 70 and trend > 0:
            return "Plan scaling: high usage with an increasing trend"
        if trend > 0.5:
            return "Watch: CPU peaks are growing"
        if current_avg < 20 and trend <= 0:
            return "Consider downsizing: CPU is mostly idle"
        return "No action: CPU headroom is sufficient"

    def _get_memory_recommendation(self, current_avg: float, trend: float) -> str:
        """Advice for a node's memory given its daily peak use (percent) and trend (points/day)."""
        if current_avg >= 90:
            return "Act now: memory is nearly exhausted; add memory or find the consumer"
        if trend > 0 and current_avg >= 70:
            return "Plan more memory: high usage with an increasing trend (leak?)"
        if trend > 0.5:
            return "Investigate: memory use grows steadily (possible leak)"
        return "No action: memory headroom is sufficient"

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> PerformanceAnalyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rollup_days(config: Config) -> float:
    """Rollups keep the longest history any analysis reads, plus a day."""
    return (
        max(
            config.anomalies.history_days,
            config.capacity.days,
            config.patterns.days,
            config.alerts.history_days,
            14,  # weekly summary: this week and the one before
        )
        + 1
    )
