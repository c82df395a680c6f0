"""Shared bits of the benchmark scripts: a database to work in and a fleet loaded into it."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

from exporter.embedded import EmbeddedPostgres, free_port
from exporter.schema import COLUMN_NAMES, init_table
from exporter.simulate import FleetSpec, simulate
from exporter.store import Store


@contextlib.contextmanager
def database(dsn: str | None) -> Iterator[str]:
    """The given DSN, or a temporary embedded PostgreSQL with its default (durable) settings."""
    if dsn:
        yield dsn
        return
    with EmbeddedPostgres(settings={"shared_buffers": "512MB", "max_wal_size": "4GB"}) as pg:
        yield pg.dsn


@contextlib.contextmanager
def serve(dsn: str, log_level: str = "warn") -> Iterator[tuple[subprocess.Popen, str]]:
    """`perf-analyzer serve` in its own process, listening: (process, metrics URL); it is
    terminated on exit."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter.cli", "serve", "--dsn", dsn,
         "--web.listen-address", f"127.0.0.1:{port}", "--log.level", log_level],
    )  # fmt: skip
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/-/healthy", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        yield process, f"http://127.0.0.1:{port}/metrics"
    finally:
        process.terminate()
        process.wait(30)


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
