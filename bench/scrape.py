"""Scrape latency of a running `perf-analyzer serve` (p50 / p99 with concurrent scrapers,
once warm) and the exporter's peak RSS, on a simulated fleet whose last sample is now.

    python bench/scrape.py --nodes 50 --days 30 [--scrapers 4] [--scrapes 200]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from common import database, load, machine

from exporter.embedded import free_port
from exporter.simulate import FleetSpec
from exporter.store import Store


def rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process, MiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            fields[key] = rest.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def scrape(url: str) -> tuple[float, int]:
    request = urllib.request.Request(url, headers={"X-Prometheus-Scrape-Timeout-Seconds": "10"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        body = response.read()
    return time.perf_counter() - t0, body.count(b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--scrapers", type=int, default=4)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--dsn", default=None, help="a database already holding a live fleet")
    args = parser.parse_args()
    print(f"machine: {machine()}; fleet {args.nodes} nodes x 2 containers x {args.days:g} days")
    with database(args.dsn) as dsn:
        if not args.dsn:
            with Store(dsn) as store:
                loaded = load(store, FleetSpec(nodes=args.nodes, days=args.days))
            print(f"loaded {loaded['rows']:,} rows in {loaded['total_s']:.1f} s")
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter.cli", "serve", "--dsn", dsn,
             "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warn"],
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/-/healthy", timeout=1)
                    break
                except OSError:
                    time.sleep(0.2)
            idle = rss_mib(process.pid)[0]
            t0 = time.perf_counter()
            cold, lines = scrape(url)
            while True:  # until every analysis has run once
                _, lines = scrape(url)
                body = urllib.request.urlopen(url).read()
                if body.count(b"analysis_last_success_timestamp_seconds{") == 9:
                    break
                time.sleep(1)
            warmup = time.perf_counter() - t0
            with ThreadPoolExecutor(args.scrapers) as pool:
                t0 = time.perf_counter()
                timings = [t for t, _ in pool.map(lambda _: scrape(url), range(args.scrapes))]
                wall = time.perf_counter() - t0
            timings.sort()
            p50 = statistics.median(timings)
            p99 = timings[min(len(timings) - 1, int(0.99 * len(timings)))]
            rss, peak = rss_mib(process.pid)
            print(
                f"series per scrape: {lines:,}; first scrape {cold:.2f} s (deadline 9.5 s); "
                f"every analysis done after {warmup:.1f} s"
            )
            print(
                f"{args.scrapes} warm scrapes, {args.scrapers} concurrent: "
                f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
                f"{args.scrapes / wall:.0f} scrapes/s"
            )
            print(f"exporter RSS: {idle:.0f} MiB idle, {rss:.0f} MiB now, {peak:.0f} MiB peak")
        finally:
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
