"""A scrape storm against `perf-analyzer serve`: many concurrent scrapers for a while, then
the exporter's RSS, threads and database connections before and after.

    python bench/storm.py --seconds 600 --scrapers 50 [--nodes 14 --days 2]
"""

from __future__ import annotations

import argparse
import threading
import time
import urllib.request

import psycopg
from common import database, load, machine, serve

from exporter.simulate import FleetSpec
from exporter.store import Store


def process_status(pid: int) -> dict[str, float]:
    fields = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            fields[key] = rest.split()[0] if rest.split() else ""
    return {"rss_mib": int(fields["VmRSS"]) / 1024, "threads": int(fields["Threads"])}


def connections(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'perf-analyzer'"
            " AND datname = current_database()"
        ).fetchone()[0]


def watch(pid: int, dsn: str, every: float, stop: threading.Event, out: list) -> None:
    """(seconds since start, RSS MiB, threads, exporter connections) every `every` s."""
    t0 = time.monotonic()
    while not stop.wait(every):
        status = process_status(pid)
        out.append((time.monotonic() - t0, status["rss_mib"], status["threads"], connections(dsn)))


def storm(url: str, scrapers: int, seconds: float) -> tuple[int, int]:
    done, failed = [0], [0]
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def scrape() -> None:
        while time.monotonic() < stop:
            try:
                with urllib.request.urlopen(url, timeout=30) as r:
                    r.read()
                with lock:
                    done[0] += 1
            except OSError:
                with lock:
                    failed[0] += 1

    threads = [threading.Thread(target=scrape) for _ in range(scrapers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0], failed[0]


def run(dsn: str, scrapers: int, seconds: float) -> dict[str, float]:
    """Warm the exporter, storm it, and return the figures (also used by the test)."""
    with serve(dsn, "error") as (process, url):
        urllib.request.urlopen(url, timeout=60).read()  # the first scrape waits for results
        storm(url, 4, 10)  # warm: every analysis has run, caches are full
        before = process_status(process.pid) | {"connections": connections(dsn)}
        samples: list[tuple[float, float, int, int]] = []
        stop = threading.Event()
        watcher = threading.Thread(
            target=watch, args=(process.pid, dsn, max(1.0, seconds / 20), stop, samples)
        )
        watcher.start()
        done, failed = storm(url, scrapers, seconds)
        stop.set()
        watcher.join()
        time.sleep(2)
        after = process_status(process.pid) | {"connections": connections(dsn)}
        return {
            "scrapes": done,
            "failed": failed,
            "samples": samples,
            "max_connections": max((c for *_, c in samples), default=0),
            **{f"{k}_before": v for k, v in before.items()},
            **{f"{k}_after": v for k, v in after.items()},
        }


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
