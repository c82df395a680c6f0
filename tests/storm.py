"""A scrape storm against `perf-analyzer serve` in its own process: many concurrent scrapers
for a while, then the exporter's RSS, threads and database connections before and after.
Shared by tests/test_storm.py (a short storm) and bench/storm.py (the long one)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence

import psycopg

from exporter.embedded import free_port


@contextlib.contextmanager
def serve(
    dsn: str, log_level: str = "warn", args: Sequence[str] = ()
) -> Iterator[tuple[subprocess.Popen, str]]:
    """`perf-analyzer serve [args]` in its own process, listening: (process, metrics URL); it
    is terminated on exit."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter.cli", "serve", "--dsn", dsn, *args,
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
