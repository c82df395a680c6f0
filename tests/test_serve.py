"""`perf-analyzer serve` and `demo` as processes: TLS and basic auth, a database that is
down at start, bad configuration, and a clean exit on SIGTERM."""

from __future__ import annotations

import base64
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from exporter.embedded import free_port
from tests.test_webconfig import _config, _hash, pki  # noqa: F401  (pki is a fixture)


def start(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter.cli", *args, "--web.listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    return process, port


def wait_until_listening(
    process: subprocess.Popen,
    port: int,
    *,
    scheme: str = "http",
    context: ssl.SSLContext | None = None,
    timeout: float = 60,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            urllib.request.urlopen(
                f"{scheme}://127.0.0.1:{port}/-/healthy", timeout=2, context=context
            )
            return
        except urllib.error.HTTPError:
            return  # listening (maybe behind auth)
        except (urllib.error.URLError, ConnectionError, ssl.SSLError, TimeoutError):
            time.sleep(0.2)
    raise AssertionError("the exporter did not start listening")


def stop(process: subprocess.Popen) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=20)
    return process.returncode, err


def get(url: str, **kw) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60, **kw) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.mark.slow
def test_database_down_at_start_then_sigterm():
    process, port = start("serve", "--dsn", "postgresql://u:hunter2@127.0.0.1:1/db")
    wait_until_listening(process, port)
    base = f"http://127.0.0.1:{port}"
    assert get(base + "/-/healthy")[0] == 200
    assert get(base + "/-/ready")[0] == 503
    status, body = get(base + "/metrics")
    assert status == 200
    assert b"perf_analyzer_database_up 0.0" in body
    assert b"hunter2" not in body and b"hunter2" not in get(base + "/")[1]
    started = time.monotonic()
    code, err = stop(process)
    assert code == 0 and time.monotonic() - started < 10
    assert "Traceback" not in err and "hunter2" not in err


def test_bad_web_config_is_one_sentence(tmp_path: Path):
    bad = tmp_path / "web.yml"
    bad.write_text("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n")
    process, _port = start(
        "serve", "--dsn", "postgresql://127.0.0.1:1/db", "--web.config.file", str(bad)
    )
    _, err = process.communicate(timeout=30)
    assert process.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "missing.crt" in lines[0] and "Traceback" not in err


def test_tls_and_basic_auth(tmp_path: Path, pki, live_dsn):  # noqa: F811
    web = _config(
        tmp_path,
        pki,
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            f"basic_auth_users:\n  prometheus: '{_hash('s3cret')}'\n"
        ),
    )
    process, port = start("serve", "--dsn", live_dsn, "--web.config.file", str(web))
    client = ssl.create_default_context(cafile=str(pki.ca_crt))
    try:
        wait_until_listening(process, port, scheme="https", context=client)
        url = f"https://127.0.0.1:{port}/metrics"

        def with_auth(user: str, password: str) -> urllib.request.Request:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            return urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})

        assert get(url, context=client)[0] == 401
        assert get(with_auth("prometheus", "wrong"), context=client)[0] == 401
        assert get(with_auth("nobody", "s3cret"), context=client)[0] == 401
        status, body = get(with_auth("prometheus", "s3cret"), context=client)
        assert status == 200 and b"perf_analyzer_database_up 1.0" in body
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP: refused
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        assert stop(process)[0] == 0


def test_mutual_tls(tmp_path: Path, pki, live_dsn):  # noqa: F811
    web = _config(
        tmp_path,
        pki,
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
        ),
    )
    process, port = start("serve", "--dsn", live_dsn, "--web.config.file", str(web))
    with_cert = ssl.create_default_context(cafile=str(pki.ca_crt))
    with_cert.load_cert_chain(pki.client_crt, pki.client_key)
    without = ssl.create_default_context(cafile=str(pki.ca_crt))
    try:
        wait_until_listening(process, port, scheme="https", context=with_cert)
        url = f"https://127.0.0.1:{port}/-/healthy"
        assert get(url, context=with_cert)[0] == 200
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            urllib.request.urlopen(url, context=without, timeout=5).read()
    finally:
        assert stop(process)[0] == 0


def test_sigterm_lets_an_inflight_scrape_finish(live_dsn):
    process, port = start("serve", "--dsn", live_dsn)
    wait_until_listening(process, port)
    import threading

    result = {}

    def scrape():  # a cold scrape: the analyses take seconds
        result["status"], result["body"] = get(f"http://127.0.0.1:{port}/metrics")

    thread = threading.Thread(target=scrape)
    thread.start()
    time.sleep(0.5)
    code, err = stop(process)
    thread.join(30)
    assert code == 0, err
    assert result["status"] == 200 and b"perf_analyzer_build_info" in result["body"]


@pytest.mark.slow
def test_demo_serves_and_stops():
    process, port = start("demo", "--nodes", "3", "--days", "2")
    try:
        wait_until_listening(process, port, timeout=120)
        status, body = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert b'perf_analyzer_health_grade{grade="critical",node="node-02"} 1.0' in body
    finally:
        code, err = stop(process)
    assert code == 0, err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def live_dsn(pg_server):
    from exporter.simulate import FleetSpec, load_fleet
    from exporter.store import Store

    name = pg_server.create_database("serve")
    dsn = pg_server.dsn_for(name)
    with Store(dsn) as store:
        load_fleet(store, FleetSpec(nodes=4, containers=1, days=2))
    yield dsn
    pg_server.drop_database(name)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--config", "{tmp}/bad.yml"], "unknown configuration key 'refreshh'"),
        (["--config", "{tmp}/missing.yml"], "cannot read configuration file"),
        (["--web.config.file", "{tmp}/missing-web.yml"], "missing-web.yml"),
        (["--table", 'a.b."c'], "more than one dot"),
        (["--web.telemetry-path", "metrics"], "must start with /"),
    ],
)
def test_hostile_configuration_fails_at_start(tmp_path: Path, args, fragment):
    (tmp_path / "bad.yml").write_text("exporter:\n  refreshh: {sli: 5}\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    process, _port = start("serve", "--dsn", "postgresql://127.0.0.1:1/db", *args)
    _, err = process.communicate(timeout=30)
    assert process.returncode in (1, 2), err
    lines = [line for line in err.strip().splitlines() if line]
    assert "Traceback" not in err and fragment in err
    assert len(lines) <= 3  # one sentence (click adds a usage hint for bad flags)
