"""COPY rate of the simulated fleet: into a table without indexes, the way `synth` loads a
new table (COPY, then build the indexes), and into a table that already has them.

    python bench/copy_rate.py --nodes 50 --days 30 [--dsn DSN]
"""

from __future__ import annotations

import argparse

from common import database, load, machine

from exporter.simulate import FleetSpec
from exporter.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--containers", type=int, default=2)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--dsn", default=None)
    args = parser.parse_args()
    spec = FleetSpec(
        nodes=args.nodes, containers=args.containers, days=args.days, end=1_790_000_000
    )
    print(f"machine: {machine()}")
    print(f"fleet: {args.nodes} nodes x {args.containers} containers x {args.days:g} days")
    with database(args.dsn) as dsn:
        print("| indexes | rows | generate only (rows/s) | generate + COPY + index (s) | rows/s |")
        print("|---|---:|---:|---:|---:|")
        for indexes in ("none", "after", "before"):
            with Store(dsn, f"bench_{indexes}") as store:
                r = load(store, spec, indexes=indexes)
            print(
                f"| {indexes} | {r['rows']:,} | {r['generate_rows_s']:,.0f} | "
                f"{r['total_s']:.1f} | {r['rows_s']:,.0f} |"
            )


if __name__ == "__main__":
    main()
