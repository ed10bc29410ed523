"""The Flask app factory and the waitress server behind ``AttributionVisualizer.serve()``.

No module-level state: ``create_app`` closes over one visualizer and its token, so two
visualizers in one process serve on two ports. Errors are JSON ``{"error": ...}``;
Werkzeug's debugger is never enabled; POSTs must be ``application/json`` (a cross-site
form or ``text/plain`` post is refused); a token guards every route but health when set.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

from flask import Flask, Response, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from .dataset import DatasetError
from .engine import ComputationError
from .methods import ValidationError
from .openapi import openapi_document
from .render import RenderError

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).with_name("static")
TOKEN_COOKIE = "insights_token"
MAX_BODY_BYTES = 1 * 2**20
API = "/api/v1"


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _error(message: str, status: int) -> Response:
    resp = jsonify({"error": message})
    resp.status_code = status
    return resp


def _token_from_request() -> Optional[str]:
    header = request.headers.get("Authorization", "")
    for prefix in ("token ", "Token ", "Bearer ", "bearer "):
        if header.startswith(prefix):
            return header[len(prefix):].strip()
    return request.args.get("token") or request.cookies.get(TOKEN_COOKIE)


def create_app(visualizer: Any, token: Optional[str] = None) -> Flask:
    """A Flask app serving one visualizer; ``token`` (if set) is required on every route but health."""
    app = Flask(__name__, static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, JSON_SORT_KEYS=False, PROPAGATE_EXCEPTIONS=False)
    app.debug = False

    @app.before_request
    def check_token() -> Optional[Response]:
        if not token or request.path == f"{API}/health":
            return None
        given = _token_from_request()
        if not given:
            return _error("a token is required: open the URL printed by the server (…?token=…)", 401)
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _error("invalid token", 403)
        return None

    @app.after_request
    def security_headers(resp: Response) -> Response:
        if token and request.args.get("token") == token:
            resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; connect-src 'self'; frame-ancestors 'self'",
        )
        return resp

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        messages = {
            404: "not found",
            405: "method not allowed",
            413: f"request body too large (limit {MAX_BODY_BYTES} bytes)",
            415: "requests must be JSON (Content-Type: application/json)",
        }
        return _error(messages.get(exc.code or 400, exc.description or exc.name), exc.code or 400)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unexpected error")
        return _error(f"internal error: {type(exc).__name__}", 500)

    def json_body() -> Any:
        if request.mimetype != "application/json":
            raise ValidationError("Content-Type", "must be application/json")
        data = request.get_data(cache=False)
        try:
            return json.loads(data or b"null")
        except (ValueError, UnicodeDecodeError):
            raise ValidationError("body", "is not valid JSON") from None

    def guarded(fn: Callable[[], Any]) -> Response:
        try:
            return fn()
        except ValidationError as exc:
            status = 415 if exc.field == "Content-Type" else 400
            return _error(str(exc), status)
        except (RenderError, ValueError) as exc:
            return _error(str(exc), 400)
        except DatasetError as exc:
            return _error(str(exc), 500)
        except ComputationError as exc:
            return _error(str(exc), 500)

    @app.get("/")
    def index() -> Response:
        return send_from_directory(STATIC_DIR, "index.html", max_age=0)

    @app.get("/static/<path:filename>")
    def static_file(filename: str) -> Response:
        return send_from_directory(STATIC_DIR, filename, max_age=0)

    @app.get(f"{API}/health")
    def health() -> Response:
        return jsonify({"status": "ok"})

    @app.get(f"{API}/config")
    def config() -> Response:
        return guarded(lambda: jsonify(visualizer.config()))

    @app.get(f"{API}/openapi.json")
    def openapi() -> Response:
        return jsonify(openapi_document(visualizer))

    @app.post(f"{API}/examples")
    def examples() -> Response:
        def run() -> Response:
            q = visualizer.parse_page(json_body())
            if not q.stream:
                return jsonify(visualizer.page(q))
            return Response(_ndjson(visualizer.iter_page(q)), mimetype="application/x-ndjson",
                            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        return guarded(run)

    @app.post(f"{API}/attribute")
    def attribute() -> Response:
        return guarded(lambda: jsonify(visualizer.attribute(json_body())))

    return app


def _ndjson(events: Iterator[Dict[str, Any]]) -> Iterator[bytes]:
    """Stream events as JSON lines; a failure mid-page becomes an ``error`` event."""
    try:
        for event in events:
            yield (json.dumps(event) + "\n").encode()
    except (ValidationError, DatasetError, ComputationError, RenderError, ValueError) as exc:
        yield (json.dumps({"type": "error", "error": str(exc)}) + "\n").encode()
    except Exception as exc:  # never a traceback on the wire
        log.exception("page stream failed")
        yield (json.dumps({"type": "error", "error": f"internal error: {type(exc).__name__}"}) + "\n").encode()


@dataclass
class ServerHandle:
    """A running waitress server: its port and URL, and how to stop or wait for it."""

    server: Any
    thread: threading.Thread
    host: str
    port: int
    token: Optional[str]

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def wait(self) -> None:
        try:
            while self.thread.is_alive():
                self.thread.join(0.5)
        except KeyboardInterrupt:
            self.close()

    def close(self) -> None:
        try:
            self.server.close()
        finally:
            self.thread.join(timeout=5)


def start_server(visualizer: Any, host: str = "127.0.0.1", port: int = 0, token: Optional[str] = None,
                 threads: int = 8, debug: bool = False, quiet: bool = False) -> ServerHandle:
    """Bind, start serving in a background thread, and return once connections are accepted."""
    from waitress.server import create_server

    if not is_loopback(host):
        if token == "":
            raise ValueError(f"refusing to bind {host} without a token; pass token=... or bind 127.0.0.1")
        if token is None:
            token = secrets.token_urlsafe(24)
    if debug:
        logging.getLogger("insights_app").setLevel(logging.DEBUG)
    app = create_app(visualizer, token=token or None)
    server = create_server(app, host=host, port=int(port), threads=max(2, int(threads)), ident="insights-app",
                           channel_timeout=300, expose_tracebacks=False)
    actual_port = int(server.effective_port)

    def run() -> None:
        try:
            server.run()
        except (OSError, ValueError):  # closed underneath us
            pass

    thread = threading.Thread(target=run, name=f"insights-app:{actual_port}", daemon=True)
    thread.start()
    handle = ServerHandle(server, thread, host, actual_port, token or None)
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else host.strip("[]")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((probe_host, actual_port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.02)
    if not quiet:
        print(f"Insights is running at {handle.url}", flush=True)
    return handle
