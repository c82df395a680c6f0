"""HTTP: /metrics, a landing page, /-/healthy and /-/ready, behind optional TLS and basic
auth (the exporter-toolkit web configuration file), stopped cleanly by SIGTERM.

A threaded WSGI server: each connection has its own thread, so a slow or stalled client
never blocks the others; TLS handshakes happen in that thread too, not in the accept loop.
Clients are bounded: at most `MAX_CONNECTIONS` at once (at the limit a new connection
replaces the oldest one still sending its request head, else it is closed), the whole request
head, TLS handshake included, must arrive within `HEAD_DEADLINE_SECONDS` (not per `recv`, so
a client trickling one byte at a time is still dropped), and running out of file descriptors
backs the accept loop off instead of spinning. On shutdown the server stops accepting, drops
connections that have not sent a request, gives in-flight scrapes `SHUTDOWN_GRACE_SECONDS`,
then cancels the analyses' running queries so the process exits promptly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import resource
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client.exposition import choose_encoder

from . import __version__, allocator
from .analyzer import PerformanceAnalyzer
from .collector import PerfAnalyzerCollector, Scheduler
from .config import Config
from .html.fleet import fleet_page
from .store import Store
from .webconfig import WebConfig, load_web_config

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 15  # a client that takes a response this slowly is dropped
HEAD_DEADLINE_SECONDS = 10.0  # the whole request head, TLS handshake included
MAX_CONNECTIONS = 512  # lowered further when the open-files limit is small
SHUTDOWN_GRACE_SECONDS = 5.0  # in-flight requests get this long after SIGTERM
ACCEPT_BACKOFF_MAX_SECONDS = 1.0  # the longest pause of the accept loop out of descriptors
LOG_EVERY_SECONDS = 30.0  # refused and dropped connections: one summary line at most this often
PROTECT_PROBES = False  # /-/healthy and /-/ready behind basic auth too (--web.protect-probes)
TIMEOUT_HEADER = "HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"

StartResponse = Callable[..., Any]


def parse_listen_address(address: str) -> tuple[str, int]:
    """`:10610`, `0.0.0.0:10610`, `127.0.0.1:10610` or `[::1]:10610` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port
        raise ValueError(f"--web.listen-address {address!r} is not host:port (e.g. :10610)")
    return host.strip("[]"), int(port)


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header allows gzip: listed (or `*`) with a q-value above 0.

    An explicit `gzip` entry wins over `*`, so `gzip;q=0, *` means no gzip."""
    star: bool | None = None
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        name = name.strip().lower()
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0  # a q-value that cannot be read allows nothing
        if name in ("gzip", "x-gzip"):
            return q > 0
        if name == "*":
            star = q > 0
    return bool(star)


class ExporterApp:
    """The WSGI application: routes, auth, and the scrape itself."""

    def __init__(
        self,
        collector: PerfAnalyzerCollector,
        web: WebConfig,
        *,
        telemetry_path: str = "/metrics",
        table: str = "",
        protect_probes: bool | None = None,
    ) -> None:
        self.collector = collector
        self.web = web
        self.auth = web.basic_auth()
        self.telemetry_path = telemetry_path
        self.table = table
        # probes answer without credentials by default: a kubelet or a load balancer has none
        self.protect_probes = PROTECT_PROBES if protect_probes is None else protect_probes

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        body = self._route(environ, start_response, method, environ.get("PATH_INFO", "/"))
        return [b""] if method == "HEAD" else body  # HEAD: the headers of GET, no body

    def _route(
        self, environ: dict[str, Any], start_response: StartResponse, method: str, path: str
    ) -> list[bytes]:
        probe = path in ("/-/healthy", "/-/ready")
        if (
            self.auth.enabled
            and (self.protect_probes or not probe)
            and not self.auth.check(environ.get("HTTP_AUTHORIZATION"), environ.get("REMOTE_ADDR"))
        ):
            return self._reply(
                start_response,
                "401 Unauthorized",
                b"Unauthorized\n",
                extra=[("WWW-Authenticate", 'Basic realm="perf-analyzer"')],
            )
        if method not in ("GET", "HEAD"):
            return self._reply(
                start_response,
                "405 Method Not Allowed",
                b"Method Not Allowed\n",
                extra=[("Allow", "GET, HEAD")],
            )
        if path == self.telemetry_path:
            return self._metrics(environ, start_response)
        if path == "/":
            return self._reply(
                start_response, "200 OK", self._landing(), "text/html; charset=utf-8"
            )
        if path == "/-/healthy":
            return self._reply(start_response, "200 OK", b"Healthy\n")
        if path == "/-/ready":
            if self.collector.scheduler.ever_reached_database:
                return self._reply(start_response, "200 OK", b"Ready\n")
            return self._reply(
                start_response, "503 Service Unavailable", b"Not ready: no database contact yet\n"
            )
        return self._reply(start_response, "404 Not Found", b"Not Found\n")

    def _metrics(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        deadline = time.monotonic() + self._timeout(environ.get(TIMEOUT_HEADER))
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        scraped = self.collector.exposition(encoder, content_type, deadline)
        body, headers = scraped.raw, []
        if accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", "")):
            body = scraped.gzipped()
            headers.append(("Content-Encoding", "gzip"))
        return self._reply(start_response, "200 OK", body, content_type, extra=headers)

    def _timeout(self, header: str | None) -> float:
        """Seconds this scrape may take: Prometheus's timeout header minus a margin."""
        cfg = self.collector.config.exporter
        try:
            timeout = float(header) if header else cfg.scrape_timeout_seconds
        except ValueError:
            timeout = cfg.scrape_timeout_seconds
        return max(0.1, timeout - cfg.scrape_timeout_margin_seconds)

    def _landing(self) -> bytes:
        """The fleet page, from the latest cached results: no database work per view."""
        results = {job.name: job.result for job in self.collector.scheduler.snapshot()}
        return fleet_page(
            results, version=__version__, table=self.table, telemetry_path=self.telemetry_path
        ).encode()

    def _reply(
        self,
        start_response: StartResponse,
        status: str,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        *,
        extra: list[tuple[str, str]] | None = None,
    ) -> list[bytes]:
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
        ]
        headers += list(self.web.headers.items()) + (extra or [])
        start_response(status, headers)
        return [body]


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one, so a burst of clients or a pool of
    connections is not refused at a distribution's low default; returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.info("open files limit raised from %d to %d", soft, target)
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("open files limit stays at %d: %s", soft, exc)
    return soft


class _Connection:
    """One accepted socket: when it arrived and whether its request head is complete."""

    __slots__ = ("deadline", "dropped", "head_done", "sock", "thread")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.head_done = False
        self.dropped = False
        self.thread: threading.Thread | None = None

    def drop(self) -> None:
        """Wake the thread blocked on this socket: its next read or write fails at once."""
        self.dropped = True
        # the plain socket's shutdown, also for TLS: no close_notify to a stalled peer
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)


class ConnectionLimits:
    """The live connections, the cap on them, the head deadline, and the counters.

    A reaper thread drops connections whose head is late; at the cap a new connection
    replaces the oldest one still sending its head (a scraper sends its head at once, a
    slow client never finishes it), else it is refused."""

    def __init__(self, max_connections: int, head_deadline: float) -> None:
        self.max_connections = max_connections
        self.head_deadline = head_deadline
        self._live: dict[int, _Connection] = {}  # insertion order: oldest first
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.counts = {"accepted": 0, "refused": 0, "evicted": 0, "head_timeout": 0}
        self.accept_errors = 0
        self._logged = dict(self.counts, accept_errors=0)
        self._last_log = 0.0
        self._reaper = threading.Thread(target=self._reap, name="http-reaper", daemon=True)
        self._reaper.start()

    def admit(self, sock: socket.socket) -> _Connection | None:
        """Register a new connection, or None when it must be refused."""
        with self._lock:
            if len(self._live) >= self.max_connections:
                victim = next(
                    (c for c in self._live.values() if not c.head_done and not c.dropped), None
                )
                if victim is None:
                    self.counts["refused"] += 1
                    return None
                self._remove(victim)
                victim.drop()
                self.counts["evicted"] += 1
            conn = _Connection(sock, time.monotonic() + self.head_deadline)
            self._live[id(sock)] = conn
            self.counts["accepted"] += 1
            return conn

    def _remove(self, conn: _Connection) -> None:
        self._live.pop(id(conn.sock), None)

    def get(self, sock: socket.socket) -> _Connection | None:
        with self._lock:
            conn = self._live.get(id(sock))
            return conn if conn is not None and conn.sock is sock else None

    def release(self, sock: socket.socket) -> None:
        with self._lock:
            conn = self._live.get(id(sock))
            if conn is not None and conn.sock is sock:
                self._remove(conn)

    def live(self) -> list[_Connection]:
        with self._lock:
            return list(self._live.values())

    def _reap(self) -> None:
        while not self._stop.wait(0.25):
            now = time.monotonic()
            with self._lock:
                late = [c for c in self._live.values() if not c.head_done and c.deadline < now]
                for conn in late:
                    self._remove(conn)
                self.counts["head_timeout"] += len(late)
            for conn in late:
                conn.drop()
            self._maybe_log(now)

    def _maybe_log(self, now: float) -> None:
        """One warning line at most every LOG_EVERY_SECONDS while clients are turned away."""
        # TODO: expose these counters as perf_analyzer_http_* metrics (collector.py).
        with self._lock:
            current = dict(self.counts, accept_errors=self.accept_errors)
        turned_away = {k: current[k] - self._logged[k] for k in current if k != "accepted"}
        if not any(turned_away.values()) or now - self._last_log < LOG_EVERY_SECONDS:
            return
        self._last_log, self._logged = now, current
        log.warning(
            "http: %d connections refused at the limit of %d, %d replaced while sending their "
            "request head, %d dropped for not sending it within %g s, %d accept failures "
            "(totals since start: %s)",
            turned_away["refused"],
            self.max_connections,
            turned_away["evicted"],
            turned_away["head_timeout"],
            self.head_deadline,
            turned_away["accept_errors"],
            ", ".join(f"{k} {v}" for k, v in current.items()),
        )

    def close(self) -> None:
        self._stop.set()
        self._maybe_log(time.monotonic() + LOG_EVERY_SECONDS)


class _Handler(WSGIRequestHandler):
    timeout = REQUEST_TIMEOUT_SECONDS
    server: _Server

    def setup(self) -> None:
        self.conn: _Connection = self.server.connection_of(self.request)
        self.request.settimeout(min(self.timeout, self.server.limits.head_deadline))
        if isinstance(self.request, ssl.SSLSocket):  # TLS: handshake here, within the deadline
            self.request.do_handshake()
        super().setup()

    def parse_request(self) -> bool:
        ok = super().parse_request()  # reads the headers: the head is complete
        self.conn.head_done = True
        self.request.settimeout(self.timeout)
        return ok

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s %s", self.address_string(), format % args)

    def handle(self) -> None:
        try:
            super().handle()
        except (OSError, ValueError) as exc:  # TLS failures, resets, timeouts: one line
            log.debug("http connection from %s ended: %s", self.client_address[0], exc)


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # shutdown waits for requests itself, within a grace period
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128  # listen backlog: 50 scrapers connecting at once are not refused
    limits: ConnectionLimits
    _accept_backoff = 0.0

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            request = super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                # the listening socket stays readable: without a pause this loop would spin
                self.limits.accept_errors += 1
                self._accept_backoff = min(
                    ACCEPT_BACKOFF_MAX_SECONDS, max(0.01, 2 * self._accept_backoff)
                )
                time.sleep(self._accept_backoff)
            raise
        self._accept_backoff = 0.0
        return request

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return self.limits.admit(request) is not None  # refused: socketserver closes it

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        self.connection_of(request).thread = thread
        thread.start()

    def connection_of(self, request: Any) -> _Connection:
        conn = self.limits.get(request)
        if conn is None:  # replaced at the limit before its thread started
            conn = _Connection(request, 0.0)
            conn.drop()
        return conn

    def shutdown_request(self, request: Any) -> None:
        self.limits.release(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("http request from %s failed", client_address[0], exc_info=True)


class _Server6(_Server):
    """The server on an IPv6 address."""

    address_family = socket.AF_INET6


class ExporterServer:
    """Binds, serves in a background thread, and stops in order."""

    def __init__(
        self,
        app: ExporterApp,
        listen_address: str,
        *,
        max_connections: int = MAX_CONNECTIONS,
        head_deadline: float = HEAD_DEADLINE_SECONDS,
    ) -> None:
        host, port = parse_listen_address(listen_address)
        open_files = raise_open_files_limit()
        # leave descriptors for the database pool, the log and the certificates
        max_connections = max(1, min(max_connections, open_files - 64))
        server_class: type[_Server] = _Server6 if ":" in host else _Server
        try:
            self.httpd = server_class((host, port), _Handler, bind_and_activate=True)
        except OSError as exc:
            raise OSError(f"cannot listen on {listen_address}: {exc.strerror or exc}") from None
        self.httpd.limits = ConnectionLimits(max_connections, head_deadline)
        app.collector.http_limits = self.httpd.limits  # served as perf_analyzer_http_*
        self.httpd.set_app(app)
        context = app.web.ssl_context()
        if context is not None:
            self.httpd.socket = context.wrap_socket(
                self.httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self.app = app
        self.port = self.httpd.server_address[1]
        self.scheme = "https" if context is not None else "http"
        self._thread: threading.Thread | None = None

    @property
    def limits(self) -> ConnectionLimits:
        return self.httpd.limits

    def start(self) -> None:
        self.app.collector.scheduler.start_ticker()
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="http", kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()

    def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop accepting, drop clients that sent no request, give in-flight requests
        `grace` seconds, then cancel the analyses' queries and close them."""
        self.httpd.shutdown()
        self.httpd.server_close()
        deadline = time.monotonic() + grace
        for conn in self.limits.live():
            if not conn.head_done:
                conn.drop()
        for conn in self.limits.live():
            if conn.thread is not None:
                conn.thread.join(max(0.0, deadline - time.monotonic()))
        late = [c for c in self.limits.live() if c.thread is not None and c.thread.is_alive()]
        if late:
            log.warning("shutdown: %d requests still running after %g s, dropped", len(late), grace)
            for conn in late:
                conn.drop()
        self.app.collector.scheduler.close(wait_for_runs=False)
        # an analysis may start its next query after a cancel: repeat until all are idle
        cancelled, until = 0, time.monotonic() + 3.0
        while (n := cancel_running_queries()) and time.monotonic() < until:
            cancelled += n
            time.sleep(0.2)
        if cancelled:
            log.info("shutdown: cancelled %d running queries", cancelled)
        self.limits.close()


def cancel_running_queries() -> int:
    """Ask the server to cancel the statement of every busy connection of this process, so
    that an analysis waiting on a lock does not keep the process alive until its statement
    timeout. The stores register the connections they lend out (`store.lent_connections`)."""
    import psycopg
    from psycopg.pq import TransactionStatus

    from .store import lent_connections

    cancelled = 0
    for conn in lent_connections():
        if conn.closed or conn.info.transaction_status != TransactionStatus.ACTIVE:
            continue
        try:
            conn.cancel_safe(timeout=2.0)
            cancelled += 1
        except psycopg.Error as exc:
            log.debug("cancel failed: %s", exc)
    return cancelled


def run_exporter(
    app: ExporterApp,
    listen_address: str,
    *,
    on_ready: Callable[[ExporterServer], None] | None = None,
    grace: float = SHUTDOWN_GRACE_SECONDS,
) -> None:
    """Serve until SIGTERM or SIGINT, then stop in order (in-flight scrapes get `grace`)."""
    import signal

    server = ExporterServer(app, listen_address)
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        server.start()
        log.info("listening on %s (%s)", listen_address, server.scheme)
        if on_ready is not None:
            on_ready(server)
        stop.wait()
        log.info("shutting down")
    finally:
        server.stop(grace)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def start_exporter(
    store: Store,
    config: Config,
    *,
    listen_address: str,
    telemetry_path: str,
    web_config_file: str | None,
    max_series: int | None = None,
    cpu_count: int | None = None,
    on_ready: Callable[[ExporterServer], None] | None = None,
) -> None:
    """Wire the analyzer, its scheduler, the collector and the HTTP server over `store`,
    and serve until SIGTERM/SIGINT. `max_series` overrides the configured series budget."""
    if not telemetry_path.startswith("/"):
        raise ValueError("--web.telemetry-path must start with /")
    if max_series is not None:
        config = dataclasses.replace(
            config, exporter=dataclasses.replace(config.exporter, max_series=max_series)
        )
    web = load_web_config(web_config_file)
    allocator.return_freed_memory()
    analyzer = PerformanceAnalyzer(store, cpu_count=cpu_count, config=config)
    app = ExporterApp(
        PerfAnalyzerCollector(Scheduler(analyzer, config)),
        web,
        telemetry_path=telemetry_path,
        table=store.table_name,
    )
    run_exporter(app, listen_address, on_ready=on_ready)
