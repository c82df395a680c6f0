"""The generated alert rules and Alertmanager configuration, end to end with the real
programs: a simulated fleet in PostgreSQL, `perf-analyzer serve`, Prometheus evaluating the
generated rules (with `for: 0s`) and Alertmanager routing to a webhook sink. Proves that each
P1 finding pages, that a P2 on a node without a P1 opens a ticket, that a node's P2 is
inhibited while its P1 fires (although Prometheus fires it), and that healthy nodes stay
silent."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.embedded import free_port
from exporter.generate.alertmanager import alertmanager_config
from exporter.generate.rules import RULES_FILE, write
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store
from tests.conftest import require_program
from tests.harness import Processes

HOST = "127.0.0.1"
HEALTHY = {"node-01", "node-14"}
PAGED = {  # P1 findings that must reach the pager
    ("PerfAnalyzerCpuCritical", "node-02"),
    ("PerfAnalyzerMemoryCritical", "node-03"),
    ("PerfAnalyzerTemperatureCritical", "node-04"),
    ("PerfAnalyzerNetworkErrorsCritical", "node-13"),
    ("PerfAnalyzerNodeStaleCritical", "node-09"),
}
# A P2 on a node without any P1: node-08's outage 7-10 h ago grades it POOR. (node-12's
# IoWaitWarning is no such P2: 35 % iowait also breaks its performance SLI, so the P1
# SliBudgetBurnFast* fires there too and inhibits it; with `for: 0s` whichever group Prometheus
# evaluates first decides whether the ticket slips out before the P1 arrives.)
TICKETED = {("PerfAnalyzerNodeGradePoor", "node-08")}
# A P2 naming no cause on a node with a firing P1. (node-02's CpuWarning no longer fires at
# all while its CpuCritical does: one event, one alert of each kind.)
INHIBITED = ("PerfAnalyzerNodeGradePoor", "node-02")
NOISY = "node-10"  # the noisy neighbour: an alert naming `cause="contention"` must arrive
# Alerts of one kind, strongest first: never two of them firing for the same finding.
KINDS = (
    ("PerfAnalyzerAnomalySevere", "PerfAnalyzerAnomalySustained"),
    ("PerfAnalyzerCpuCritical", "PerfAnalyzerCpuWarning"),
    ("PerfAnalyzerIoWaitCritical", "PerfAnalyzerIoWaitWarning"),
    ("PerfAnalyzerSliBudgetBurnFast1h", "PerfAnalyzerSliBudgetBurnFast6h",
     "PerfAnalyzerSliBudgetBurnSlow1d", "PerfAnalyzerSliBudgetBurnSlow3d"),
)  # fmt: skip
FINDING = ("node", "container", "metric", "check", "sli", "resource")
DELIVERY_TIMEOUT = 60.0
LATE_DELIVERY_GRACE = 4.0  # seconds to wait for a (wrongly) uninhibited P2 after the others
# The fleet's rows run this far past the wall clock. Analyses ignore rows after `now`, so for
# the whole test the newest sample they see is the current minute, as with a live fleet. With
# `end` at now, the data ages during the test: once its newest sample is 60 s old, the 5-minute
# availability SLI is 4/5 on every node and the slow burn-rate P2s fire everywhere.
FEED_AHEAD = 150


# --------------------------------------------------------------------------- webhook sink


class Sink:
    """Records (receiver path, alertname, labels, status, seconds since start) of every
    alert of every Alertmanager webhook POST."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.received: list[tuple[str, str, dict[str, str], str, float]] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                payload = json.loads(body)
                at = time.monotonic() - sink.started
                with sink.lock:
                    for alert in payload.get("alerts", []):
                        labels = alert.get("labels", {})
                        sink.received.append(
                            (self.path, labels.get("alertname", ""), labels, alert["status"], at)
                        )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def snapshot(self) -> list[tuple[str, str, dict[str, str], str, float]]:
        with self.lock:
            return list(self.received)

    def delivered(self, path: str) -> set[tuple[str, str]]:
        """(alertname, node) of the firing alerts that reached receiver `path`."""
        return {
            (name, labels.get("node", ""))
            for p, name, labels, status, _ in self.snapshot()
            if p == path and status == "firing"
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def prometheus_alerts(base: str) -> list[dict[str, Any]]:
    return get_json(f"{base}/api/v1/alerts")["data"]["alerts"]


def naming_contention(sink: Sink) -> set[str]:
    """Receivers that got a firing alert of the noisy neighbour naming contention."""
    return {
        path
        for path, _, labels, status, _ in sink.snapshot()
        if status == "firing" and labels.get("node") == NOISY
        and labels.get("cause") == "contention"
    }  # fmt: skip


def key(labels: dict[str, str]) -> tuple[str, str]:
    return labels["alertname"], labels.get("node", "")


# --------------------------------------------------------------------------- configuration


def rules_without_for(folder: Path) -> Path:
    """The generated rules, every alert's `for` set to 0s so it fires on first evaluation."""
    write(folder)
    path = folder / RULES_FILE
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    alerts = 0
    for group in data["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = "0s"
                alerts += 1
    assert alerts, "the generated rules have no alerts"
    copy = folder / "e2e.rules.yml"
    copy.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return copy


def prometheus_config(rules: Path, alertmanager_port: int, exporter_port: int) -> dict:
    return {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "rule_files": [str(rules)],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"{HOST}:{alertmanager_port}"]}]}]
        },
        "scrape_configs": [
            {
                "job_name": "perf-analyzer",
                "scrape_timeout": "1900ms",
                "static_configs": [{"targets": [f"{HOST}:{exporter_port}"]}],
            }
        ],
    }


# --------------------------------------------------------------------------- the test


@pytest.mark.slow
def test_alerts_route_page_ticket_and_inhibit(pg_server, tmp_path: Path) -> None:
    prometheus = require_program("prometheus")
    alertmanager = require_program("prometheus-alertmanager")

    with contextlib.ExitStack() as stack:
        name = pg_server.create_database("alerting")
        stack.callback(pg_server.drop_database, name)
        dsn = pg_server.dsn_for(name)
        with Store(dsn) as store:
            end = int(time.time()) + FEED_AHEAD
            fleet = load_fleet(store, FleetSpec(nodes=14, containers=2, days=2, end=end))
        placed = {f["kind"]: f["node"] for f in fleet.truth["findings"]}
        assert placed["cpu_saturation"] == "node-02"
        assert placed["memory_exhausted"] == "node-03"
        assert placed["overheating"] == "node-04"
        assert placed["outage_gap"] == "node-08"
        assert placed["noisy_neighbour"] == NOISY
        assert HEALTHY.isdisjoint(placed.values())

        sink = Sink()
        stack.callback(sink.close)
        procs = Processes(tmp_path)
        stack.callback(procs.stop_all)
        try:
            # the exporter, warmed up so Prometheus's first scrape (1.9 s timeout) is complete
            exporter_port = free_port()
            procs.start(
                "exporter",
                sys.executable, "-m", "exporter.cli", "serve", "--dsn", dsn,
                "--web.listen-address", f"{HOST}:{exporter_port}",
            )  # fmt: skip
            exporter_url = f"http://{HOST}:{exporter_port}"
            procs.wait_ready("exporter", f"{exporter_url}/-/healthy")
            with urllib.request.urlopen(f"{exporter_url}/metrics", timeout=60) as response:
                assert b'perf_analyzer_emergency_threat{check="cpu",node="node-02"} 3' in (
                    response.read()
                )

            # Alertmanager, routing to the sink
            am_config = tmp_path / "alertmanager.yml"
            am_config.write_text(yaml.safe_dump(alertmanager_config(sink.url, fast=True)))
            am_port = free_port()
            (tmp_path / "am-data").mkdir()
            procs.start(
                "alertmanager",
                alertmanager,
                f"--config.file={am_config}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address={HOST}:{am_port}",
                "--cluster.listen-address=",
            )
            procs.wait_ready("alertmanager", f"http://{HOST}:{am_port}/-/ready")

            # Prometheus, evaluating the generated rules every 2 s
            rules = rules_without_for(tmp_path / "rules")
            prom_config = tmp_path / "prometheus.yml"
            prom_config.write_text(
                yaml.safe_dump(prometheus_config(rules, am_port, exporter_port), sort_keys=False)
            )
            prom_port = free_port()
            prom_url = f"http://{HOST}:{prom_port}"
            procs.start(
                "prometheus",
                prometheus,
                f"--config.file={prom_config}",
                f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                f"--web.listen-address={HOST}:{prom_port}",
            )
            procs.wait_ready("prometheus", f"{prom_url}/-/ready")
            prom_ready = time.monotonic() - sink.started

            deadline = time.monotonic() + DELIVERY_TIMEOUT
            while time.monotonic() < deadline:
                if (
                    sink.delivered("/pager") >= PAGED
                    and sink.delivered("/ticket") >= TICKETED
                    and naming_contention(sink)
                ):
                    break
                for process_name, process in procs.running:
                    assert process.poll() is None, f"{process_name} exited"
                time.sleep(0.5)
            delivered_at = time.monotonic() - sink.started
            assert sink.delivered("/pager") >= PAGED, "not every P1 reached the pager"
            assert sink.delivered("/ticket") >= TICKETED, "the P2 of node-08 opened no ticket"

            # Every rule group has now been evaluated several times; give an uninhibited P2 the
            # time to arrive (group_wait and group_interval are 1 s).
            time.sleep(LATE_DELIVERY_GRACE)
            in_prometheus = prometheus_alerts(prom_url)
            firing = [a for a in in_prometheus if a["state"] == "firing"]
            in_am = get_json(f"http://{HOST}:{am_port}/api/v2/alerts")
            received = sink.snapshot()

            print(f"prometheus ready at {prom_ready:.1f} s, pages+ticket by {delivered_at:.1f} s")
            for path, alertname, labels, status, at in sorted(received, key=lambda r: r[4]):
                print(f"  {at:5.1f} s {path:10} {status:8} {alertname} {labels.get('node', '')}")
            for a in sorted(in_am, key=lambda a: key(a["labels"])):
                print(f"  alertmanager: {a['status']['state']:10} {' '.join(key(a['labels']))}")

            p1_nodes = {
                a["labels"]["node"]
                for a in in_am
                if a["labels"].get("priority") == "P1" and "node" in a["labels"]
            }
            assert {node for _, node in TICKETED}.isdisjoint(p1_nodes)

            # node-02's P2 fires in Prometheus, but Alertmanager inhibits it: it never reached a
            # receiver and Alertmanager says it is suppressed by an inhibition.
            assert INHIBITED in {key(a["labels"]) for a in firing}, (
                f"{INHIBITED} is not firing in Prometheus: the rule, not the inhibition, is quiet"
            )
            # With `for: 0s` the health group may fire it a moment before the emergency group
            # fires the P1 (groups run independently): once the page is in, it stays muted.
            paged_at = min(
                at for p, _, labels, s, at in received
                if p == "/pager" and labels.get("node") == INHIBITED[1] and s == "firing"
            )  # fmt: skip
            late = [
                at
                for _, _, labels, s, at in received
                if key(labels) == INHIBITED and s == "firing" and at > paged_at + 2
            ]
            assert not late, "the P2 of a node with a firing P1 was not inhibited"
            (muted,) = [a for a in in_am if key(a["labels"]) == INHIBITED]
            assert muted["status"]["state"] == "suppressed", muted
            p1_causes = {
                (a["labels"]["node"], a["labels"].get("cause", ""))
                for a in in_am
                if a["labels"].get("priority") == "P1" and "node" in a["labels"]
            }
            for a in in_am:
                labels = a["labels"]
                if labels.get("priority") in ("P2", "P3") and labels.get("node") in p1_nodes:
                    cause = labels.get("cause", "")
                    if cause and (labels["node"], cause) not in p1_causes:
                        # names a cause no page names: it must reach the on-call
                        assert a["status"]["state"] == "active", a
                        continue
                    assert a["status"]["state"] == "suppressed", a
                    assert a["status"]["inhibitedBy"], a

            # the noisy neighbour reached a receiver as an alert naming contention
            assert naming_contention(sink), "no alert naming contention reached a receiver"

            # one event, one alert of each kind (in Prometheus, before any inhibition)
            for kind in KINDS:
                seen: dict[tuple[str, ...], str] = {}
                for a in firing:
                    if a["labels"]["alertname"] in kind:
                        finding = tuple(a["labels"].get(k, "") for k in FINDING)
                        assert finding not in seen, (a["labels"]["alertname"], seen[finding])
                        seen[finding] = a["labels"]["alertname"]

            noisy = [a["labels"] for a in in_prometheus if a["labels"].get("node") in HEALTHY]
            assert not noisy, f"alerts on healthy nodes in Prometheus: {noisy}"
            noisy = [labels for _, _, labels, _, _ in received if labels.get("node") in HEALTHY]
            assert not noisy, f"alerts on healthy nodes reached a receiver: {noisy}"
        except BaseException:
            print(procs.logs())
            print(f"webhook sink received: {sink.snapshot()}")
            with contextlib.suppress(OSError, KeyError, ValueError, NameError):
                print(f"prometheus alerts: {json.dumps(prometheus_alerts(prom_url))[:4000]}")
            raise
