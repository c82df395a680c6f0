"""perf-analyzer: SRE performance analysis over a PostgreSQL samples table, served to Prometheus."""

__version__ = "0.1.0"
