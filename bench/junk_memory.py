"""Memory of one refresh cycle over many junk node names (issue 19's cardinality bomb): each
served analysis run once, in the exporter's order, over `--nodes` junk names of 3 rows each;
prints the process's peak RSS after each analysis and, with `--trace`, the lines that
allocated most (tracemalloc; slower).

    python bench/junk_memory.py [--nodes 20000] [--trace] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc

from common import database

from exporter import PerformanceAnalyzer, registry
from exporter.schema import init_table
from exporter.store import Store
from tests.junk_fleet import load_junk


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=20_000)
    p.add_argument("--trace", action="store_true")
    p.add_argument("--dsn")
    args = p.parse_args()
    now = 1_790_000_040
    with database(args.dsn) as dsn, Store(dsn) as store:
        init_table(store)
        load_junk(store, args.nodes, now)
        print(f"{args.nodes:,} junk nodes loaded; peak RSS {peak_mib():.0f} MiB", flush=True)
        if args.trace:
            tracemalloc.start(8)
        with PerformanceAnalyzer(store) as a:
            for unit in registry.ANALYSES:
                if unit.serve is None:
                    continue
                before = tracemalloc.take_snapshot() if args.trace else None
                t = time.perf_counter()
                a.run(unit.name, now=now)
                took = time.perf_counter() - t
                print(f"{unit.name:14} {took:6.1f} s  peak RSS {peak_mib():6.0f} MiB", flush=True)
                if before is not None:
                    top = tracemalloc.take_snapshot().compare_to(before, "lineno")[:3]
                    for stat in top:
                        print(f"    {stat}")
                    print(f"    traced peak {tracemalloc.get_traced_memory()[1] / 2**20:.0f} MiB")
                    tracemalloc.reset_peak()
    return 0


if __name__ == "__main__":
    sys.exit(main())
