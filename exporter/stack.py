"""`perf-analyzer demo --stack`: a real Prometheus and Alertmanager beside the demo exporter.

Prometheus scrapes the demo and evaluates the shipped alert rules (as `perf-analyzer rules`
writes them, `for:` durations untouched); Alertmanager routes with the shipped routing. Both
run from the binaries on PATH, with their configuration and data in one state directory,
and stop with the demo.

History: Prometheus starts empty, and windowed rules (burn rates over an hour) and the
dashboards would show nothing useful for hours. So the stack replays the last
`history_hours` with `backfill` into OpenMetrics, turns that into TSDB blocks with
`promtool`, and moves the blocks into Prometheus's data directory while it runs; Prometheus
loads new blocks within a minute. Prometheus is started first so that the `for:` clocks of
the alerts start at once; alerts still need their `for:` from Prometheus's start (Prometheus
evaluates rules only from when it runs).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .analyses.common import Context
from .backfill import backfill
from .generate.alertmanager import alertmanager_config
from .generate.rules import RULES_FILE, write
from .store import StoreError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
# what Debian (and Ubuntu) call the packages that ship each program
PACKAGES = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "alertmanager": "prometheus-alertmanager",
}
ALERTMANAGER_NAMES = ("prometheus-alertmanager", "alertmanager")  # Debian's name, upstream's
SCRAPE_SECONDS = 5  # short, so a demo's alert is seen soon after it starts
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
BACKFILL_STEP = 300  # seconds between replayed runs of each analysis (cheap, still continuous)


class StackUnavailable(Exception):
    """A program the stack needs is missing, or a port it needs is taken: one sentence."""


@dataclass(frozen=True)
class StackOptions:
    """Ports and history of `demo --stack` (its flags)."""

    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    history_hours: float = 1.0
    state_dir: str | None = None  # default: a temporary directory removed at the end


@dataclass(frozen=True)
class Programs:
    prometheus: str
    alertmanager: str
    promtool: str | None  # without it the stack runs without history


def find_programs(which: Callable[[str], str | None] = shutil.which) -> Programs:
    """The binaries on PATH; a missing one is a `StackUnavailable` naming its package."""
    prometheus = which("prometheus")
    alertmanager = next(filter(None, map(which, ALERTMANAGER_NAMES)), None)
    found = {"prometheus": prometheus, "alertmanager": alertmanager}
    missing = [name for name, path in found.items() if path is None]
    if missing or prometheus is None or alertmanager is None:
        packages = " ".join(sorted({PACKAGES[m] for m in missing}))
        raise StackUnavailable(
            f"{' and '.join(missing)} not found on PATH: install with "
            f"`sudo apt-get install {packages}` (Debian, Ubuntu) or from prometheus.io"
        )
    return Programs(prometheus, alertmanager, which("promtool"))


def check_port(port: int, what: str, flag: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            raise StackUnavailable(
                f"port {port} for {what} is in use: choose another with {flag}"
            ) from None


def prometheus_config(rules: Path, exporter: str, alertmanager_port: int) -> dict[str, Any]:
    """Scrape the demo exporter and evaluate the rules every SCRAPE_SECONDS."""
    every = f"{SCRAPE_SECONDS}s"
    return {
        "global": {"scrape_interval": every, "evaluation_interval": every},
        "rule_files": [str(rules)],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"{HOST}:{alertmanager_port}"]}]}]
        },
        "scrape_configs": [
            {
                "job_name": "perf-analyzer",  # the job the shipped rules expect
                "scrape_timeout": every,
                "static_configs": [{"targets": [exporter]}],
            }
        ],
    }


@dataclass
class Stack:
    """Alertmanager and Prometheus as child processes, stopped in reverse order."""

    options: StackOptions
    programs: Programs
    exporter: str  # host:port of the demo exporter
    state: Path = field(init=False)
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _history: threading.Thread | None = None

    def __post_init__(self) -> None:
        if self.options.state_dir:
            self.state = Path(self.options.state_dir)
            self.state.mkdir(parents=True, exist_ok=True)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="perf-analyzer-stack-")
            self.state = Path(self._tmp.name)

    @property
    def prometheus_url(self) -> str:
        return f"http://{HOST}:{self.options.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://{HOST}:{self.options.alertmanager_port}"

    def start(self) -> None:
        """Write the configuration, start Alertmanager then Prometheus, wait until ready."""
        check_port(self.options.alertmanager_port, "Alertmanager", "--alertmanager-port")
        check_port(self.options.prometheus_port, "Prometheus", "--prometheus-port")
        rules_dir = self.state / "rules"
        rules_dir.mkdir(exist_ok=True)
        write(rules_dir)
        am_config = self.state / "alertmanager.yml"
        # the shipped routing; its receivers are loopback placeholders, so deliveries fail
        # (logged in alertmanager.log) while the alerts are all in Alertmanager's API and UI
        am_config.write_text(yaml.safe_dump(alertmanager_config(), sort_keys=False))
        prom_config = self.state / "prometheus.yml"
        prom_config.write_text(
            yaml.safe_dump(
                prometheus_config(
                    rules_dir / RULES_FILE, self.exporter, self.options.alertmanager_port
                ),
                sort_keys=False,
            )
        )
        (self.state / "alertmanager-data").mkdir(exist_ok=True)
        self._spawn(
            "alertmanager",
            self.programs.alertmanager,
            f"--config.file={am_config}",
            f"--storage.path={self.state / 'alertmanager-data'}",
            f"--web.listen-address={HOST}:{self.options.alertmanager_port}",
            "--cluster.listen-address=",  # one instance: no gossip port to clash
        )
        self._wait_ready("alertmanager", f"{self.alertmanager_url}/-/ready")
        self._spawn(
            "prometheus",
            self.programs.prometheus,
            f"--config.file={prom_config}",
            f"--storage.tsdb.path={self.tsdb}",
            f"--web.listen-address={HOST}:{self.options.prometheus_port}",
        )
        self._wait_ready("prometheus", f"{self.prometheus_url}/-/ready")

    @property
    def tsdb(self) -> Path:
        return self.state / "prometheus-data"

    def _spawn(self, name: str, *args: str) -> None:
        with (self.state / f"{name}.log").open("ab") as out:
            process = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us; we stop them in order
            )
        self.processes.append((name, process))

    def _wait_ready(self, name: str, url: str) -> None:
        process = dict(self.processes)[name]
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StackUnavailable(
                    f"{name} exited with status {process.returncode} at start; its output is in "
                    f"{self.state / (name + '.log')}"
                )
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
            time.sleep(0.2)
        raise StackUnavailable(f"{name} was not ready at {url} after {READY_TIMEOUT:g} s")

    # -- history ----------------------------------------------------------------------------

    def start_history(self, ctx: Context, end: int, done: Callable[[str], None]) -> None:
        """Backfill the last `history_hours` up to `end` in a thread; `done(message)` says
        what was loaded (or why not)."""
        if self.options.history_hours <= 0:
            return
        if self.programs.promtool is None:
            done(
                "no history loaded: promtool not found "
                f"(install the {PACKAGES['promtool']} package)"
            )
            return
        self._history = threading.Thread(
            target=self._load_history, args=(ctx, end, done), name="history", daemon=True
        )
        self._history.start()

    def _load_history(self, ctx: Context, end: int, done: Callable[[str], None]) -> None:
        start = end - int(self.options.history_hours * 3600)
        om = self.state / "history.om"
        try:
            with om.open("wb") as out:
                summary = backfill(
                    ctx, out, start=start, end=end, step={"": BACKFILL_STEP}, scrape=SCRAPE_SECONDS
                )
            blocks = self.state / "blocks"
            shutil.rmtree(blocks, ignore_errors=True)
            assert self.programs.promtool is not None
            made = subprocess.run(
                [
                    self.programs.promtool,
                    "tsdb",
                    "create-blocks-from",
                    "openmetrics",
                    str(om),
                    str(blocks),
                ],
                capture_output=True,
                text=True,
                timeout=600,
            )
            if made.returncode != 0:
                tail = (made.stderr or made.stdout).strip().splitlines()[-1:]
                done(f"no history loaded: promtool failed ({' '.join(tail)})")
                return
            moved = 0
            for block in sorted(blocks.iterdir()):
                if block.is_dir():
                    # same filesystem: the rename is atomic, Prometheus never sees half a block
                    os.rename(block, self.tsdb / block.name)
                    moved += 1
            om.unlink()
        except (StoreError, OSError, subprocess.SubprocessError, ValueError) as exc:
            done(f"no history loaded: {exc}")
            return
        done(
            f"history: replayed the analyses over the last {self.options.history_hours:g} h "
            f"({summary.samples:,} samples, {moved} TSDB blocks); Prometheus loads them within "
            "a minute"
        )

    # -- stop -------------------------------------------------------------------------------

    def stop(self) -> None:
        """SIGTERM each program (Prometheus first), then kill what outlives STOP_TIMEOUT."""
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in reversed(self.processes):
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self.processes.clear()
        if self._history is not None:
            self._history.join(timeout=1)  # a daemon thread; it dies with the process anyway
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()
