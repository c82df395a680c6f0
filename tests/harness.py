"""Child processes for the end-to-end tests (exporter, Prometheus, Alertmanager): output in
files for diagnosis, readiness polling, and a stop in reverse order."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
import urllib.request
from pathlib import Path


class Processes:
    """Child processes with their output in files; stopped in reverse order."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.running: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        with (self.logdir / f"{name}.out").open("wb") as out:
            process = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.running.append((name, process))
        return process

    def log(self, name: str, lines: int = 40) -> str:
        path = self.logdir / f"{name}.out"
        if not path.exists():
            return ""
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(tail)

    def logs(self) -> str:
        return "\n".join(
            f"----- {name} (exit {p.poll()}), last lines -----\n{self.log(name)}"
            for name, p in self.running
        )

    def stop_all(self) -> None:
        for _, process in reversed(self.running):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in reversed(self.running):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def wait_ready(self, name: str, url: str, timeout: float = 30.0) -> None:
        process = dict(self.running)[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{self.log(name)}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            time.sleep(0.2)
        raise AssertionError(f"{name} not ready at {url} after {timeout} s:\n{self.log(name)}")
