"""The quiet-fleet acceptance run: a realistic fleet with no finding (every sampler shape:
15, 60 and 300 s intervals, phases, jitter, late stamps, container offsets, misses under
load, AR(1) noise, NULL temperatures), replayed every `--step` seconds over the last
`--replay-days` days, as the exporter would evaluate it.

It prints the findings of every analysis by priority (emergency threats, anomalies,
contention scores above 0, capacity exhaustions, exported direct couplings), the minimum
day-long availability and the grades seen, and exits 1 if the requirement fails:
no P1 or P2 anywhere, every availability >= 0.99, every grade EXCELLENT or GOOD and no
contention above 0.

    python bench/quiet_fleet.py --nodes 12 --replay-days 3 [--history-days 7] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from typing import Any

from common import database

from exporter import PerformanceAnalyzer
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store

END = 1_790_000_040  # a fixed Monday afternoon, so every run replays the same fleet


def replay(dsn: str, fleet: Any, replay_days: float, step: int) -> dict[str, Any]:
    """Run every analysis at each `now`; count findings by (analysis, priority)."""
    found: Counter[tuple[str, str]] = Counter()
    worst: dict[tuple[str, str], dict] = {}
    availability: list[float] = []
    grades: Counter[str] = Counter()
    max_contention = 0.0
    times: Counter[str] = Counter()
    nows = range(fleet.end - int(replay_days * 86400), fleet.end + 1, step)

    def note(analysis: str, priority: str, item: dict) -> None:
        found[analysis, priority] += 1
        worst.setdefault((analysis, priority), item)

    with PerformanceAnalyzer(dsn) as a:
        for i, now in enumerate(nows):
            t = time.perf_counter()
            e = a.emergency_health_check(now=now)
            times["emergency"] += time.perf_counter() - t
            for x in e["threats"]:
                note("emergency", x["priority"], x)
            t = time.perf_counter()
            s = a.system_availability_check(hours=24, now=now)
            times["sli"] += time.perf_counter() - t
            availability += [n["availability"] for n in s["nodes"]]
            grades.update(n["grade"] for n in s["nodes"])
            t = time.perf_counter()
            an = a.detect_anomalies(hours=24, now=now)
            times["anomalies"] += time.perf_counter() - t
            for x in an["anomalies"]:
                note("anomalies", x["priority"], x)
            t = time.perf_counter()
            c = a.resource_contention_analysis(1, now=now)
            times["contention"] += time.perf_counter() - t
            for x in c["nodes"]:
                max_contention = max(max_contention, x["contention_score"])
                if x["contention_score"] > 0:
                    note("contention", "score>0", x)
            t = time.perf_counter()
            cap = a.capacity_planning_analysis(days=30, now=now)
            times["capacity"] += time.perf_counter() - t
            for x in cap["forecasts"]:
                if x["status"] == "exhaustion":
                    note("capacity", "exhaustion", x)
            t = time.perf_counter()
            co = a.correlation_analysis(24, now=now)
            times["correlation"] += time.perf_counter() - t
            for x in co["correlations"]:
                if x["exported"] and x["interpretation"] == "direct_coupling":
                    # cpu, load and context switches move together by construction
                    pair = f"{x['metric_a']}~{x['metric_b']}"
                    found["correlation", pair] += 1
            if i % 36 == 0:
                print(f"now = end - {(fleet.end - now) / 3600:.0f} h", flush=True)
    return {
        "evaluations": len(nows),
        "found": {f"{k[0]} {k[1]}": v for k, v in sorted(found.items())},
        "first_of_each": {f"{k[0]} {k[1]}": v for k, v in sorted(worst.items())},
        "min_availability": min(availability),
        "availability_values": len(availability),
        "grades": dict(grades),
        "max_contention": max_contention,
        "seconds_per_analysis": {k: round(v, 1) for k, v in times.items()},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=12)
    p.add_argument("--replay-days", type=float, default=3)
    p.add_argument("--history-days", type=float, default=7, help="days before the replay")
    p.add_argument("--step", type=int, default=600, help="seconds between evaluations")
    p.add_argument("--dsn")
    args = p.parse_args()
    if args.nodes < 12 or args.step <= 0 or args.replay_days <= 0:
        p.error("--nodes must be 12 or more (4 of each interval), --step and --replay-days > 0")
    spec = FleetSpec(
        nodes=args.nodes,
        days=args.replay_days + args.history_days,
        end=END,
        realistic=True,
        findings=False,
    )
    started = time.perf_counter()
    with database(args.dsn) as dsn:
        with Store(dsn) as store:
            fleet = load_fleet(store, spec)
        shapes = Counter(v["interval"] for v in fleet.truth["nodes"].values())
        print(f"{fleet.row_count:,} rows, intervals {dict(sorted(shapes.items()))}", flush=True)
        out = replay(dsn, fleet, args.replay_days, args.step)
    out["wall_seconds"] = round(time.perf_counter() - started)
    print(json.dumps(out, indent=1, default=str))
    bad = [k for k in out["found"] if k.split()[1] in ("P1-CRITICAL", "P2-WARNING")]
    ok = (
        not bad
        and out["min_availability"] >= 0.99
        and set(out["grades"]) <= {"EXCELLENT", "GOOD"}
        and out["max_contention"] == 0
    )
    print("requirement met" if ok else f"requirement FAILED: {bad}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
