"""The Prometheus exporter-toolkit web configuration file (`--web.config.file`).

The same YAML that node_exporter and postgres_exporter accept: TLS (`tls_server_config`),
extra response headers (`http_server_config.headers`) and basic authentication with bcrypt
hashes (`basic_auth_users`). Everything is validated when the file is loaded, and the
SSLContext is built then too, so a typo, a missing certificate or a key that does not match
its certificate stops the exporter at start instead of failing the first scrape. Every
problem is a `WebConfigError` whose message names the file and the key.

Differences from the Go exporter-toolkit, all deliberate:

- Python's ssl module cannot ask for a client certificate without verifying it, so
  RequestClientCert and VerifyClientCertIfGiven both become CERT_OPTIONAL (a certificate,
  if sent, must chain to client_ca_file) and RequireAnyClientCert becomes CERT_REQUIRED
  with the CA, like RequireAndVerifyClientCert. Every client_auth_type other than
  NoClientCert therefore needs client_ca_file.
- `cipher_suites` (Go/IANA names) are mapped to OpenSSL names and applied to TLS 1.2 and
  older; TLS 1.3 names are accepted and ignored, as Go ignores them (TLS 1.3 suites are
  not configurable there either). An unknown name is an error.
- `http_server_config.http2` is accepted and ignored (the server speaks HTTP/1.1 only).
  `client_allowed_sans`, `curve_preferences` and the inline `cert`/`key`/`client_ca`
  forms are rejected as unsupported, so a restriction is never silently dropped.
- Certificates are read once at load; rotating them needs a restart (the toolkit re-reads
  them on every handshake).
- A password longer than 72 bytes never authenticates (bcrypt only looks at 72 bytes; the
  Python bcrypt package refuses longer ones rather than truncate).
- Stricter than the toolkit: a key given twice in one mapping (two `basic_auth_users`
  sections, say, of which YAML would keep the last) and a bcrypt cost above
  `BCRYPT_MAX_COST` are refused.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import ssl
import threading
import warnings
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

log = logging.getLogger(__name__)

__all__ = [
    "CLIENT_AUTH_TYPES",
    "TLS_VERSIONS",
    "BasicAuth",
    "TlsConfig",
    "WebConfig",
    "WebConfigError",
    "load_web_config",
]


class WebConfigError(ValueError):
    """The web configuration file is unusable; the message names the file and the key."""


# client_auth_type → verify_mode; all but NoClientCert need client_ca_file (see the module doc).
CLIENT_AUTH_TYPES: dict[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}

TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's crypto/tls names (IANA) → OpenSSL names, for TLS 1.2 and older.
_CIPHER_SUITES: dict[str, str] = {
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
_CIPHER_SUITES["TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"] = _CIPHER_SUITES[
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
]
_CIPHER_SUITES["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"] = _CIPHER_SUITES[
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
]
_TLS13_SUITES = frozenset(
    {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
)

_TOP_KEYS = frozenset({"tls_server_config", "http_server_config", "basic_auth_users"})
_TLS_KEYS = frozenset(
    {
        "cert_file",
        "key_file",
        "client_auth_type",
        "client_ca_file",
        "min_version",
        "max_version",
        "cipher_suites",
        "prefer_server_cipher_suites",
    }
)
_TLS_UNSUPPORTED = frozenset(
    {"client_allowed_sans", "curve_preferences", "cert", "key", "client_ca"}
)
_HTTP_KEYS = frozenset({"headers", "http2"})

# Headers the server itself must control: overriding them would corrupt the response framing.
_RESERVED_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

_BCRYPT_HASH = re.compile(r"\$(2[aby])\$(\d\d)\$[./A-Za-z0-9]{53}")
_BCRYPT_MAX_PASSWORD = 72
# Above this cost one check takes seconds of CPU: each scrape's first login, and every
# wrong-password attempt, would cost that much.
BCRYPT_MAX_COST = 14


@dataclass(frozen=True)
class TlsConfig:
    """Validated tls_server_config, with the server SSLContext built from it at load."""

    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str | None = None
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    context: ssl.SSLContext = field(repr=False, compare=False, kw_only=True)


@dataclass(frozen=True)
class WebConfig:
    """A loaded web configuration: TLS (or None for plain HTTP), basic-auth users, headers."""

    tls: TlsConfig | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server SSLContext built at load (shared, thread safe), or None without TLS."""
        return self.tls.context if self.tls is not None else None

    def basic_auth(self) -> BasicAuth:
        """A BasicAuth checker for this file's users (disabled when there are none)."""
        return BasicAuth(self.users)


# --------------------------------------------------------------------------- loading


def load_web_config(path: str | os.PathLike[str] | None) -> WebConfig:
    """Read and validate a web configuration file; None means no TLS and no authentication."""
    if path is None:
        return WebConfig()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise WebConfigError(
            f"cannot read web configuration file {p}: {exc.strerror or exc}"
        ) from None
    except UnicodeDecodeError:
        raise WebConfigError(f"web configuration file {p} is not UTF-8 text") from None
    data = _parse_yaml(text, p)
    if data is None:  # an empty file: the toolkit's defaults
        return WebConfig(path=p)
    if not isinstance(data, dict):
        raise WebConfigError(
            f"web configuration file {p} must be a mapping of keys, got {_kind(data)}"
        )
    _check_keys(data, _TOP_KEYS, p, "")
    base = p.resolve().parent
    tls_data = _section(data, "tls_server_config", p)
    http_data = _section(data, "http_server_config", p)
    users = _load_users(data.get("basic_auth_users"), p)
    _check_keys(http_data, _HTTP_KEYS, p, "http_server_config.")
    headers = _load_headers(http_data.get("headers"), p)
    if "http2" in http_data:
        _expect(http_data["http2"], bool, p, "http_server_config.http2", "true or false")
        log.info("%s: http_server_config.http2 is ignored; the exporter serves HTTP/1.1", p)
    tls = _load_tls(tls_data, p, base) if tls_data else None
    return WebConfig(tls=tls, users=users, headers=headers, path=p)


def _parse_yaml(text: str, p: Path) -> Any:
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """SafeLoader that refuses a key given twice in one mapping: YAML keeps the last
        silently, which can drop a whole section (users, TLS) without a word."""

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise WebConfigError(
                        f"web configuration file {p}: key {key!s} is given twice (line "
                        f"{node.start_mark.line + 1} and line {key_node.start_mark.line + 1})"
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: plain data only
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise WebConfigError(
            f"web configuration file {p} is not valid YAML{where}: {problem}"
        ) from None


def _kind(value: object) -> str:
    names = {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    if value is None:
        return "nothing (null)"
    return names.get(type(value), f"a {type(value).__name__}") + f" ({value!r})"[:60]


def _expect(value: object, kind: type, p: Path, key: str, what: str) -> None:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise WebConfigError(
            f"web configuration file {p}: {key} must be {what}, got {_kind(value)}"
        )


def _check_keys(data: dict[Any, Any], allowed: frozenset[str], p: Path, prefix: str) -> None:
    for key in data:
        if key in allowed:
            continue
        if prefix == "tls_server_config." and key in _TLS_UNSUPPORTED:
            raise WebConfigError(
                f"web configuration file {p}: {prefix}{key} is not supported by this exporter"
            )
        known = ", ".join(sorted(allowed))
        raise WebConfigError(
            f"web configuration file {p}: unknown key {prefix}{key!s} (known keys: {known})"
        )


def _section(data: dict[str, Any], key: str, p: Path) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    _expect(value, dict, p, key, "a mapping")
    return value


def _resolve(value: object, p: Path, base: Path, key: str) -> Path:
    _expect(value, str, p, key, "a file path")
    assert isinstance(value, str)
    if not value:
        raise WebConfigError(f"web configuration file {p}: {key} is empty")
    return base / Path(value).expanduser()


def _require_pem(path: Path, marker: bytes, what: str, p: Path, key: str) -> None:
    """Name the one file that is missing or not PEM, before OpenSSL's vaguer errors."""
    try:
        with path.open("rb") as f:
            head = f.read(1 << 20)
    except OSError as exc:
        raise WebConfigError(
            f"web configuration file {p}: {key} {path} cannot be read: {exc.strerror or exc}"
        ) from None
    if marker not in head:
        raise WebConfigError(f"web configuration file {p}: {key} {path} holds no PEM {what}")


def _load_tls(data: dict[str, Any], p: Path, base: Path) -> TlsConfig:
    prefix = "tls_server_config."
    _check_keys(data, _TLS_KEYS, p, prefix)
    for required in ("cert_file", "key_file"):
        if data.get(required) in (None, ""):
            raise WebConfigError(f"web configuration file {p}: {prefix}{required} is missing")
    cert = _resolve(data["cert_file"], p, base, prefix + "cert_file")
    key = _resolve(data["key_file"], p, base, prefix + "key_file")

    auth = data.get("client_auth_type") or "NoClientCert"
    if not isinstance(auth, str) or auth not in CLIENT_AUTH_TYPES:
        raise WebConfigError(
            f"web configuration file {p}: {prefix}client_auth_type {auth!r} is invalid "
            f"(one of {', '.join(CLIENT_AUTH_TYPES)})"
        )
    ca: Path | None = None
    if data.get("client_ca_file") not in (None, ""):
        ca = _resolve(data["client_ca_file"], p, base, prefix + "client_ca_file")
    if auth == "NoClientCert" and ca is not None:
        # The toolkit refuses this too: a CA without a policy would silently check nothing.
        raise WebConfigError(
            f"web configuration file {p}: {prefix}client_ca_file is set but client_auth_type "
            "is NoClientCert, so client certificates would never be checked"
        )
    if auth != "NoClientCert" and ca is None:
        raise WebConfigError(
            f"web configuration file {p}: {prefix}client_auth_type {auth} requires "
            f"{prefix}client_ca_file"
        )

    min_version = _tls_version(data.get("min_version"), "TLS12", p, prefix + "min_version")
    max_version = _tls_version(data.get("max_version"), None, p, prefix + "max_version")
    assert min_version is not None
    if max_version is not None and TLS_VERSIONS[max_version] < TLS_VERSIONS[min_version]:
        raise WebConfigError(
            f"web configuration file {p}: {prefix}max_version {max_version} is lower than "
            f"min_version {min_version}"
        )

    suites = data.get("cipher_suites")
    suite_names: tuple[str, ...] = ()
    if suites is not None:
        _expect(suites, list, p, prefix + "cipher_suites", "a list of cipher suite names")
        for name in suites:
            if not isinstance(name, str) or (
                name not in _CIPHER_SUITES and name not in _TLS13_SUITES
            ):
                raise WebConfigError(
                    f"web configuration file {p}: {prefix}cipher_suites has unknown cipher "
                    f"suite {name!r}"
                )
        suite_names = tuple(suites)
    prefer = data.get("prefer_server_cipher_suites", True)
    _expect(prefer, bool, p, prefix + "prefer_server_cipher_suites", "true or false")

    _require_pem(cert, b"-----BEGIN CERTIFICATE-----", "certificate", p, prefix + "cert_file")
    _require_pem(key, b"PRIVATE KEY-----", "private key", p, prefix + "key_file")
    if ca is not None:
        _require_pem(
            ca, b"-----BEGIN CERTIFICATE-----", "certificate", p, prefix + "client_ca_file"
        )

    context = _build_context(
        p,
        cert=cert,
        key=key,
        verify_mode=CLIENT_AUTH_TYPES[auth],
        ca=ca,
        min_version=TLS_VERSIONS[min_version],
        max_version=TLS_VERSIONS[max_version] if max_version else None,
        suites=suite_names,
        prefer=prefer,
    )
    return TlsConfig(
        cert_file=cert,
        key_file=key,
        client_auth_type=auth,
        client_ca_file=ca,
        min_version=min_version,
        max_version=max_version,
        cipher_suites=suite_names,
        prefer_server_cipher_suites=prefer,
        context=context,
    )


def _tls_version(value: object, default: str | None, p: Path, key: str) -> str | None:
    if value is None or value == "":
        return default
    if not isinstance(value, str) or value not in TLS_VERSIONS:
        raise WebConfigError(
            f"web configuration file {p}: {key} {value!r} is invalid "
            f"(one of {', '.join(TLS_VERSIONS)})"
        )
    return value


def _build_context(
    p: Path,
    *,
    cert: Path,
    key: Path,
    verify_mode: ssl.VerifyMode,
    ca: Path | None,
    min_version: ssl.TLSVersion,
    max_version: ssl.TLSVersion | None,
    suites: tuple[str, ...],
    prefer: bool,
) -> ssl.SSLContext:
    """The server SSLContext; every OpenSSL failure becomes a WebConfigError naming the file."""
    prefix = "tls_server_config."
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0/1.1; the user asked for them explicitly.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = min_version
        if max_version is not None:
            ctx.maximum_version = max_version
    if min_version < ssl.TLSVersion.TLSv1_2:
        log.warning(
            "%s: min_version below TLS12 is insecure, and OpenSSL's security level may refuse "
            "it anyway",
            p,
        )
    if prefer:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    legacy = [_CIPHER_SUITES[s] for s in suites if s in _CIPHER_SUITES]
    if suites and not legacy:
        log.info("%s: cipher_suites lists only TLS 1.3 suites, which are not configurable", p)
    if legacy:
        try:
            ctx.set_ciphers(":".join(legacy))
        except ssl.SSLError:
            raise WebConfigError(
                f"web configuration file {p}: none of {prefix}cipher_suites is available in "
                f"this OpenSSL ({ssl.OPENSSL_VERSION})"
            ) from None

    encrypted = False

    def no_password() -> bytes:
        # Never let OpenSSL prompt on the terminal for an encrypted key.
        nonlocal encrypted
        encrypted = True
        return b""

    try:
        ctx.load_cert_chain(str(cert), str(key), password=no_password)
    except (ssl.SSLError, OSError) as exc:
        if encrypted:
            problem = f"{prefix}key_file {key} is encrypted; give an unencrypted key"
        elif "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            problem = f"{prefix}key_file {key} does not match {prefix}cert_file {cert}"
        else:
            problem = (
                f"cannot load {prefix}cert_file {cert} with key_file {key} "
                f"({_ssl_reason(exc)}); are they valid PEM?"
            )
        raise WebConfigError(f"web configuration file {p}: {problem}") from None

    ctx.verify_mode = verify_mode
    if ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(ca))
        except (ssl.SSLError, OSError) as exc:
            raise WebConfigError(
                f"web configuration file {p}: {prefix}client_ca_file {ca} holds no usable PEM "
                f"certificate ({_ssl_reason(exc)})"
            ) from None
        if not ctx.get_ca_certs():
            raise WebConfigError(
                f"web configuration file {p}: {prefix}client_ca_file {ca} holds no certificate"
            )
    return ctx


def _ssl_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if reason:
        return str(reason).lower().replace("_", " ")
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return re.sub(r"^\[\w+\]\s*|\s*\(_ssl\.c:\d+\)$", "", str(text))


def _load_headers(value: object, p: Path) -> dict[str, str]:
    key = "http_server_config.headers"
    if value is None:
        return {}
    _expect(value, dict, p, key, "a mapping of header names to values")
    assert isinstance(value, dict)
    headers: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise WebConfigError(f"web configuration file {p}: {key} has invalid name {name!r}")
        if name.lower() in _RESERVED_HEADERS:
            raise WebConfigError(
                f"web configuration file {p}: {key}.{name} is set by the server and cannot be "
                "configured"
            )
        if not isinstance(text, str):
            raise WebConfigError(
                f"web configuration file {p}: {key}.{name} must be a string, got {_kind(text)}"
            )
        if _HEADER_VALUE_BAD.search(text):
            raise WebConfigError(
                f"web configuration file {p}: {key}.{name} contains a control character or "
                "line break"
            )
        headers[name] = text
    return headers


def _load_users(value: object, p: Path) -> dict[str, bytes]:
    key = "basic_auth_users"
    if value is None:
        return {}
    _expect(value, dict, p, key, "a mapping of user names to bcrypt hashes")
    assert isinstance(value, dict)
    users: dict[str, bytes] = {}
    for user, hashed in value.items():
        if not isinstance(user, str):
            raise WebConfigError(
                f"web configuration file {p}: {key} user name {user!r} must be a string (quote it)"
            )
        if ":" in user:
            raise WebConfigError(
                f"web configuration file {p}: {key} user name {user!r} contains ':', which "
                "basic authentication cannot carry"
            )
        users[user] = _bcrypt_hash(hashed, p, f"{key}.{user}")
    return users


def _bcrypt_hash(value: object, p: Path, key: str) -> bytes:
    """The hash as bytes for the bcrypt package, validated by the package itself."""
    bad = f"web configuration file {p}: {key} is not a bcrypt hash ($2a$, $2b$ or $2y$)"
    if not isinstance(value, str):
        raise WebConfigError(f"{bad}, got {_kind(value)}")
    match = _BCRYPT_HASH.fullmatch(value.strip())
    if not match or not 4 <= int(match.group(2)) <= 31:
        raise WebConfigError(bad)
    if int(match.group(2)) > BCRYPT_MAX_COST:
        raise WebConfigError(
            f"web configuration file {p}: {key} has bcrypt cost {int(match.group(2))}, above "
            f"the {BCRYPT_MAX_COST} this exporter accepts (each check would take seconds); "
            "use 10 to 12"
        )
    hashed = value.strip().encode("ascii")
    if match.group(1) == "2y":  # PHP's name for 2b: the same algorithm
        hashed = b"$2b$" + hashed[4:]
    # Let the library parse it too (salt alphabet, lengths), cheaply: the same hash at cost 4.
    try:
        bcrypt.checkpw(b"", hashed[:4] + b"04" + hashed[6:])
    except ValueError:
        raise WebConfigError(bad) from None
    return hashed


# --------------------------------------------------------------------------- basic auth


class BasicAuth:
    """Checks `Authorization: Basic` headers against bcrypt hashes without leaking, by
    timing, which user names exist; successful checks are cached so a scrape every 15 s does
    not pay for bcrypt every time (the exporter-toolkit does the same).

    Failed logins cannot starve real ones: a client address has one check in flight at a
    time (a guesser's next attempts are refused at once), at most `BCRYPT_SLOTS` checks run
    at once, at most `BCRYPT_QUEUE` more wait (up to `BCRYPT_WAIT_SECONDS`) and the rest are
    refused; a (user, password) pair that just failed fails again without bcrypt; and a
    verified pair is answered from the cache without waiting for a slot."""

    CACHE_SIZE = 1024
    FAILED_CACHE_SIZE = 4096
    BCRYPT_SLOTS = 2
    BCRYPT_QUEUE = 8
    BCRYPT_WAIT_SECONDS = 2.0

    def __init__(self, users: dict[str, bytes], *, cache_size: int = CACHE_SIZE) -> None:
        self._users = [(u.encode("utf-8"), h) for u, h in users.items()]
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._failed: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.BCRYPT_SLOTS)
        self._waiting = 0
        self._in_flight: set[str] = set()  # client addresses with a check under way
        self.refused_busy = 0  # checks refused because every bcrypt slot was taken
        # Keyed hash for the cache, so memory never holds a fast unsalted hash of a password.
        self._cache_key = secrets.token_bytes(32)
        self._dummy = self._make_dummy(users) if users else b""

    @staticmethod
    def _make_dummy(users: dict[str, bytes]) -> bytes:
        """A hash at the users' usual cost, checked for unknown users to spend the same time."""
        costs = Counter(int(h[4:6]) for h in users.values())
        cost = max(costs, key=lambda c: (costs[c], c))
        return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))

    @property
    def enabled(self) -> bool:
        """Whether any user is configured; without users every request is allowed."""
        return bool(self._users)

    def check(self, authorization_header: str | None, client: str | None = None) -> bool:
        """True when the header carries a configured user and the right password; `client`
        (the peer address) limits each client to one bcrypt check at a time."""
        if not self._users:
            return True
        creds = _parse_basic(authorization_header)
        if creds is None:
            return False
        user, password = creds
        hashed: bytes | None = None
        for name, candidate in self._users:  # every name is compared: no early exit
            if hmac.compare_digest(name, user):
                hashed = candidate
        known = hashed is not None
        key = hmac.new(
            self._cache_key, len(user).to_bytes(4, "big") + user + password, hashlib.sha256
        ).digest()
        with self._cache_lock:
            if known and key in self._cache:
                self._cache.move_to_end(key)
                return True
            if key in self._failed:
                return False
            if client in self._in_flight or (
                self._waiting >= self.BCRYPT_SLOTS + self.BCRYPT_QUEUE
            ):
                self.refused_busy += 1
                return False
            self._waiting += 1
            if client is not None:
                self._in_flight.add(client)
        target = hashed if hashed is not None else self._dummy
        too_long = len(password) > _BCRYPT_MAX_PASSWORD
        try:
            if not self._slots.acquire(timeout=self.BCRYPT_WAIT_SECONDS):
                self.refused_busy += 1
                return False
            try:
                ok = bcrypt.checkpw(password[:_BCRYPT_MAX_PASSWORD], target)
            except ValueError:
                ok = False
            finally:
                self._slots.release()
        finally:
            with self._cache_lock:
                self._waiting -= 1
                self._in_flight.discard(client)
        ok = ok and known and not too_long
        with self._cache_lock:
            cache, size = (self._cache, self._cache_size) if ok else (self._failed, None)
            cache[key] = None
            cache.move_to_end(key)
            while len(cache) > (size or self.FAILED_CACHE_SIZE):
                cache.popitem(last=False)
        return ok


def _parse_basic(header: str | None) -> tuple[bytes, bytes] | None:
    """(user, password) as bytes from `Basic <base64>`, or None when malformed."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    token = token.strip()
    if not token or not token.isascii():
        return None
    try:
        decoded = binascii.a2b_base64(token, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user, password
