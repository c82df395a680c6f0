"""Scrape latency of a running `perf-analyzer serve` (p50 / p99 with concurrent scrapers,
once warm, plain and gzip) and the exporter's RSS, on a simulated fleet whose last sample
is now.

    python bench/scrape.py --nodes 50 --days 30 [--scrapers 4] [--scrapes 400]
"""

from __future__ import annotations

import argparse
import statistics
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common import database, load, machine, serve

from exporter import registry
from exporter.simulate import FleetSpec
from exporter.store import Store

JOBS = len(registry.served())  # analyses the exporter runs


def rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process, MiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            fields[key] = rest.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def scrape(url: str, headers: dict[str, str] | None = None) -> tuple[float, bytes]:
    request = urllib.request.Request(
        url, headers={"X-Prometheus-Scrape-Timeout-Seconds": "10", **(headers or {})}
    )
    t0 = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        body = response.read()
    return time.perf_counter() - t0, body


def latency(url: str, scrapers: int, scrapes: int, headers: dict[str, str]) -> dict[str, float]:
    with ThreadPoolExecutor(scrapers) as pool:
        t0 = time.perf_counter()
        timings = sorted(t for t, _ in pool.map(lambda _: scrape(url, headers), range(scrapes)))
        wall = time.perf_counter() - t0
    return {
        "p50_ms": statistics.median(timings) * 1000,
        "p99_ms": timings[min(len(timings) - 1, int(0.99 * len(timings)))] * 1000,
        "per_s": scrapes / wall,
    }


def serve_and_scrape(dsn: str, scrapers: int = 4, scrapes: int = 400) -> dict[str, Any]:
    """Start `serve`, wait until every analysis has a result, then measure warm scrapes."""
    with serve(dsn) as (process, url):
        idle = rss_mib(process.pid)[0]
        prometheus = {"Accept": "application/openmetrics-text;version=1.0.0"}
        t0 = time.perf_counter()
        cold, body = scrape(url, prometheus)
        while body.count(b"analysis_last_success_timestamp_seconds{") < JOBS:
            time.sleep(1)
            body = scrape(url, prometheus)[1]
        warmup = time.perf_counter() - t0
        plain = latency(url, scrapers, scrapes, prometheus)
        gzipped = latency(url, scrapers, scrapes, {**prometheus, "Accept-Encoding": "gzip"})
        rss, peak = rss_mib(process.pid)
        return {
            "series": body.count(b"\n") - body.count(b"\n#"),
            "bytes": len(body),
            "first_scrape_s": cold,
            "warmup_s": warmup,
            "plain": plain,
            "gzip": gzipped,
            "rss_idle_mib": idle,
            "rss_mib": rss,
            "rss_peak_mib": peak,
        }


def report(r: dict[str, Any], scrapers: int) -> str:
    return (
        f"series per scrape: {r['series']:,} ({r['bytes'] / 1e6:.1f} MB); first scrape "
        f"{r['first_scrape_s']:.2f} s; every analysis done after {r['warmup_s']:.1f} s\n"
        f"warm, {scrapers} concurrent scrapers: p50 {r['plain']['p50_ms']:.1f} ms, "
        f"p99 {r['plain']['p99_ms']:.1f} ms ({r['plain']['per_s']:.0f}/s); with gzip: "
        f"p50 {r['gzip']['p50_ms']:.1f} ms, p99 {r['gzip']['p99_ms']:.1f} ms\n"
        f"exporter RSS: {r['rss_idle_mib']:.0f} MiB idle, {r['rss_mib']:.0f} MiB now, "
        f"{r['rss_peak_mib']:.0f} MiB peak"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--scrapers", type=int, default=4)
    parser.add_argument("--scrapes", type=int, default=400)
    parser.add_argument("--dsn", default=None, help="a database already holding a live fleet")
    args = parser.parse_args()
    print(f"machine: {machine()}; fleet {args.nodes} nodes x 2 containers x {args.days:g} days")
    with database(args.dsn) as dsn:
        if not args.dsn:
            with Store(dsn) as store:
                loaded = load(store, FleetSpec(nodes=args.nodes, days=args.days))
            print(f"loaded {loaded['rows']:,} rows in {loaded['total_s']:.1f} s")
        print(report(serve_and_scrape(dsn, args.scrapers, args.scrapes), args.scrapers))


if __name__ == "__main__":
    main()
