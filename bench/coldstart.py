"""The rollups' cold read on a persistent fleet: EXPLAIN ANALYZE of one day's aggregation
query, and the CPU seconds (this process and its PostgreSQL backends) and wall time of
reading the whole history of both kinds, newest day first, as the worker's first runs do.
With `--first-runs`, instead: the worker's cold sequence on a fresh context, in the
worker's order (the first runs spend `--budget` seconds reading rollups at most, all
together, then the partial ones run again with all of it), with the CPU
seconds (this process and the backends) and wall time at which each result is there, and
the history it read. The analyses whose first run the exporter does itself are left out.

    python bench/coldstart.py --nodes 200 [--days 31] [--label after]
    python bench/coldstart.py --nodes 200 --first-runs [--budget 5] [--label after]

Run it with PYTHONPATH pointing at another tree (say an export of an older commit) to
measure that tree's rollups on the same data. Figures go to
bench/results/coldstart-<nodes>[-<label>].json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import psycopg
from common import BENCH_DATA

from exporter import registry
from exporter.analyzer import PerformanceAnalyzer
from exporter.collector import STARTED_LAST, WARM_IN_PROCESS, WORKER_ANALYSES, _left, _spent
from exporter.embedded import EmbeddedPostgres
from exporter.rollups import FETCH_SECONDS, HourlyRollups, reading
from exporter.store import Store

HERE = Path(__file__).parent
TICK = os.sysconf("SC_CLK_TCK")


class _Explain(Exception):
    pass


class _Spy:
    """A cursor that runs EXPLAIN ANALYZE of the first query it is given, then stops."""

    def __init__(self, cur: Any) -> None:
        object.__setattr__(self, "_cur", cur)
        object.__setattr__(self, "plan", "")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._cur, name, value)

    def execute(self, query: Any, params: Any = None) -> Any:
        if "set_config" in str(query):  # the query's plan settings
            return self._cur.execute(query, params)
        self._cur.execute(psycopg.sql.SQL("EXPLAIN (ANALYZE, BUFFERS, VERBOSE) ") + query, params)
        plan = "\n".join(str(next(iter(r.values())) if isinstance(r, dict) else r[0])
                         for r in self._cur.fetchall())  # fmt: skip
        object.__setattr__(self, "plan", plan)
        raise _Explain


def explain(store: Store, kind: str, start: int) -> str:
    rollups = HourlyRollups(store)
    rollups._probe()
    real = store.read
    spy: list[_Spy] = []

    def read(**kwargs: Any) -> Any:
        import contextlib

        @contextlib.contextmanager
        def wrapped() -> Any:
            with real(**kwargs) as cur:
                spy.append(_Spy(cur))
                yield spy[-1]

        return wrapped()

    store.read = read  # type: ignore[method-assign]
    try:
        rollups._fetch_chunk(kind, start, start + FETCH_SECONDS - 1)
    except _Explain:
        pass
    finally:
        store.read = real  # type: ignore[method-assign]
    return spy[-1].plan


def backend_cpu(postmaster: int) -> float:
    """CPU seconds of the client backends and parallel workers of the postmaster, living
    (by their process title) or reaped (the postmaster's children's times; autovacuum is
    off, so those are parallel workers)."""
    with open(f"/proc/{postmaster}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    total = (int(fields[13]) + int(fields[14])) / TICK
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                title = fh.read().decode(errors="replace")
        except OSError:
            continue
        backend = title.startswith("postgres: postgres ") or "parallel worker" in title
        if int(fields[1]) == postmaster and backend:
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def first_runs(store: Store, postmaster: int, budget: float | None) -> list[dict[str, Any]]:
    """The worker's cold sequence: first runs in the scheduler's order, then the reruns of
    those that answered from part of the history; when each result is there."""
    analyzer = PerformanceAnalyzer(store)
    worker = [a for a in registry.served() if a.name in WORKER_ANALYSES - WARM_IN_PROCESS]
    order = sorted(worker, key=lambda a: a.name in STARTED_LAST)
    states = {a.name: a.incremental() for a in order if a.incremental}
    cpu0, db0, t0 = time.process_time(), backend_cpu(postmaster), time.perf_counter()
    out: list[dict[str, Any]] = []
    todo = [(a, budget) for a in order]
    cold: list[float] = []
    while todo:
        analysis, limit = todo.pop(0)
        window = registry.served_window(analysis, analyzer.ctx.config)
        with reading(_left(limit, cold)) as served:
            registry.run(
                analysis, analyzer.ctx, window, int(time.time()), states.get(analysis.name)
            )
        _spent(served, cold)
        row = {
            "analysis": analysis.name,
            "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - cpu0,
            "backend_cpu_s": backend_cpu(postmaster) - db0,
            "history_days": None if served.history is None else served.history / 86400,
            "partial": served.partial,
        }
        print(row, flush=True)
        out.append(row)
        if served.partial:  # as the worker: the rerun starts from a fresh state
            todo.append((analysis, None))
            if analysis.incremental:
                states[analysis.name] = analysis.incremental()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--days", type=float, default=31, help="of history read")
    parser.add_argument("--label", default="")
    parser.add_argument("--no-explain", action="store_true")
    parser.add_argument("--explain-only", action="store_true")
    parser.add_argument("--explain-age", type=float, default=1, help="days before the end")
    parser.add_argument("--first-runs", action="store_true", help="the worker's cold sequence")
    parser.add_argument("--budget", type=float, default=None, help="seconds; none: no limit")
    args = parser.parse_args()
    pg = EmbeddedPostgres(
        BENCH_DATA / f"fleet-{args.nodes}x30" / "data",
        settings={"shared_buffers": "512MB", "max_wal_size": "4GB", "autovacuum": "off"},
    ).start()
    out: dict[str, Any] = {"nodes": args.nodes, "days": args.days, "load": os.getloadavg()}
    try:
        postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
        with Store(pg.dsn, statement_timeout=600) as store:
            with psycopg.connect(pg.dsn) as conn:
                row = conn.execute("SELECT max(sample_time) FROM monitor_samples_ring").fetchone()
            end = int(row[0]) // 3600 * 3600 if row and row[0] else int(time.time())
            if args.first_runs:
                out["budget_s"] = args.budget
                out["first_runs"] = first_runs(store, postmaster, args.budget)
            elif not args.no_explain:
                for kind in ("node", "container"):
                    plan = explain(store, kind, end - int(args.explain_age * FETCH_SECONDS))
                    out[f"explain_{kind}"] = plan
                    print(plan.splitlines()[-1], f"({kind}, one day)")
            rollups = HourlyRollups(store, max_days=args.days + 1)
            for kind in () if args.explain_only or args.first_runs else ("node", "container"):
                cpu0, db0, t0 = time.process_time(), backend_cpu(postmaster), time.perf_counter()
                rollups.view(kind, end - int(args.days * 86400), end)
                out[kind] = {
                    "wall_s": time.perf_counter() - t0,
                    "cpu_s": time.process_time() - cpu0,
                    "backend_cpu_s": backend_cpu(postmaster) - db0,
                }
                print(kind, out[kind], flush=True)
            if not args.first_runs:
                out["rows_read"] = rollups.rows_read
    finally:
        pg.stop()
    (HERE / "results").mkdir(exist_ok=True)
    suffix = f"-{args.label}" if args.label else ""
    kind = "coldstart-first-runs" if args.first_runs else "coldstart"
    path = HERE / "results" / f"{kind}-{args.nodes}{suffix}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
