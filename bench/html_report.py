"""How long `report NAME --format html` takes and how big the page is, on a fleet already in
a table (e.g. `perf-analyzer synth --nodes 50 --days 30`): the analysis and the page are
timed apart, since only the page is this package's work.

    python bench/html_report.py --dsn postgresql://... --at 1790000040 daily weekly capacity
"""

from __future__ import annotations

import argparse
import time

from exporter.analyzer import PerformanceAnalyzer
from exporter.html import render_report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--at", type=int, required=True)
    parser.add_argument("reports", nargs="+")
    args = parser.parse_args()
    with PerformanceAnalyzer(args.dsn) as analyzer:
        for name in args.reports:
            t0 = time.perf_counter()
            result = analyzer.run(name, now=args.at)
            t1 = time.perf_counter()
            page = render_report(name, result, analyzer.ctx, args.at)
            t2 = time.perf_counter()
            charts = page.count('<figure class="chart"')
            print(
                f"{name}: analysis {t1 - t0:.2f} s, page {t2 - t1:.2f} s "
                f"(total {t2 - t0:.2f} s), {len(page.encode()) / 1e6:.2f} MB, {charts} charts"
            )


if __name__ == "__main__":
    main()
