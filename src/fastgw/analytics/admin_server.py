"""The admin server: the query API, ``/metrics`` and the dashboard, on its own port in the exporter.

It lives in the exporter process because that process owns the log store (chDB lets one process
open a folder), and it runs on its own threads so the exporter's batching loop never waits for a
page: the stdlib's threading HTTP server is plenty for a handful of people and a scraper, and it
keeps the workers' event loops free of anything analytic.

Access: bound to loopback it is open unless ``admin.key`` is set; bound anywhere else it refuses
to start without a key. With a key, the API and ``/metrics`` need ``Authorization: Bearer
<admin.key>``, compared in constant time. The dashboard's page and files are served to anyone:
they are the package's own static code, hold no data, and a browser cannot attach a bearer key
to a page navigation; the page asks for the key when the API answers 401.
"""

from __future__ import annotations

import hmac
import logging
import mimetypes
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from fastgw.analytics import aggregates, request_log
from fastgw.analytics.access import host_allowed, key_required
from fastgw.analytics.filters import ParamError, Params
from fastgw.analytics.store import LogStore
from fastgw.errors import Forbidden, GatewayError, NotFound, Unauthorized, error_body

if TYPE_CHECKING:
    from fastgw.config import AdminConfig

log = logging.getLogger("fastgw.admin")

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"
_CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8", ".html": "text/html; charset=utf-8",
                  ".json": "application/json", ".svg": "image/svg+xml", ".map": "application/json",
                  ".woff2": "font/woff2", ".png": "image/png", ".ico": "image/x-icon"}
_SAFE_STATIC = re.compile(r"^[A-Za-z0-9_.\-/]{1,200}$")

Handler = Callable[[Params, list[str]], dict[str, Any]]


class AdminServer:
    """Owns the listening socket, its serving thread and the read connection."""

    def __init__(self, config: AdminConfig, sink_url: str, metrics: Any = None,
                 dashboard_dir: Path = DASHBOARD_DIR, store_handles: int = 1) -> None:
        self.config = config
        self.dashboard_dir = dashboard_dir.resolve()
        self.require_key = key_required(config.host, config.key)
        self.store = LogStore(sink_url, store_handles)
        self.metrics = metrics  # has render(accept) -> (content_type, bytes); None: metrics off
        self.routes: list[tuple[re.Pattern[str], Handler]] = [
            (re.compile(r"^/api/v1/summary$"), lambda p, a: aggregates.summary(self.store, p)),
            (re.compile(r"^/api/v1/timeseries$"), lambda p, a: aggregates.timeseries(self.store, p)),
            (re.compile(r"^/api/v1/breakdown/([^/]+)$"), lambda p, a: aggregates.breakdown(self.store, p, a[0])),
            (re.compile(r"^/api/v1/requests$"), lambda p, a: request_log.list_requests(self.store, p)),
            (re.compile(r"^/api/v1/requests/([^/]+)$"), lambda p, a: request_log.request_detail(self.store, p, a[0])),
            (re.compile(r"^/api/v1/sessions/([^/]+)$"), lambda p, a: request_log.session(self.store, p, a[0])),
            (re.compile(r"^/api/v1/health$"), self._health),
        ]
        self.httpd = ThreadingHTTPServer((config.host, config.port), _make_handler(self))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"AdminServer({self.config.host}:{self.port}, key={'required' if self.require_key else 'none'})"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fastgw-admin", daemon=True)
        self._thread.start()
        log.info("admin server on http://%s:%d", self.config.host, self.port)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.store.close()

    def _health(self, p: Params, args: list[str]) -> dict[str, Any]:
        p.finish()
        return {"status": "ok", "sink": self.store.kind}

    # --- request handling (called on the server's threads) -----------------------------------

    def authorized(self, header: str | None) -> bool:
        if not self.require_key:
            return True
        scheme, _, token = (header or "").strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("utf-8", "replace"), self.config.key.encode("utf-8", "replace"))

    def api(self, path: str, query: str) -> tuple[int, bytes]:
        for pattern, handler in self.routes:
            m = pattern.match(path)
            if m is not None:
                args = [unquote(g) for g in m.groups()]
                try:
                    try:
                        raw = parse_qs(query, keep_blank_values=True, max_num_fields=200)
                    except ValueError:
                        raise ParamError("query", "too many parameters (at most 200)") from None
                    return 200, orjson.dumps(handler(Params(raw), args))
                except GatewayError as exc:
                    return exc.status, exc.body()
        return 404, error_body(f"no such endpoint: {path}", NotFound.type, NotFound.code)

    def static(self, path: str) -> tuple[int, str, bytes]:
        rel = "index.html" if path == "/" else path[len("/static/"):]
        if not _SAFE_STATIC.match(rel) or ".." in rel.split("/") or rel.startswith("/"):
            return 404, "application/json", error_body("no such file", NotFound.type, NotFound.code)
        target = (self.dashboard_dir / rel).resolve()
        if not target.is_relative_to(self.dashboard_dir) or not target.is_file():
            return 404, "application/json", error_body("no such file", NotFound.type, NotFound.code)
        kind = _CONTENT_TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return 200, kind, target.read_bytes()


def _make_handler(server: AdminServer) -> type[BaseHTTPRequestHandler]:
    class AdminHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "fastgw-admin"
        timeout = 30  # an idle or trickling connection gives its thread back

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if not server.require_key and not host_allowed(self.headers.get("Host")):
                err = Forbidden("the admin server without admin.key answers only requests addressed to "
                                "127.0.0.1 or localhost")
                self._send(403, "application/json", err.body())
                return
            public = parts.path == "/" or parts.path.startswith("/static/")
            if not public and not server.authorized(self.headers.get("Authorization")):
                err = Unauthorized("the admin API needs Authorization: Bearer <admin.key>")
                self._send(401, "application/json", err.body(), {"WWW-Authenticate": 'Bearer realm="fastgw-admin"'})
                return
            try:
                if parts.path.startswith("/api/"):
                    status, body = server.api(parts.path, parts.query)
                    self._send(status, "application/json", body)
                elif parts.path == "/metrics":
                    self._metrics()
                elif parts.path == "/" or parts.path.startswith("/static/"):
                    self._send(*server.static(parts.path))
                else:
                    self._send(404, "application/json", error_body("not found", NotFound.type, NotFound.code))
            except Exception:  # one bad request must never take the server down
                log.exception("admin request %s failed", parts.path)
                self._send(500, "application/json", GatewayError().body())

        def _metrics(self) -> None:
            if server.metrics is None:
                self._send(404, "application/json", error_body("metrics are off (metrics.enabled)",
                                                               NotFound.type, NotFound.code))
                return
            content_type, body = server.metrics.render(self.headers.get("Accept", ""))
            self._send(200, content_type, body)

        def _send(self, status: int, content_type: str, body: bytes, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("admin: " + format, *args)

    return AdminHandler


def start_admin(config: AdminConfig, sink_url: str, metrics: Any = None) -> AdminServer | None:
    """The running admin server, or None when it is off or its port is taken (logged: the
    exporter's real job, shipping logs, goes on without it)."""
    if not config.enabled:
        return None
    try:
        server = AdminServer(config, sink_url, metrics)
    except OSError as exc:
        log.error("admin server not started: cannot listen on %s:%d: %s", config.host, config.port,
                  exc.strerror or exc)
        return None
    server.start()
    return server
