"""The relabelling recipe of the README joins perf-analyzer's `node` with node_exporter's
`instance`: a real Prometheus scrapes the real exporter (with the recipe) and a static text
endpoint playing node_exporter for node-01, and a PromQL join of the two returns a value."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.embedded import free_port
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store
from tests.conftest import require_program
from tests.harness import Processes

HOST = "127.0.0.1"
NODE_EXPORTER_TEXT = b"# TYPE node_load1 gauge\nnode_load1 0.25\n"
# The recipe, as the README gives it: `node` -> `instance` on node_exporter's port.
RECIPE = [
    {
        "source_labels": ["node"],
        "regex": "(.+)",
        "target_label": "instance",
        "replacement": "${1}:9100",
    }
]
JOIN = "perf_analyzer_load1 * on (instance) group_left () (node_load1 * 0 + 1)"


def serve_static() -> tuple[ThreadingHTTPServer, int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(NODE_EXPORTER_TEXT)))
            self.end_headers()
            self.wfile.write(NODE_EXPORTER_TEXT)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)["data"]["result"]


@pytest.mark.slow
def test_node_joins_node_exporter_instance(pg_server, tmp_path: Path) -> None:
    prometheus = require_program("prometheus")
    with contextlib.ExitStack() as stack:
        name = pg_server.create_database("nodejoin")
        stack.callback(pg_server.drop_database, name)
        dsn = pg_server.dsn_for(name)
        with Store(dsn) as store:
            load_fleet(store, FleetSpec(nodes=2, containers=0, days=1, end=int(time.time())))
        static, static_port = serve_static()
        stack.callback(static.shutdown)
        procs = Processes(tmp_path)
        stack.callback(procs.stop_all)
        exporter_port = free_port()
        procs.start(
            "exporter",
            sys.executable, "-m", "exporter.cli", "serve", "--dsn", dsn,
            "--web.listen-address", f"{HOST}:{exporter_port}",
        )  # fmt: skip
        procs.wait_ready("exporter", f"http://{HOST}:{exporter_port}/-/healthy")
        with urllib.request.urlopen(f"http://{HOST}:{exporter_port}/metrics", timeout=60):
            pass  # warm: the first scrape runs the analyses
        config = {
            "global": {"scrape_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "perf-analyzer",
                    "scrape_timeout": "900ms",
                    "static_configs": [{"targets": [f"{HOST}:{exporter_port}"]}],
                    "metric_relabel_configs": RECIPE,
                },
                {
                    "job_name": "node",
                    "static_configs": [{"targets": [f"{HOST}:{static_port}"]}],
                    # plays node_exporter on node-01: its target address is node-01:9100
                    "relabel_configs": [
                        {"target_label": "instance", "replacement": "node-01:9100"}
                    ],
                },
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        port = free_port()
        base = f"http://{HOST}:{port}"
        procs.start(
            "prometheus", prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address={HOST}:{port}",
        )  # fmt: skip
        procs.wait_ready("prometheus", f"{base}/-/ready")
        deadline = time.monotonic() + 30
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not result:
            time.sleep(1)
            result = query(base, JOIN)
        assert result, procs.logs()
        (joined,) = result
        assert joined["metric"]["node"] == "node-01"
        assert joined["metric"]["instance"] == "node-01:9100"
        (own,) = query(base, 'perf_analyzer_load1{node="node-01"}')
        assert float(joined["value"][1]) == float(own["value"][1])  # node-01's load, joined
        # node-02 has no node_exporter: the join has nothing for it
        assert not query(
            base, JOIN.replace("perf_analyzer_load1", 'perf_analyzer_load1{node="node-02"}')
        )
