"""Memory of the worker process (issue 16): its analyses run once each, in the order the
exporter serves them, through the worker's own entry points (`_worker_start`, `_worker_run`:
same allocator settings, incremental state, rendering and trim), on a persistent fleet
(`$PERF_ANALYZER_BENCH_DATA/fleet-NxD`, a copy: the data directory is started here).

After each run it prints the process's RSS and peak (VmRSS, VmHWM), the bytes of numpy
arrays kept between runs (the rollups' stored arrays, each analysis's incremental state)
and, with `--trace`, tracemalloc's peak during the run and the lines holding most after it.

    python bench/worker_memory.py --nodes 200 [--rounds 2] [--trace]
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import time
import tracemalloc
from typing import Any

import numpy as np
import psycopg
from common import BENCH_DATA

from exporter import collector, registry
from exporter.config import Config
from exporter.embedded import EmbeddedPostgres
from exporter.store import APPLICATION_NAME

TABLE = "monitor_samples_ring"
MIB = 2**20


def status(field: str) -> float:
    """A VmRSS / VmHWM figure of this process, in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    """Start VmHWM again from the current RSS (Linux: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def array_bytes(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of the numpy arrays reachable from `obj` through containers and attributes
    (each array's own buffer counted once)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        base = obj if obj.base is None else obj.base
        if isinstance(base, np.ndarray) and base is not obj:
            return array_bytes(base, seen)
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(array_bytes(v, seen) for v in obj.values())
    if isinstance(obj, list | tuple | set | frozenset):
        return sum(array_bytes(v, seen) for v in obj)
    fields = getattr(obj, "__dict__", None)
    if fields is None and hasattr(obj, "__slots__"):
        fields = {s: getattr(obj, s, None) for s in obj.__slots__}
    if fields is None or isinstance(obj, type):
        return 0
    return sum(array_bytes(v, seen) for v in fields.values())


def rollup_bytes() -> int:
    assert collector._worker is not None
    rollups = collector._worker.ctx.caches.get("rollups")
    if rollups is None:
        return 0
    return array_bytes(rollups._kinds)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=200)
    p.add_argument("--days", type=float, default=30)
    p.add_argument("--rounds", type=int, default=2, help="runs of every analysis (1: cold)")
    p.add_argument("--trace", action="store_true", help="tracemalloc (slower)")
    args = p.parse_args()
    data = BENCH_DATA / f"fleet-{args.nodes}x{args.days:g}" / "data"
    if not data.is_dir():
        print(f"no fleet at {data}: copy one there first (see bench/steady.py)")
        return 2
    names = [a.name for a in registry.served() if a.name in collector.WORKER_ANALYSES]
    with EmbeddedPostgres(data, settings={"shared_buffers": "512MB"}) as pg:
        with psycopg.connect(pg.dsn) as conn:
            row = conn.execute(f"SELECT max(sample_time) FROM {TABLE}").fetchone()
        now = int(row[0]) if row and row[0] else int(time.time())
        spec = collector.WorkerSpec(
            dsn=pg.dsn,
            table=TABLE,
            shard=None,
            statement_timeout=600.0,
            connect_timeout=5.0,
            application_name=APPLICATION_NAME,
            cpu_count=None,
            config=Config(),
            log_level=logging.WARNING,
        )
        print(f"before start: RSS {status('VmRSS'):.0f} MiB", flush=True)
        collector._worker_start(spec)
        print(f"worker started: RSS {status('VmRSS'):.0f} MiB", flush=True)
        print("\n| round | analysis | s | RSS after, MiB | peak during, MiB | rollups, MiB "
              "| state, MiB | traced peak, MiB |")  # fmt: skip
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for round_ in range(1, args.rounds + 1):
            for name in names:
                reset_peak()
                if args.trace:
                    tracemalloc.start()
                t0 = time.perf_counter()
                out = collector._worker_run(name, None, now)
                seconds = time.perf_counter() - t0
                del out  # pickled and sent away in the worker
                gc.collect()
                traced = ""
                if args.trace:
                    traced = f"{tracemalloc.get_traced_memory()[1] / MIB:.0f}"
                    top = tracemalloc.take_snapshot().statistics("lineno")[:5]
                    tracemalloc.stop()
                state = collector._worker_states.get(name)
                print(
                    f"| {round_} | {name} | {seconds:.1f} | {status('VmRSS'):.0f} "
                    f"| {status('VmHWM'):.0f} | {rollup_bytes() / MIB:.1f} "
                    f"| {array_bytes(state) / MIB:.1f} | {traced} |",
                    flush=True,
                )
                for stat in top if args.trace else ():
                    print(f"  held: {stat.size / MIB:7.1f} MiB  {stat.traceback}", flush=True)
                now += 60
    return 0


if __name__ == "__main__":
    sys.exit(main())
