"""The fleet benchmark: for one fleet size, in one run and side by side,

- the simulator's COPY rate (generate, COPY, build the indexes);
- the floor of any 30-day analysis without rollups: one aggregate pass over the window
  (`SELECT node_name, count(*), avg(..), max(..) ... GROUP BY node_name`), and the naive
  approach, pulling the window's raw rows into Python (streamed, so a big fleet fits);
- every analysis cold (a new analyzer, empty rollups) and warm (the same analyzer again,
  nothing new to read), as a ratio to the pass;
- the exporter as Prometheus sees it: warm scrape p50/p99 with 4 concurrent scrapers,
  plain and gzip, and its RSS.

Figures go to bench/results/fleet-<nodes>.json; bench/RESULTS.md is rewritten from every
size measured so far.

    python bench/fleet.py --nodes 50 --days 30 [--dsn DSN]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

import psycopg
from analyses import METHODS, timed, window_pass
from common import database, load, machine
from scrape import serve_and_scrape

from exporter import PerformanceAnalyzer
from exporter.simulate import FleetSpec
from exporter.store import Store

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def naive_pull(dsn: str, start: int) -> float:
    """Seconds to bring every raw row of the window into Python, a batch at a time."""
    with psycopg.connect(dsn) as conn, conn.cursor(name="naive") as cur:
        cur.itersize = 50_000
        t0 = time.perf_counter()
        cur.execute("SELECT * FROM monitor_samples_ring WHERE sample_time > %s", (start,))
        for _ in cur:
            pass
        return time.perf_counter() - t0


def measure(
    dsn: str, nodes: int, days: float, scrapers: int, *, scrape_only: bool = False
) -> dict[str, Any]:
    end = int(time.time()) // 60 * 60
    out: dict[str, Any] = {"nodes": nodes, "days": days, "machine": machine()}
    with Store(dsn) as store:
        loaded = load(store, FleetSpec(nodes=nodes, days=days, end=end))
    out["rows"], out["copy_rows_s"] = loaded["rows"], loaded["rows_s"]
    print(f"loaded {loaded['rows']:,} rows at {loaded['rows_s']:,.0f} rows/s", flush=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE monitor_samples_ring")
    # the exporter first, while the fleet's newest samples are still current
    out["scrape"] = serve_and_scrape(dsn, scrapers)
    print(f"scrape: {json.dumps(out['scrape'])}", flush=True)
    if scrape_only:
        return out
    window_pass(dsn, days, end)  # warm the cache the same way for every figure
    out["pass_s"] = min(window_pass(dsn, days, end) for _ in range(3))
    out["naive_s"] = naive_pull(dsn, end - int(days * 86400))
    print(f"pass {out['pass_s']:.2f} s, naive pull {out['naive_s']:.1f} s", flush=True)
    out["analyses"] = {}
    for method, kwargs in METHODS:
        try:
            with PerformanceAnalyzer(dsn) as analyzer:
                run = getattr(analyzer, method)
                cold = timed(run, now=end, **kwargs)
                warm = min(timed(run, now=end, **kwargs) for _ in range(2))
        except Exception as exc:  # a failure is a figure too: recorded, not fatal
            out["analyses"][method] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{method}: FAILED {exc}", flush=True)
            continue
        out["analyses"][method] = {"cold_s": cold, "warm_s": warm}
        print(f"{method}: cold {cold:.2f} s, warm {warm:.3f} s", flush=True)
    return out


def _p(latency: dict[str, float]) -> str:
    return f"{latency['p50_ms']:.1f} / {latency['p99_ms']:.1f}"


def markdown(results: list[dict[str, Any]]) -> str:
    sizes = [r["nodes"] for r in results]
    head = "| | " + " | ".join(f"{n} nodes" for n in sizes) + " |"
    rule = "|---|" + "---:|" * len(sizes)

    def row(label: str, cell) -> str:
        return f"| {label} | " + " | ".join(cell(r) for r in results) + " |"

    lines = [
        "# Benchmark results",
        "",
        "Written by `python bench/fleet.py --nodes N --days 30` (one run per size; figures of",
        "one run measured side by side). Fleet: N nodes x 2 containers x 30 days of 1-minute",
        f"samples. Machine: {results[0]['machine']}; PostgreSQL (embedded) on the same machine.",
        "Cold = a new analyzer (empty rollups); warm = the same analyzer again (nothing new",
        "to read). Ratios are to one aggregate pass over the window.",
        "",
        head,
        rule,
        row("rows", lambda r: f"{r['rows']:,}"),
        row("COPY (generate, COPY, index), rows/s", lambda r: f"{r['copy_rows_s']:,.0f}"),
        row("one aggregate pass over the window, ms", lambda r: f"{r['pass_s'] * 1000:,.0f}"),
        row(
            "naive raw pull into Python, s (x pass)",
            lambda r: f"{r['naive_s']:.1f} ({r['naive_s'] / r['pass_s']:.0f}x)",
        ),
        row("series per scrape", lambda r: f"{r['scrape']['series']:,}"),
        row("warm scrape p50 / p99, 4 scrapers, ms", lambda r: _p(r["scrape"]["plain"])),
        row("same with gzip, ms", lambda r: _p(r["scrape"]["gzip"])),
        row(
            "exporter RSS after warm-up / peak, MiB",
            lambda r: f"{r['scrape']['rss_mib']:.0f} / {r['scrape']['rss_peak_mib']:.0f}",
        ),
        row("every analysis ready after start, s", lambda r: f"{r['scrape']['warmup_s']:.0f}"),
        "",
        "Each analysis, cold / warm in ms, and (cold / pass, warm / pass):",
        "",
        head,
        rule,
    ]
    for method, _ in METHODS:

        def cell(r, method=method) -> str:
            a = r["analyses"][method]
            if "error" in a:
                return f"failed: {a['error'][:60]}"
            return (
                f"{a['cold_s'] * 1000:,.0f} / {a['warm_s'] * 1000:,.0f} "
                f"({a['cold_s'] / r['pass_s']:.2f} / {a['warm_s'] / r['pass_s']:.2f})"
            )

        lines.append(row(f"`{method}`", cell))
    return "\n".join(lines) + "\n"


def steady_markdown(results: list[dict[str, Any]]) -> str:
    """The steady-state tables: one per fleet size, one column per label of
    `bench/steady.py`."""
    if not results:
        return ""
    lines = [
        "",
        "## Steady state (`python bench/steady.py --nodes N --minutes M --label L`)",
        "",
        "The exporter on a persistent 30-day fleet with a live appender (one row per node",
        "and container per minute), M minutes after every analysis had a result; 4 scrapers",
        "each scraping once a second, alternating plain and gzip, across the whole window",
        "(refreshes included). CPU from /proc/<pid>/stat of the exporter (and its worker",
        "process) and of its PostgreSQL backends; the scrapes' own CPU is included. Labels",
        "name the session (none: the first, `s2`, `s3`). The `s3` runs had the machine to",
        "themselves (load average below 1); the earlier ones shared it with other work, so",
        "their figures carry that noise. The control row (`/-/healthy` once a second, no",
        "metrics work) shows how much.",
    ]
    for nodes in sorted({r["nodes"] for r in results}):
        lines += [
            "",
            f"### {nodes} nodes",
            "",
            *_steady_table([r for r in results if r["nodes"] == nodes]),
        ]
    return "\n".join(lines)


def _steady_table(results: list[dict[str, Any]]) -> list[str]:
    head = "| | " + " | ".join(r.get("label") or "run" for r in results) + " |"
    rule = "|---|" + "---:|" * len(results)

    def row(label: str, cell) -> str:
        return f"| {label} | " + " | ".join(cell(r) for r in results) + " |"

    return [
        head,
        rule,
        row("configuration", lambda r: f"`{r.get('config', '{}')}`"),
        row("steady minutes measured", lambda r: f"{r['steady_minutes']:.1f}"),
        row(
            "CPU s per minute: exporter / backends",
            lambda r: (
                f"{r['cpu_s_per_min']['exporter']:.2f} / {r['cpu_s_per_min']['backends']:.2f}"
            ),
        ),
        row("scrape p50 / p99, plain, ms", lambda r: _p(r["plain"])),
        row("scrape p50 / p99, gzip, ms", lambda r: _p(r["gzip"])),
        row("scrape p50 / p99 during an analysis run, ms", lambda r: _p(r["during_runs"])),
        row("scrape p50 / p99 between runs, ms", lambda r: _p(r["between_runs"])),
        row(
            "control: `/-/healthy` p50 / p99, ms",
            lambda r: _p(r["healthy_control"]) if "healthy_control" in r else "-",
        ),
        row("every analysis has a result after start, s", lambda r: f"{r['warmup_s']:.0f}"),
        row(
            "RSS after warm-up / peak, MiB (all processes)",
            lambda r: f"{r['rss_warm_mib']:.0f} / {r['rss_peak_mib']:.0f}",
        ),
    ]


def _session(label: str) -> int:
    """Labels of later sessions start with "s2", "s3", ...; the first session's have none."""
    match = re.match(r"s(\d+)", label)
    return int(match.group(1)) if match else 1


def write_results() -> None:
    """bench/RESULTS.md from every result file measured so far."""
    every = [json.loads(p.read_text()) for p in RESULTS.glob("fleet-*.json")]
    steady = []
    for path in RESULTS.glob("steady-*.json"):
        label = path.stem.split("-", 2)[2] if path.stem.count("-") >= 2 else ""
        steady.append(json.loads(path.read_text()) | {"label": label})
    # earlier sessions' runs first; within a session "before" runs first
    steady.sort(
        key=lambda r: (r["nodes"], _session(r["label"]), "before" not in r["label"], r["label"])
    )
    text = markdown(sorted(every, key=lambda r: r["nodes"])) + steady_markdown(steady)
    (HERE / "RESULTS.md").write_text(text + ("\n" if steady else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--scrapers", type=int, default=4)
    parser.add_argument("--dsn", default=None, help="an empty database to fill")
    parser.add_argument(
        "--scrape-only",
        action="store_true",
        help="measure the exporter again; keep this size's other figures from its last run",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}; fleet {args.nodes} nodes x 2 containers x {args.days:g} days")
    path = RESULTS / f"fleet-{args.nodes}.json"
    with database(args.dsn) as dsn:
        result = measure(dsn, args.nodes, args.days, args.scrapers, scrape_only=args.scrape_only)
    if args.scrape_only:
        result = json.loads(path.read_text()) | {"scrape": result["scrape"]}
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    write_results()
    print((HERE / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
