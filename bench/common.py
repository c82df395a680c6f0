"""Shared bits of the benchmark scripts: a database to work in and a fleet loaded into it."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for tests.*

from exporter.embedded import EmbeddedPostgres
from exporter.schema import COLUMN_NAMES, init_table
from exporter.simulate import FleetSpec, simulate
from exporter.store import Store
from tests.storm import serve

# Persistent benchmark fleets (generated once, reused): PERF_ANALYZER_BENCH_DATA, else a
# cache directory in the home directory.
BENCH_DATA = Path(
    os.environ.get("PERF_ANALYZER_BENCH_DATA") or Path.home() / ".cache" / "perf-analyzer-bench"
)

__all__ = ["database", "load", "machine", "serve"]


@contextlib.contextmanager
def database(dsn: str | None) -> Iterator[str]:
    """The given DSN, or a temporary embedded PostgreSQL with its default (durable) settings."""
    if dsn:
        yield dsn
        return
    with EmbeddedPostgres(settings={"shared_buffers": "512MB", "max_wal_size": "4GB"}) as pg:
        yield pg.dsn


def machine() -> str:
    cpus = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.processor() or platform.machine()}, {cpus} cores, {mem:.0f} GiB"


def load(store: Store, spec: FleetSpec, *, indexes: str = "after") -> dict[str, float]:
    """Generate and COPY a fleet; returns rows, seconds and rows/s of each stage.

    `indexes`: "before" (COPY into an indexed table), "after" (what `synth` does: COPY,
    then build the indexes) or "none"."""
    fleet = simulate(spec)
    t0 = time.perf_counter()
    rows = sum(n for _, n in fleet.copy_chunks())
    generate_s = time.perf_counter() - t0
    init_table(store, indexes=indexes == "before")
    t0 = time.perf_counter()
    store.copy_in(COLUMN_NAMES, fleet.copy_chunks())
    copy_s = time.perf_counter() - t0
    if indexes == "after":
        init_table(store)
    total_s = time.perf_counter() - t0
    return {
        "rows": rows,
        "generate_s": generate_s,
        "generate_rows_s": rows / generate_s,
        "copy_s": copy_s,
        "total_s": total_s,
        "rows_s": rows / total_s,
        "end": fleet.end,
    }
