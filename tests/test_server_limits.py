"""The HTTP server under hostile or unlucky clients, as a process against a real database:
slow clients that never finish their request head, a low open-files limit, probes without
credentials, Accept-Encoding q-values, and SIGTERM with slow clients and a table lock held."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import resource
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest
import yaml

from exporter.embedded import free_port
from exporter.server import accepts_gzip
from tests.test_serve import get, live_dsn, wait_until_listening  # noqa: F401  (a fixture)
from tests.test_webconfig import TLS, _config, _hash, pki  # noqa: F401  (pki is a fixture)

TICKS = os.sysconf("SC_CLK_TCK")


def start(*args: str, nofile: int | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()

    def limit() -> None:
        if nofile is not None:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

    process = subprocess.Popen(
        [sys.executable, "-m", "exporter.cli", *args, "--web.listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit,
    )
    return process, port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def timed_get(url: str) -> tuple[int, float]:
    t0 = time.monotonic()
    status, _ = get(url)
    return status, time.monotonic() - t0


@pytest.mark.slow
def test_slow_clients_do_not_starve_scrapes(live_dsn):  # noqa: F811
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4096:
        pytest.skip(f"needs a hard open-files limit of 4096, have {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), hard))  # our 1,100 sockets
    process, port = start("serve", "--dsn", live_dsn, nofile=1024)
    slow: dict[socket.socket, float] = {}
    try:
        wait_until_listening(process, port)
        url = f"http://127.0.0.1:{port}/metrics"
        assert get(url)[0] == 200  # warm: the analyses have run once

        cpu0, t0 = cpu_seconds(process.pid), time.monotonic()
        for _ in range(1100):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"G")
            sock.setblocking(False)
            slow[sock] = time.monotonic()
        opened = time.monotonic() - t0

        selector = selectors.DefaultSelector()
        for sock in slow:
            selector.register(sock, selectors.EVENT_READ)
        closed_after: list[float] = []
        scrapes: list[float] = []
        trickle = iter(b"ET /metrics HTTP/1.1\r\n")
        next_byte = time.monotonic() + 5
        stop_at = time.monotonic() + 13  # past the 10 s head deadline
        while time.monotonic() < stop_at and len(closed_after) < len(slow):
            status, seconds = timed_get(url)
            assert status == 200
            scrapes.append(seconds)
            if time.monotonic() >= next_byte:  # one byte per 5 s on every open socket
                byte = bytes([next(trickle)])
                for key in list(selector.get_map().values()):
                    with contextlib.suppress(OSError):  # a closed one is found below
                        key.fileobj.send(byte)
                next_byte += 5
            for key, _ in selector.select(timeout=0.3):
                sock = key.fileobj
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    closed_after.append(time.monotonic() - slow[sock])
                    selector.unregister(sock)
        cpu = (cpu_seconds(process.pid) - cpu0) / (time.monotonic() - t0)

        print(
            f"1,100 slow sockets opened in {opened:.1f} s; {len(scrapes)} scrapes, slowest "
            f"{max(scrapes) * 1000:.0f} ms; exporter CPU {cpu:.1%}; {len(closed_after)} dropped, "
            f"the last after {max(closed_after):.1f} s"
        )
        assert max(scrapes) < 1.0
        assert cpu < 0.20
        assert len(closed_after) == len(slow)  # every slow socket dropped...
        assert max(closed_after) < 10 + 1.5  # ...within the head deadline
    finally:
        for sock in slow:
            sock.close()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "open files limit raised from 1024" in err
    assert "Traceback" not in err


def test_probes_answer_without_credentials_metrics_do_not(tmp_path: Path):
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{_hash('s3cret')}'\n")
    down = "postgresql://127.0.0.1:1/db"
    token = base64.b64encode(b"prometheus:s3cret").decode()
    for protect, probe_status in ((False, 200), (True, 401)):
        extra = ["--web.protect-probes"] if protect else []
        process, port = start("serve", "--dsn", down, "--web.config.file", str(web), *extra)
        try:
            wait_until_listening(process, port)
            base = f"http://127.0.0.1:{port}"
            assert get(base + "/-/healthy")[0] == probe_status
            assert get(base + "/-/ready")[0] == (probe_status if protect else 503)
            assert get(base + "/metrics")[0] == 401
            authed = urllib.request.Request(
                base + "/metrics", headers={"Authorization": f"Basic {token}"}
            )
            assert get(authed)[0] == 200
            authed_probe = urllib.request.Request(
                base + "/-/healthy", headers={"Authorization": f"Basic {token}"}
            )
            assert get(authed_probe)[0] == 200
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=20)
        assert process.returncode == 0


@pytest.mark.parametrize(
    "header, gzip",
    [
        ("gzip", True),
        ("gzip, deflate", True),
        ("deflate, GZIP;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("gzip;q=0, *", False),
        ("*", True),
        ("*;q=0", False),
        ("identity", False),
        ("", False),
        ("x-gzip", True),
        ("gzip;q=nonsense", False),
        ("br;q=1, gzipped", False),
    ],
)
def test_accept_encoding_q_values(header: str, gzip: bool):
    assert accepts_gzip(header) is gzip


def test_gzip_q0_is_not_gzipped_by_the_server():
    process, port = start("serve", "--dsn", "postgresql://127.0.0.1:1/db")
    try:
        wait_until_listening(process, port)
        url = f"http://127.0.0.1:{port}/metrics"
        for header, expected in (("gzip;q=0", None), ("gzip;q=0.5", "gzip")):
            request = urllib.request.Request(url, headers={"Accept-Encoding": header})
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.headers.get("Content-Encoding") == expected
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)


def scrape_quietly(url: str) -> None:
    with contextlib.suppress(OSError):  # the server drops it at shutdown
        get(url)


@pytest.mark.slow
def test_sigterm_exits_promptly_with_slow_clients_and_a_table_lock(
    live_dsn,  # noqa: F811
    tmp_path: Path,
):
    config = tmp_path / "config.yml"  # every scrape runs the current values and the check
    config.write_text("exporter:\n  refresh:\n    current: 0\n    emergency: 0\n")
    process, port = start("serve", "--dsn", live_dsn, "--config", str(config))
    url = f"http://127.0.0.1:{port}/metrics"
    sockets: list[socket.socket] = []
    with psycopg.connect(live_dsn) as locker:
        try:
            wait_until_listening(process, port)
            assert get(url)[0] == 200
            locker.execute("LOCK TABLE monitor_samples_ring IN ACCESS EXCLUSIVE MODE")
            for _ in range(3):  # slow clients: a head that never ends
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(b"GET /metr")
                sockets.append(sock)
            scrapes = [
                threading.Thread(target=scrape_quietly, args=(url,), daemon=True) for _ in range(2)
            ]  # scrapes whose analyses wait for the lock
            for thread in scrapes:
                thread.start()
            time.sleep(1.5)
            waiting = locker.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'perf-analyzer' AND wait_event_type = 'Lock'"
            ).fetchone()[0]
            t0 = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=30)
            took = time.monotonic() - t0
            locker.execute("SELECT pg_stat_clear_snapshot()")  # fresh activity in this transaction
            left = locker.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'perf-analyzer' AND state = 'active'"
            ).fetchone()[0]
        finally:
            locker.rollback()
            for sock in sockets:
                sock.close()
            if process.poll() is None:
                process.kill()
    print(f"SIGTERM to exit: {took:.1f} s, {waiting} queries were waiting on the lock")
    assert process.returncode == 0, err
    assert took < 10, err
    assert waiting >= 1
    assert left == 0, err  # the queries waiting on the lock were cancelled, not abandoned
    assert "Traceback" not in err


def _healthcheck_script() -> str:
    dockerfile = (Path(__file__).parent.parent / "Dockerfile").read_text()
    line = dockerfile.split("HEALTHCHECK", 1)[1].split("CMD", 1)[1].split("\n")[0]
    command = json.loads(line)
    assert command[:2] == ["python", "-c"]
    return command[2]


def test_docker_healthcheck_works_over_tls_and_plain_http(tmp_path: Path, pki):  # noqa: F811
    script = _healthcheck_script()
    web = _config(tmp_path, pki, TLS + f"basic_auth_users:\n  p: '{_hash('pw')}'\n")
    down = "postgresql://127.0.0.1:1/db"
    for extra in ((), ("--web.config.file", str(web))):
        process, port = start("serve", "--dsn", down, *extra)
        try:
            if extra:
                ctx = ssl.create_default_context(cafile=str(pki.ca_crt))
                wait_until_listening(process, port, scheme="https", context=ctx)
            else:
                wait_until_listening(process, port)
            run = subprocess.run(
                [sys.executable, "-c", script.replace("10610", str(port))], timeout=10
            )
            assert run.returncode == 0, extra
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=20)
    run = subprocess.run([sys.executable, "-c", script.replace("10610", str(port))], timeout=10)
    assert run.returncode == 1  # nothing listens any more


def test_deploy_limits_match_the_readme_sizing():
    root = Path(__file__).parent.parent
    assert "768 MiB at 200" in (root / "README.md").read_text()
    unit = (root / "deploy" / "perf-analyzer.service").read_text()
    assert "MemoryMax=768M" in unit and "LimitNOFILE=" in unit
    manifests = list(yaml.safe_load_all((root / "deploy" / "kubernetes.yml").read_text()))
    container = manifests[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["memory"] == "768Mi"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"
    assert manifests[2]["spec"]["endpoints"][0]["scheme"] == "https"
