"""How long `report NAME --format html` takes and how big the page is, on a 50-node, 30-day
fleet kept in $PERF_ANALYZER_BENCH_DATA (loaded on first use), or on a fleet already in a table
(`--dsn`). The analysis and the page are timed apart.

`--before REV` also runs the same reports with the code of git revision REV, in the same
run, one after the other on the same database, prints both side by side and says whether
each report's JSON is the same (it must be: speed-ups may not change results).

    python bench/html_report.py --before HEAD~3 daily weekly capacity anomalies availability
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NODES, DAYS, END = 50, 30, 1790000040
TABLE = "monitor_samples_ring"


def data_dir() -> Path:
    sys.path.insert(0, str(HERE))
    from common import BENCH_DATA

    return BENCH_DATA / "html-50x30" / "data"


@contextlib.contextmanager
def fleet() -> Iterator[str]:
    """The 50-node month's PostgreSQL, started; loaded on first use only."""
    sys.path.insert(0, str(HERE))
    from common import load

    from exporter.embedded import EmbeddedPostgres
    from exporter.simulate import FleetSpec
    from exporter.store import Store

    data = data_dir()
    pg = EmbeddedPostgres(data, settings={"shared_buffers": "512MB", "max_wal_size": "4GB"})
    pg.start()
    try:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()
        if not (row and row[0]):
            print(f"loading {NODES} nodes x {DAYS} days into {data}", flush=True)
            with Store(pg.dsn) as store:
                done = load(store, FleetSpec(nodes=NODES, days=DAYS, end=END))
            print(f"loaded {done['rows']:,} rows in {done['total_s']:.0f} s", flush=True)
            with psycopg.connect(pg.dsn, autocommit=True) as conn:
                conn.execute(f"VACUUM ANALYZE {TABLE}")
        yield pg.dsn
    finally:
        pg.stop()


TICK = os.sysconf("SC_CLK_TCK")


def server_cpu() -> float:
    """CPU seconds used so far by the kept fleet's PostgreSQL processes (0 when it is not
    running): with this process's own, the work of a report whatever the machine's load,
    which the wall times are not."""
    try:
        postmaster = int(Path(data_dir(), "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster or int(stat.parent.name) == postmaster:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def measure(dsn: str, at: int, names: list[str], out: Path | None) -> None:
    """One JSON line per report: times, size, charts (and the result into `out`)."""
    from exporter.analyzer import PerformanceAnalyzer
    from exporter.html import render_report

    with PerformanceAnalyzer(dsn) as analyzer:
        for name in names:
            c0, s0 = time.process_time(), server_cpu()
            t0 = time.perf_counter()
            result = analyzer.run(name, now=at)
            t1 = time.perf_counter()
            page = render_report(name, result, analyzer.ctx, at)
            t2 = time.perf_counter()
            cpu = time.process_time() - c0 + server_cpu() - s0
            if out:
                (out / f"{name}.json").write_text(json.dumps(result, sort_keys=True, default=str))
            line = {
                "report": name,
                "analysis": t1 - t0,
                "page": t2 - t1,
                "cpu": cpu,
                "mb": len(page.encode()) / 1e6,
                "charts": page.count('<figure class="chart"'),
            }
            print(json.dumps(line), flush=True)


def run_code(code: Path, dsn: str, at: int, names: list[str], out: Path) -> dict[str, dict]:
    """`measure` with the package at `code`, in its own process."""
    cmd = [sys.executable, str(HERE / "html_report.py"), "--measure", "--dsn", dsn,
           "--at", str(at), "--json-out", str(out), *names]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, cwd=code)
    print(f"{code}:\n{done.stdout}", flush=True)
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    return {x["report"]: x for x in lines}


def compare(dsn: str, at: int, names: list[str], before: str, new_first: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        old, old_out, new_out = Path(tmp, "old"), Path(tmp, "old-json"), Path(tmp, "new-json")
        for d in (old, old_out, new_out):
            d.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", before], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        if new_first:  # the first side may find a colder cache
            b = run_code(ROOT, dsn, at, names, new_out)
            a = run_code(old, dsn, at, names, old_out)
        else:
            a = run_code(old, dsn, at, names, old_out)
            b = run_code(ROOT, dsn, at, names, new_out)
        same = {
            name: Path(old_out, f"{name}.json").read_text()
            == Path(new_out, f"{name}.json").read_text()
            for name in names
        }
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"| report | analysis {before} | page | total | CPU | analysis now | page | total | CPU "
          "| size | charts | JSON |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        x, y = a[name], b[name]
        print(
            f"| {name} | {x['analysis']:.1f} s | {x['page']:.1f} s | "
            f"{x['analysis'] + x['page']:.1f} s | {x['cpu']:.1f} s | "
            f"{y['analysis']:.1f} s | {y['page']:.1f} s | "
            f"{y['analysis'] + y['page']:.1f} s | {y['cpu']:.1f} s | "
            f"{x['mb']:.2f} → {y['mb']:.2f} MB | "
            f"{x['charts']} → {y['charts']} | {'same' if same[name] else 'DIFFERS'} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", help="a fleet already in a table (default: the kept 50x30)")
    parser.add_argument("--at", type=int, default=END)
    parser.add_argument("--before", help="also run git revision BEFORE, side by side")
    parser.add_argument("--new-first", action="store_true", help="run this checkout first")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("reports", nargs="+")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        dsn = args.dsn or stack.enter_context(fleet())
        if args.before:
            compare(dsn, args.at, args.reports, args.before, args.new_first)
        else:
            measure(dsn, args.at, args.reports, args.json_out)


if __name__ == "__main__":
    main()
