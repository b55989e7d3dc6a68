"""The daemon's HTTP endpoints on its metrics port: /healthz, /readyz and /metrics."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("multinet.daemon.http")

# Each probe answers (ok, why not).
Probe = Callable[[], tuple[bool, str]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class Endpoints:
    def __init__(self, address: str, port: int, healthy: Probe, ready: Probe,
                 metrics: Callable[[], tuple[bytes, str]]) -> None:
        self.address, self.port = address, port
        self.healthy, self.ready, self.metrics = healthy, ready, metrics
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        endpoints = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                endpoints.answer(self)

            do_HEAD = do_GET  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                log.debug("http %s", format % args)

        server_class = _Server
        if ":" in self.address:
            server_class = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
        self._server = server_class((self.address, self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="multinet-http", daemon=True)
        self._thread.start()

    def answer(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        if path == "/metrics":
            body, content_type = self.metrics()
            status = 200
        elif path in ("/healthz", "/readyz"):
            ok, why = (self.healthy if path == "/healthz" else self.ready)()
            status, body, content_type = (200 if ok else 503), (why or "ok").encode(), \
                "text/plain; charset=utf-8"
        else:
            status, body, content_type = 404, b"not found", "text/plain; charset=utf-8"
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(body)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
