"""The Flask app: the page, its files, and one route per view (served by waitress, see serving.py).

No module-level state: ``create_app`` closes over one visualizer and its token, so two
visualizers in one process serve on two ports. Errors are JSON ``{"error": ...}``;
Werkzeug's debugger is never enabled; POSTs must be ``application/json`` (a cross-site
form or ``text/plain`` post is refused); a token guards every route but health when set.
Without a token the server answers only requests whose ``Host`` is a loopback name, so a
web page cannot reach it through DNS rebinding.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request, send_from_directory
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from ..cancel import Cancel
from ..errors import HTTP_ERROR_MESSAGES, Busy, UnsupportedMediaType, ValidationError, error_event, error_reply
from ..limits import MAX_BODY_BYTES
from ..page import jsonwire
from ..views import API_PREFIX, Served, Stream, View
from .access import AccessRule

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent.parent / "static"
MIME_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}
UNAUTHORIZED_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Insights: token required</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto; line-height: 1.5">
<h1>A token is required</h1><p>This Insights server was started with a token. Open the URL that the
server printed when it started (it ends with <code>?token=&hellip;</code>); the browser then remembers
the token for this server.</p></body></html>"""


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing NaN and infinities (see jsonwire)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("default", self.default)
        kwargs.setdefault("ensure_ascii", self.ensure_ascii)
        kwargs.setdefault("sort_keys", self.sort_keys)
        return jsonwire.dumps(obj, **kwargs)


def _json(payload: Any, status: int = 200) -> Response:
    resp = jsonify(payload)
    resp.status_code = status
    return resp


def json_body() -> Any:
    """The request's JSON body (None when empty); refuses non-JSON content types."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType()
    data = request.get_data(cache=False)
    try:
        return json.loads(data or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise ValidationError("body", "is not valid JSON") from None


def ndjson(stream: Stream) -> Iterator[bytes]:
    """A streamed answer as JSON lines; a failure midway becomes an ``error`` event that ends it."""
    try:
        for event in stream:
            yield (jsonwire.dumps(event) + "\n").encode()
    except Exception as exc:  # never a traceback on the wire
        yield (jsonwire.dumps(error_event(exc)) + "\n").encode()
    finally:
        stream.close()


def view_of(visualizer: Served, path: str) -> View | None:
    """The view that serves ``path`` (``/api/v1/<kind>``), looked up when the request comes."""
    if not path.startswith(API_PREFIX + "/"):
        return None
    return visualizer.views.get(path[len(API_PREFIX) + 1 :])


OVERLOADED = "insights_app.overloaded"  # set in the WSGI environ by the server when its queue is full (see serving)


def answer(visualizer: Served, view: View, stopping: threading.Event | None) -> Response:
    """Run one view on this request: parse the body, run it, answer JSON or NDJSON.

    A computing view is refused at once when the server has too many waiting (it says so in
    the environ), and is cancelled when its client hangs up or the server stops.
    """
    allowed = [view.http_method] + (["HEAD"] if view.http_method == "GET" else [])
    if request.method == "OPTIONS":
        return Response(status=200, headers={"Allow": ", ".join(allowed + ["OPTIONS"])})
    if request.method not in allowed:
        raise MethodNotAllowed(valid_methods=allowed + ["OPTIONS"])
    body = json_body() if view.takes_body else None
    waiting = request.environ.get(OVERLOADED)
    if view.computes and waiting:
        raise Busy(f"the server is busy: {waiting} requests are waiting for the models; try again shortly")
    cancel = Cancel(request.environ.get("waitress.client_disconnected"), stopping.is_set if stopping else None)
    result = view.answer(visualizer, body, cancel)
    if isinstance(result, Stream):
        return Response(
            ndjson(result),
            mimetype="application/x-ndjson",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
    return jsonify(result)


def create_app(
    visualizer: Served,
    token: str | None = None,
    *,
    allowed_hosts: Iterable[str] = (),
    stopping: threading.Event | None = None,
) -> Flask:
    """A Flask app serving one visualizer: the page, its static files, and its views.

    ``stopping``, once set, cancels what its requests compute.

    ``/api/v1/<kind>`` runs the view ``kind`` of ``visualizer.views`` as it is when the request
    comes, so a view registered after the server started is served too. With ``token`` set,
    every route but the public views (health) needs it: from the URL
    (``?token=``, which also sets a cookie so the page keeps working), the cookie, or an
    ``Authorization: token <t>`` / ``Bearer <t>`` header. Without a token only loopback
    ``Host`` names (and ``allowed_hosts``) are answered.
    """
    app = Flask(__name__, static_folder=None)
    app.json = StrictJSONProvider(app)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, JSON_SORT_KEYS=False, PROPAGATE_EXCEPTIONS=False)
    app.debug = False
    rule = AccessRule(token, frozenset(h.lower() for h in allowed_hosts))
    app.extensions["insights_access"] = rule  # the server's thread router asks it too

    def refuse(message: str, status: int, page: str | None = None) -> Response:
        """JSON for the API; a short HTML page for someone opening the app without its token."""
        if page and request.method == "GET" and request.path == "/":
            return Response(page, status=status, mimetype="text/html")
        return _json({"error": message}, status)

    @app.before_request
    def check_access() -> Response | None:
        view = view_of(visualizer, request.path)
        if view is not None and view.public:
            return None
        problem = rule.problem(
            request.host, request.headers.get("Authorization", ""), request.args.get("token"), request.cookies
        )
        if problem is None:
            return None
        return refuse(*problem, UNAUTHORIZED_PAGE if token else None)

    @app.after_request
    def security_headers(resp: Response) -> Response:
        if token and request.args.get("token") == token:
            resp.set_cookie(rule.cookie, token, httponly=True, samesite="Strict")
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
        resp = _json({"error": HTTP_ERROR_MESSAGES.get(exc.code or 400, exc.description or exc.name)}, exc.code or 400)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            resp.headers["Allow"] = ", ".join(exc.valid_methods)
        return resp

    @app.errorhandler(Exception)
    def any_error(exc: Exception) -> Response:
        status, payload = error_reply(exc)
        return _json(payload, status)

    def static_response(filename: str) -> Response:
        resp = send_from_directory(STATIC_DIR, filename, max_age=0)
        # Module scripts need a JavaScript type; some systems map .js to text/plain.
        mime = MIME_TYPES.get(Path(filename).suffix.lower())
        if mime:
            resp.mimetype = mime
        return resp

    @app.get("/")
    def index() -> Response:
        return static_response("index.html")

    @app.get("/static/<path:filename>")
    def static_file(filename: str) -> Response:
        return static_response(filename)

    # Every usual verb reaches the view lookup, so an unknown kind is a 404 whatever the verb.
    @app.route(
        f"{API_PREFIX}/<path:kind>",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        provide_automatic_options=False,
    )
    def api(kind: str) -> Response:
        view = visualizer.views.get(kind)
        if view is None:
            raise NotFound()
        return answer(visualizer, view, stopping)

    return app
