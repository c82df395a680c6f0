"""The fixed words findings are made of: priorities, SLI grades, forecast statuses and
emergency check names.

They are StrEnums so a member compares and serialises as the plain string the analyses,
reports and metric labels have always used. This module imports nothing from the package,
so any module can use it without an import cycle.
"""

from __future__ import annotations

from enum import StrEnum


class Priority(StrEnum):
    """Severity of a finding, most severe first."""

    P1 = "P1-CRITICAL"
    P2 = "P2-WARNING"
    P3 = "P3-ADVISORY"


class Grade(StrEnum):
    """SLI grade of a node, worst first: the position is the health score (0-4)."""

    CRITICAL = "CRITICAL"
    POOR = "POOR"
    ACCEPTABLE = "ACCEPTABLE"
    GOOD = "GOOD"
    EXCELLENT = "EXCELLENT"
    UNKNOWN = "UNKNOWN"  # too few samples to grade: not good, not bad, and no score

    @property
    def label(self) -> str:
        """The lower-case form metric labels carry."""
        return self.value.lower()

    @property
    def score(self) -> int | None:
        """0 (critical) to 4 (excellent); None for UNKNOWN, which is no point on the scale."""
        if self is Grade.UNKNOWN:
            return None
        return list(Grade).index(self)


class ForecastStatus(StrEnum):
    """Outcome of one capacity forecast."""

    EXHAUSTION = "exhaustion"
    ALREADY_EXHAUSTED = "already_exhausted"
    NO_SIGNIFICANT_TREND = "no_significant_trend"
    DECREASING = "decreasing"
    BEYOND_HORIZON = "beyond_horizon"
    INSUFFICIENT_DATA = "insufficient_data"


class Check(StrEnum):
    """The emergency check's checks, in the order it reports them."""

    CPU = "cpu"
    MEMORY = "memory"
    TEMPERATURE = "temperature"
    LOAD = "load"
    SWAP = "swap"
    IOWAIT = "iowait"
    NETWORK_ERRORS = "network_errors"
    DISK = "disk"
    INODES = "inodes"
    STALE = "stale"
