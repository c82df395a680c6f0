"""PerformanceAnalyzer: the Python API (README, "Library") over the analyses in
`analyses/`, one method per analysis in the registry.

Every method takes `now=` (unix seconds, default the wall clock) and then sees only samples
up to `now`, exactly as it would have at that moment; every method returns plain
JSON-serialisable dicts whose findings carry their evidence.
"""

from __future__ import annotations

from typing import Any

from . import registry
from .analyses.capacity import DefaultAdvice
from .analyses.common import Context, resolve_now
from .config import Config
from .nodenames import folding
from .rollups import HourlyRollups, rollups_of
from .schema import DEFAULT_TABLE
from .store import Store

Result = dict[str, Any]


class PerformanceAnalyzer(DefaultAdvice):
    """SRE analyses of one samples table.

    `connection` is a psycopg 3 connection, a psycopg_pool ConnectionPool, a DSN string, or
    a `Store`. `cpu_count=None` estimates each node's CPU count from its data (see
    `analyses/hosts.py`); an int overrides it for every node. Override
    `_get_cpu_recommendation` or `_get_memory_recommendation` to change capacity advice."""

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
        # the analyses read through `ctx.store`: folding node names there folds them for all
        reads = folding(store) if self.config.nodes.fold_name_variants else store
        self.ctx = Context(store=reads, config=self.config, cpu_count=cpu_count, advice=self)

    @property
    def rollups(self) -> HourlyRollups:
        return rollups_of(self.ctx)

    def run(self, name: str, window: float | None = None, *, now: float | None = None) -> Result:
        """Run the analysis called `name` (see `registry.ANALYSES`) over `window` in its
        unit (hours or days; None: its default)."""
        return registry.run(registry.get(name), self.ctx, window, resolve_now(now))

    # -- emergency & immediate response ---------------------------------------------------

    def emergency_health_check(self, *, now: float | None = None) -> Result:
        return self.run("emergency", now=now)

    def system_availability_check(
        self, hours: float | None = None, *, now: float | None = None
    ) -> Result:
        return self.run("availability", hours, now=now)

    # -- anomalies ------------------------------------------------------------------------

    def detect_anomalies(self, hours: float = 24, *, now: float | None = None) -> Result:
        return self.run("anomalies", hours, now=now)

    def resource_contention_analysis(self, hours: float = 1, *, now: float | None = None) -> Result:
        return self.run("contention", hours, now=now)

    def correlation_analysis(self, hours: float = 24, *, now: float | None = None) -> Result:
        return self.run("correlation", hours, now=now)

    # -- capacity -------------------------------------------------------------------------

    def capacity_planning_analysis(self, days: float = 30, *, now: float | None = None) -> Result:
        return self.run("capacity", days, now=now)

    def workload_pattern_analysis(self, days: float = 7, *, now: float | None = None) -> Result:
        return self.run("patterns", days, now=now)

    # -- reports --------------------------------------------------------------------------

    def daily_health_report(self, *, now: float | None = None) -> Result:
        return self.run("daily", now=now)

    def weekly_performance_summary(self, *, now: float | None = None) -> Result:
        return self.run("weekly", now=now)

    def generate_alert_config(self, *, now: float | None = None) -> Result:
        return self.run("alert-config", now=now)

    def export_metrics_summary(self, hours: float = 1, *, now: float | None = None) -> Result:
        return self.run("summary", hours, now=now)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> PerformanceAnalyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
