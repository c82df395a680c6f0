"""perf-analyzer: SRE performance analysis over a PostgreSQL samples table, served to Prometheus."""

__version__ = "0.1.0"

from .analyzer import PerformanceAnalyzer

__all__ = ["PerformanceAnalyzer", "__version__"]
