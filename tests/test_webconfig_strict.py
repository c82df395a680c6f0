"""The web configuration is strict where a mistake would be silent (a key given twice, a bcrypt
cost that makes every check take seconds), and failed logins cannot starve real ones."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

import pytest

from exporter.webconfig import BasicAuth, WebConfigError, load_web_config
from tests.test_webconfig import _basic, _hash


@pytest.mark.parametrize(
    "text, key",
    [
        (
            "basic_auth_users:\n  a: '{h}'\nbasic_auth_users:\n  b: '{h}'\n",
            "basic_auth_users",
        ),
        (
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n"
            "tls_server_config:\n  cert_file: b.crt\n  key_file: b.key\n",
            "tls_server_config",
        ),
        ("basic_auth_users:\n  alice: '{h}'\n  alice: '{h}'\n", "alice"),
        ("http_server_config:\n  headers:\n    X-A: '1'\n    X-A: '2'\n", "X-A"),
    ],
)
def test_a_key_given_twice_is_refused_in_one_sentence(tmp_path: Path, text: str, key: str):
    path = tmp_path / "web.yml"
    path.write_text(text.replace("{h}", _hash("pw")))
    with pytest.raises(WebConfigError) as err:
        load_web_config(path)
    message = str(err.value)
    assert f"key {key} is given twice" in message and str(path) in message
    assert "\n" not in message


def test_a_bcrypt_cost_above_14_is_refused(tmp_path: Path):
    path = tmp_path / "web.yml"
    h = _hash("pw", cost=4)
    path.write_text(f"basic_auth_users:\n  alice: '{h[:4]}15{h[6:]}'\n")
    with pytest.raises(WebConfigError, match=r"alice has bcrypt cost 15, above the 14"):
        load_web_config(path)
    path.write_text(f"basic_auth_users:\n  alice: '{h[:4]}14{h[6:]}'\n")
    assert "alice" in load_web_config(path).users  # 14 itself is allowed


def test_wrong_password_flood_does_not_starve_a_real_login():
    """16 threads of one client send new wrong passwords as fast as they can; meanwhile real
    users log in from another address for the first time (a full bcrypt check), then again
    (from the cache)."""
    real = _hash("s3cret", cost=10).encode()
    auth = BasicAuth({"prometheus": real, **{f"real{n}": real for n in range(3)}})
    stop = threading.Event()
    attempts = [0] * 16

    def flood(i: int) -> None:
        while not stop.is_set():
            auth.check(_basic("prometheus", f"guess-{i}-{attempts[i]}"), "10.0.0.66")
            attempts[i] += 1

    threads = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(16)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        firsts, cached = [], []
        for n in range(3):
            t0 = time.perf_counter()
            assert auth.check(_basic(f"real{n}", "s3cret"), "10.0.0.1")
            firsts.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert auth.check(_basic(f"real{n}", "s3cret"), "10.0.0.1")
            cached.append(time.perf_counter() - t0)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    print(
        f"{sum(attempts)} wrong passwords from 16 threads, {auth.refused_busy} refused at once; "
        f"first logins {max(firsts) * 1000:.0f} ms at worst, cached {max(cached) * 1000:.2f} ms"
    )
    assert max(firsts) < 1.0
    assert max(cached) < 0.05
    assert auth.refused_busy > 0  # guesses were turned away, not queued


def test_a_failed_pair_fails_again_without_bcrypt():
    auth = BasicAuth({"alice": _hash("wonderland", cost=10).encode()})
    header = _basic("alice", "wrong")
    t0 = time.perf_counter()
    assert not auth.check(header)
    first = time.perf_counter() - t0
    again = []
    for _ in range(5):
        t0 = time.perf_counter()
        assert not auth.check(header)
        again.append(time.perf_counter() - t0)
    assert statistics.median(again) * 20 < first
    assert auth.check(_basic("alice", "wonderland"))
