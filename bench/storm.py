"""A scrape storm against `perf-analyzer serve`: many concurrent scrapers for a while, then
the exporter's RSS, threads and database connections before and after.

    python bench/storm.py --seconds 600 --scrapers 50 [--nodes 14 --days 2]
"""

from __future__ import annotations

import argparse

from common import database, load, machine

from exporter.simulate import FleetSpec
from exporter.store import Store
from tests.storm import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=14)
    parser.add_argument("--days", type=float, default=2)
    parser.add_argument("--scrapers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--dsn", default=None)
    args = parser.parse_args()
    print(f"machine: {machine()}; fleet {args.nodes} nodes x {args.days:g} days")
    with database(args.dsn) as dsn:
        if not args.dsn:
            with Store(dsn) as store:
                load(store, FleetSpec(nodes=args.nodes, days=args.days))
        r = run(dsn, args.scrapers, args.seconds)
    print(
        f"{r['scrapes']:,} scrapes ({r['failed']} failed) by {args.scrapers} scrapers in "
        f"{args.seconds:g} s"
    )
    print(
        f"RSS {r['rss_mib_before']:.0f} -> {r['rss_mib_after']:.0f} MiB; threads "
        f"{r['threads_before']:.0f} -> {r['threads_after']:.0f}; database connections "
        f"{r['connections_before']:.0f} -> {r['connections_after']:.0f} "
        f"(at most {r['max_connections']} seen during the storm)"
    )
    print(
        "RSS during the storm (s: MiB):",
        ", ".join(f"{t:.0f}: {m:.0f}" for t, m, *_ in r["samples"]),
    )


if __name__ == "__main__":
    main()
