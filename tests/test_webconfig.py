"""The --web.config.file: loading, every error a sentence, basic auth, real TLS handshakes.

Certificates come from the `openssl` command line (the `cryptography` package is not a
dependency): a CA, a server certificate for 127.0.0.1 and a client certificate it signed.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import shutil
import ssl
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest

from exporter.webconfig import BasicAuth, WebConfig, WebConfigError, load_web_config
from tests.conftest import require_program

# --------------------------------------------------------------------------- certificates


@dataclass
class Pki:
    folder: Path
    ca_crt: Path
    server_crt: Path
    server_key: Path
    client_crt: Path
    client_key: Path
    other_key: Path  # matches no certificate


def _openssl(openssl: str, cwd: Path, *args: str) -> None:
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _issue(openssl: str, d: Path, name: str, cn: str, ext: str) -> None:
    key_args = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(openssl, d, "req", "-new", *key_args, "-keyout", f"{name}.key", "-out",
             f"{name}.csr", "-subj", f"/CN={cn}")  # fmt: skip
    (d / f"{name}.ext").write_text(ext)
    _openssl(openssl, d, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey",
             "ca.key", "-CAcreateserial", "-days", "2", "-sha256", "-extfile", f"{name}.ext",
             "-out", f"{name}.crt")  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    openssl = require_program("openssl")
    d = tmp_path_factory.mktemp("pki")
    _openssl(openssl, d, "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=perf-analyzer test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    common = "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    _issue(openssl, d, "server", "localhost", common + "basicConstraints=CA:FALSE\n"
           "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")  # fmt: skip
    _issue(openssl, d, "client", "scraper", common + "basicConstraints=CA:FALSE\n"
           "extendedKeyUsage=clientAuth\n")  # fmt: skip
    _openssl(openssl, d, "genpkey", "-algorithm", "EC", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-out", "other.key")  # fmt: skip
    return Pki(d, d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt",
               d / "client.key", d / "other.key")  # fmt: skip


def _config(folder: Path, pki: Pki, text: str, name: str = "web.yml") -> Path:
    """A config file in `folder`, with the PKI files copied next to it (relative paths)."""
    for f in (pki.ca_crt, pki.server_crt, pki.server_key, pki.client_crt, pki.other_key):
        shutil.copy(f, folder / f.name)
    path = folder / name
    path.write_text(text)
    return path


def _hash(password: str, cost: int = 4, prefix: str = "$2b$") -> str:
    h = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()
    return prefix + h[4:]


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --------------------------------------------------------------------------- loading


def test_none_is_plain_http_without_auth() -> None:
    cfg = load_web_config(None)
    assert cfg == WebConfig()
    assert cfg.ssl_context() is None
    assert not BasicAuth(cfg.users).enabled
    assert BasicAuth(cfg.users).check(None)  # no users: everything is allowed


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "web.yml").write_text("# nothing yet\n")
    cfg = load_web_config(tmp_path / "web.yml")
    assert cfg.tls is None and cfg.users == {} and cfg.headers == {}


def test_good_config(tmp_path: Path, pki: Pki) -> None:
    alice, bob = _hash("wonderland", prefix="$2y$"), _hash("builder", prefix="$2a$")
    path = _config(
        tmp_path,
        pki,
        f"""
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
  min_version: TLS12
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
http_server_config:
  headers:
    X-Frame-Options: deny
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  alice: {alice}
  bob: '{bob}'
""",
    )
    cfg = load_web_config(str(path))
    assert cfg.tls is not None
    assert cfg.tls.cert_file == tmp_path / "server.crt"  # relative to the config's folder
    assert cfg.tls.client_ca_file == tmp_path / "ca.crt"
    assert cfg.headers == {
        "X-Frame-Options": "deny",
        "Strict-Transport-Security": "max-age=31536000",
    }
    assert set(cfg.users) == {"alice", "bob"}
    assert cfg.users["alice"].startswith(b"$2b$")  # $2y$ is $2b$ under another name
    ctx = cfg.ssl_context()
    assert ctx is not None and ctx is cfg.ssl_context()  # built once, at load
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    auth = cfg.basic_auth()
    assert auth.check(_basic("alice", "wonderland"))
    assert auth.check(_basic("bob", "builder"))


@pytest.mark.parametrize(
    ("auth_type", "mode"),
    [
        ("NoClientCert", ssl.CERT_NONE),
        ("RequestClientCert", ssl.CERT_OPTIONAL),
        ("VerifyClientCertIfGiven", ssl.CERT_OPTIONAL),
        ("RequireAnyClientCert", ssl.CERT_REQUIRED),
        ("RequireAndVerifyClientCert", ssl.CERT_REQUIRED),
    ],
)
def test_client_auth_type_mapping(
    tmp_path: Path, pki: Pki, auth_type: str, mode: ssl.VerifyMode
) -> None:
    ca = "" if auth_type == "NoClientCert" else "\n  client_ca_file: ca.crt"
    path = _config(
        tmp_path,
        pki,
        f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"  client_auth_type: {auth_type}{ca}\n",
    )
    ctx = load_web_config(path).ssl_context()
    assert ctx is not None
    assert ctx.verify_mode == mode
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2  # the default


TLS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("tls_server_config:\n  cert_fle: server.crt\n", ["unknown key", "cert_fle"]),
        ("basic_auth_user:\n  alice: x\n", ["unknown key", "basic_auth_user"]),
        ("http_server_config:\n  header: {}\n", ["unknown key", "http_server_config.header"]),
        (TLS.replace("server.crt", "missing.crt"), ["cert_file", "missing.crt", "cannot be read"]),
        (TLS.replace("server.key", "nokey.key"), ["key_file", "nokey.key", "cannot be read"]),
        (TLS.replace("server.key", "other.key"), ["other.key", "does not match", "cert_file"]),
        (TLS.replace("server.crt", "server.key"), ["cert_file", "server.key", "no PEM cert"]),
        (TLS.replace("server.key", "ca.crt"), ["key_file", "ca.crt", "no PEM private key"]),
        ("tls_server_config:\n  key_file: server.key\n", ["cert_file is missing"]),
        (TLS + "  client_auth_type: RequireCert\n", ["client_auth_type", "RequireCert"]),
        (TLS + "  client_auth_type: VerifyClientCertIfGiven\n", ["requires", "client_ca_file"]),
        (TLS + "  client_ca_file: ca.crt\n", ["client_ca_file", "NoClientCert"]),
        (
            TLS + "  client_auth_type: RequireAnyClientCert\n  client_ca_file: nope.crt\n",
            ["client_ca_file", "nope.crt", "cannot be read"],
        ),
        (
            TLS + "  client_auth_type: RequireAnyClientCert\n  client_ca_file: server.key\n",
            ["client_ca_file", "server.key", "no PEM certificate"],
        ),
        (TLS + "  min_version: TLS14\n", ["min_version", "TLS14", "invalid"]),
        (TLS + "  max_version: 1.2\n", ["max_version", "1.2", "invalid"]),
        (TLS + "  min_version: TLS13\n  max_version: TLS12\n", ["max_version", "lower"]),
        (TLS + "  cipher_suites: [TLS_FAST]\n", ["cipher_suites", "TLS_FAST"]),
        (TLS + "  cipher_suites: TLS_AES_128_GCM_SHA256\n", ["cipher_suites", "must be a list"]),
        (TLS + "  client_allowed_sans: [a]\n", ["client_allowed_sans", "not supported"]),
        ("tls_server_config: server.crt\n", ["tls_server_config", "must be a mapping"]),
        ("basic_auth_users:\n  alice: hunter2\n", ["basic_auth_users.alice", "not a bcrypt"]),
        ("basic_auth_users:\n  alice: 12\n", ["basic_auth_users.alice", "not a bcrypt"]),
        (
            "basic_auth_users:\n  alice: $2b$04$" + "!" * 53 + "\n",
            ["basic_auth_users.alice", "not a bcrypt"],
        ),
        ("basic_auth_users:\n  123: $2b$04$x\n", ["user name 123", "quote it"]),
        ("basic_auth_users: [alice]\n", ["basic_auth_users", "must be a mapping"]),
        ("http_server_config:\n  headers: [a]\n", ["headers", "must be a mapping"]),
        ("http_server_config:\n  headers:\n    X-A: 1\n", ["X-A", "must be a string"]),
        ("http_server_config:\n  headers:\n    Bad Name: x\n", ["invalid name", "Bad Name"]),
        ('http_server_config:\n  headers:\n    X-A: "a\\r\\nb: c"\n', ["X-A", "line break"]),
        ("http_server_config:\n  headers:\n    Content-Length: '1'\n", ["Content-Length"]),
        ("tls_server_config:\n  cert_file: [server.crt\n", ["not valid YAML", "line"]),
        ("- just\n- a list\n", ["must be a mapping"]),
    ],
)
def test_errors_are_one_sentence_naming_the_problem(
    tmp_path: Path, pki: Pki, text: str, words: list[str]
) -> None:
    path = _config(tmp_path, pki, text)
    with pytest.raises(WebConfigError) as info:
        load_web_config(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message
    assert "\n" not in message and "Traceback" not in message
    exc = info.value  # no chained traceback: `from None`, or nothing to chain
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)


def test_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match=r"cannot read web configuration file .*nope\.yml"):
        load_web_config(tmp_path / "nope.yml")


def test_encrypted_key_is_refused_without_prompting(tmp_path: Path, pki: Pki) -> None:
    openssl = require_program("openssl")
    _openssl(openssl, tmp_path, "pkey", "-in", str(pki.server_key), "-aes256", "-passout",
             "pass:secret", "-out", "enc.key")  # fmt: skip
    path = _config(tmp_path, pki, TLS.replace("server.key", "enc.key"))
    with pytest.raises(WebConfigError, match=r"enc\.key is encrypted"):
        load_web_config(path)


# --------------------------------------------------------------------------- basic auth


@pytest.fixture(scope="module")
def auth() -> BasicAuth:
    return BasicAuth({"alice": _hash("wonderland").encode(), "jörg": _hash("pässwörd").encode()})


def test_basic_auth_right_and_wrong(auth: BasicAuth) -> None:
    assert auth.enabled
    assert auth.check(_basic("alice", "wonderland"))
    assert auth.check("basic  " + _basic("alice", "wonderland").split()[1])  # scheme any case
    assert not auth.check(_basic("alice", "Wonderland"))
    assert not auth.check(_basic("alice", ""))
    assert not auth.check(_basic("mallory", "wonderland"))
    assert not auth.check(_basic("Alice", "wonderland"))


def test_basic_auth_non_ascii(auth: BasicAuth) -> None:
    assert auth.check(_basic("jörg", "pässwörd"))
    assert not auth.check(_basic("jörg", "passwörd"))
    latin1 = "Basic " + base64.b64encode("jörg:pässwörd".encode("latin-1")).decode()
    assert not auth.check(latin1)  # the same text in another encoding is other bytes


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic",
        "Basic ",
        "Bearer abc",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"alice:wonderland").decode()[:-2],  # bad padding
        "Basic Ym9i\u00e9",  # non-ASCII in the token
        "Digest username=alice",
    ],
)
def test_basic_auth_malformed_headers(auth: BasicAuth, header: str | None) -> None:
    assert auth.check(header) is False


def test_basic_auth_long_password_never_matches() -> None:
    long = "x" * 72
    auth = BasicAuth({"u": _hash(long).encode()})
    assert auth.check(_basic("u", long))
    assert not auth.check(_basic("u", long + "tail"))  # bcrypt would ignore the tail


def test_cache_makes_the_second_check_cheap() -> None:
    auth = BasicAuth({"alice": _hash("wonderland", cost=10).encode()})
    header = _basic("alice", "wonderland")
    t0 = time.perf_counter()
    assert auth.check(header)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert auth.check(header)
    second = time.perf_counter() - t0
    assert second * 20 < first, (first, second)
    # a wrong password is never cached as good, nor does it evict the good entry
    assert not auth.check(_basic("alice", "wonderlan"))
    assert auth.check(header)


def test_cache_is_bounded() -> None:
    auth = BasicAuth({"alice": _hash("wonderland").encode()}, cache_size=2)
    for _ in range(5):
        assert auth.check(_basic("alice", "wonderland"))
    assert len(auth._cache) == 1
    auth = BasicAuth({f"u{i}": _hash("pw").encode() for i in range(4)}, cache_size=2)
    for i in range(4):
        assert auth.check(_basic(f"u{i}", "pw"))
    assert len(auth._cache) == 2


def test_unknown_user_costs_as_much_as_a_wrong_password() -> None:
    auth = BasicAuth({"alice": _hash("wonderland", cost=8).encode()})
    attempt = iter(range(1_000_000))  # a new password each time: failures are cached too

    def wrong() -> str:
        return _basic("alice", f"nope{next(attempt)}")

    def unknown() -> str:
        return _basic("mallory", f"nope{next(attempt)}")

    def median(header: Callable[[], str]) -> float:
        times = []
        for _ in range(7):
            h = header()
            t0 = time.perf_counter()
            assert not auth.check(h)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    median(wrong), median(unknown)  # warm up
    ratio = median(unknown) / median(wrong)
    assert 0.5 < ratio < 2.0, ratio


# --------------------------------------------------------------------------- TLS handshakes


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def serve() -> Iterator:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(ctx: ssl.SSLContext) -> int:
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return httpd.server_address[1]

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def _client(pki: Pki, *, cert: bool, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_crt))
    if cert:
        ctx.load_cert_chain(str(pki.client_crt), str(pki.client_key))
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def _get(port: int, ctx: ssl.SSLContext) -> bytes:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        conn.close()


def test_tls_requires_and_verifies_client_certificate(
    tmp_path: Path, pki: Pki, serve, caplog: pytest.LogCaptureFixture
) -> None:
    path = _config(
        tmp_path,
        pki,
        TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    )
    ctx = load_web_config(path).ssl_context()
    assert ctx is not None
    port = serve(ctx)
    assert _get(port, _client(pki, cert=True)) == b"hello\n"
    with pytest.raises((OSError, http.client.HTTPException)):
        _get(port, _client(pki, cert=False))
    # under TLS 1.2 the refusal is part of the handshake itself
    with pytest.raises(ssl.SSLError):
        _get(port, _client(pki, cert=False, max_version=ssl.TLSVersion.TLSv1_2))
    assert _get(port, _client(pki, cert=True, max_version=ssl.TLSVersion.TLSv1_2)) == b"hello\n"


def test_tls_without_client_auth_serves_anyone(tmp_path: Path, pki: Pki, serve) -> None:
    ctx = load_web_config(_config(tmp_path, pki, TLS)).ssl_context()
    assert ctx is not None
    assert _get(serve(ctx), _client(pki, cert=False)) == b"hello\n"


def test_tls_min_version_13_refuses_a_tls12_client(tmp_path: Path, pki: Pki, serve) -> None:
    ctx = load_web_config(_config(tmp_path, pki, TLS + "  min_version: TLS13\n")).ssl_context()
    assert ctx is not None
    port = serve(ctx)
    with pytest.raises(ssl.SSLError):
        _get(port, _client(pki, cert=False, max_version=ssl.TLSVersion.TLSv1_2))
    assert _get(port, _client(pki, cert=False)) == b"hello\n"
