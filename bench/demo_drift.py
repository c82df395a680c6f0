"""Does the demo stay true? Loads the demo's fleet as `perf-analyzer demo` does, then runs
its live appender on a replayed clock (one append per `--step` seconds, as the live demo
appends once a minute) and compares the findings the exporter would serve at minute 2,
minute 20 and hour `--hours` (default 18, when the outage used to slide out of its
window), and the last of them against a demo started at that moment. Exits 1 when the
three differ.

    python bench/demo_drift.py [--hours 18] [--step 60] [--dsn DSN]
    python -m bench.demo_drift ...   (the same, from the repository's root)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Any

try:
    from common import database  # python bench/demo_drift.py
except ImportError:  # python -m bench.demo_drift
    from bench.common import database

from exporter import PerformanceAnalyzer
from exporter.demo import LiveAppender
from exporter.simulate import FleetSpec, copy_fleet, simulate
from exporter.store import Store

START = 1_790_000_040  # the demo's "now" when it starts, fixed so runs compare


def findings(a: PerformanceAnalyzer, now: int) -> dict[str, Any]:
    """What the exporter serves as findings, without the measured values that move."""
    e = a.emergency_health_check(now=now)
    s = a.run("availability", now=now)
    an = a.detect_anomalies(now=now)
    cap = a.capacity_planning_analysis(now=now)
    c = a.resource_contention_analysis(now=now)
    return {
        "threats": sorted({f"{t['node_name']} {t['check']} {t['priority']}" for t in e["threats"]}),
        "grades": sorted(
            f"{n['node_name']} {n['grade']}"
            for n in s["nodes"]
            if n["grade"] not in ("EXCELLENT", "GOOD")
        ),
        "anomalies": sorted(
            {f"{x['node_name']} {x['metric']} {x['priority']}" for x in an["anomalies"]}
        ),
        "exhaustions": sorted(
            f"{f['node_name']} {f['container_name']} {f['resource_type']}"
            for f in cap["forecasts"]
            if f["status"] == "exhaustion"
        ),
        "contention": sorted(
            f"{n['node_name']} {n.get('top_consumer')}"
            for n in c["nodes"]
            if n["contention_score"] > 0
        ),
    }


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        k: {"gone": sorted(set(before[k]) - set(v)), "new": sorted(set(v) - set(before[k]))}
        for k, v in after.items()
        if v != before[k]
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=18)
    p.add_argument("--step", type=int, default=60, help="seconds between appends")
    p.add_argument("--dsn")
    args = p.parse_args()
    if args.hours <= 1 / 3 or args.step <= 0:
        p.error("--hours must exceed 20 minutes and --step be positive")
    spec = FleetSpec(end=START)  # the demo's defaults
    checkpoints = {"minute 2": START + 120, "minute 20": START + 1200}
    checkpoints[f"hour {args.hours:g}"] = START + int(args.hours * 3600)
    seen: dict[str, Any] = {}
    started = time.perf_counter()
    with database(args.dsn) as dsn, Store(dsn) as store:
        fleet = copy_fleet(store, simulate(spec))
        appender = LiveAppender(store, spec, fleet.end)
        with PerformanceAnalyzer(store) as a:
            now = START
            for name, at in checkpoints.items():
                while now < at:
                    now = min(at, now + args.step)
                    appender.append(now)
                seen[name] = findings(a, now)
                print(f"{name}: {sum(map(len, seen[name].values()))} findings", flush=True)
        # The same moment in a demo started then: what the appender should reproduce (the
        # fleet's daily cycles move some findings with the time of day).
        with Store(dsn, "demo_fresh") as other:
            copy_fleet(other, simulate(dataclasses.replace(spec, end=now)))
            with PerformanceAnalyzer(other) as b:
                fresh = findings(b, now)
    first = next(iter(seen.values()))
    drift = {name: diff(first, got) for name, got in seen.items()}
    last = list(seen)[-1]
    print(
        json.dumps(
            {
                "findings": first,
                "drift": drift,
                f"{last}, live vs started then": diff(fresh, seen[last]),
            },
            indent=1,
        )
    )
    print(f"{time.perf_counter() - started:.0f} s")
    ok = not any(drift.values())
    print("the demo stays true" if ok else "the demo's findings DRIFTED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
