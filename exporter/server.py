"""HTTP: /metrics, a landing page, /-/healthy and /-/ready, behind optional TLS and basic
auth (the exporter-toolkit web configuration file), stopped cleanly by SIGTERM.

A threaded WSGI server: each request has its own thread and a socket timeout, so a slow or
stalled client never blocks the others; TLS handshakes happen in that thread too, not in
the accept loop. On shutdown the server stops accepting, lets in-flight scrapes finish, and
only then the analyses and the database pool are closed.
"""

from __future__ import annotations

import dataclasses
import html
import logging
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
from .store import Store
from .webconfig import WebConfig, load_web_config

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 15  # a client that sends nothing for this long is dropped
TIMEOUT_HEADER = "HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"

StartResponse = Callable[..., Any]


def parse_listen_address(address: str) -> tuple[str, int]:
    """`:10610`, `0.0.0.0:10610`, `127.0.0.1:10610` or `[::1]:10610` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port
        raise ValueError(f"--web.listen-address {address!r} is not host:port (e.g. :10610)")
    return host.strip("[]"), int(port)


class ExporterApp:
    """The WSGI application: routes, auth, and the scrape itself."""

    def __init__(
        self,
        collector: PerfAnalyzerCollector,
        web: WebConfig,
        *,
        telemetry_path: str = "/metrics",
        table: str = "",
    ) -> None:
        self.collector = collector
        self.web = web
        self.auth = web.basic_auth()
        self.telemetry_path = telemetry_path
        self.table = table

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        body = self._route(environ, start_response, method, environ.get("PATH_INFO", "/"))
        return [b""] if method == "HEAD" else body  # HEAD: the headers of GET, no body

    def _route(
        self, environ: dict[str, Any], start_response: StartResponse, method: str, path: str
    ) -> list[bytes]:
        if self.auth.enabled and not self.auth.check(environ.get("HTTP_AUTHORIZATION")):
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
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
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
        path = html.escape(self.telemetry_path)
        return (
            "<!doctype html><html><head><title>perf-analyzer</title></head><body>"
            f"<h1>perf-analyzer {html.escape(__version__)}</h1>"
            "<p>SRE performance analysis of node and container samples, for Prometheus.</p>"
            f"<p>Table: <code>{html.escape(self.table)}</code></p>"
            f'<ul><li><a href="{path}">{path}</a></li>'
            '<li><a href="/-/healthy">/-/healthy</a></li>'
            '<li><a href="/-/ready">/-/ready</a></li></ul>'
            "</body></html>\n"
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


class _Handler(WSGIRequestHandler):
    timeout = REQUEST_TIMEOUT_SECONDS

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        if isinstance(self.request, ssl.SSLSocket):  # TLS: handshake here, with the timeout
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s %s", self.address_string(), format % args)

    def handle(self) -> None:
        try:
            super().handle()
        except (OSError, ValueError) as exc:  # TLS failures, resets, timeouts: one line
            log.debug("http connection from %s ended: %s", self.client_address[0], exc)


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = False  # in-flight scrapes finish on shutdown
    block_on_close = True
    allow_reuse_address = True
    request_queue_size = 128  # listen backlog: 50 scrapers connecting at once are not refused

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("http request from %s failed", client_address[0], exc_info=True)


class ExporterServer:
    """Binds, serves in a background thread, and stops in order."""

    def __init__(self, app: ExporterApp, listen_address: str) -> None:
        host, port = parse_listen_address(listen_address)
        server_class = _Server
        if ":" in host:
            server_class = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
        try:
            self.httpd = server_class((host, port), _Handler, bind_and_activate=True)
        except OSError as exc:
            raise OSError(f"cannot listen on {listen_address}: {exc.strerror or exc}") from None
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

    def start(self) -> None:
        self.app.collector.scheduler.start_ticker()
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="http", kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, wait for in-flight requests, then close the analyses."""
        self.httpd.shutdown()
        self.httpd.server_close()  # joins the request threads
        self.app.collector.scheduler.close(wait_for_runs=False)


def run_exporter(
    app: ExporterApp,
    listen_address: str,
    *,
    on_ready: Callable[[ExporterServer], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then stop in order (in-flight scrapes finish)."""
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
        server.stop()
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
