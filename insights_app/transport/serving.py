"""The waitress server behind ``AttributionVisualizer.serve()``: its settings, its loop, and stopping it.

What waitress is told, and why:
- requests that run the models are served by ``threads`` threads of their own; everything else
  (health, config, the page's files, waitress's own errors) by two others, so that no health
  check or page load ever waits behind model work. At most 16 model requests wait for a thread:
  one more is refused at once with a 503;
- a client's hang-up is visible to the request it left (``channel_request_lookahead``), which
  cancels its computation (a client that closes only its sending side is taken as gone too:
  TCP does not tell the two apart before an answer is written);
- bodies over 1 MiB are refused from their ``Content-Length``, before waitress buffers them;
- an idle connection is closed after 30 s, and up to 500 may be open, so that a few idle
  sockets cannot keep everyone else out;
- errors waitress answers itself (431, 413, a bad chunk or URI) are JSON like ours;
- waitress's "Task queue depth is N" warning (one line per request that waits for a thread: about 300 in
  five minutes of ordinary use, since the page loads its files and polls in bursts) is logged at debug
  level, so it shows with ``--debug`` only; waiting is normal here, the bounds above keep it short;
- an answer is sent from memory up to 32 MiB (waitress's default spools anything over 1 MiB to a
  temporary file first: a page of 16 examples at 224x224 is 6.4 MB, 3.1 ms through the file
  against 0.3 ms from memory; the answer is in memory already as Flask's body).

Stopping runs in order: cancel the running computations, stop the loop, close the client
connections (so that writers give up), wait for the request threads, close the listening
socket. Nothing then touches a closed socket, and no torch computation is left running when
the interpreter exits (which aborted the process with SIGABRT before).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from waitress.channel import HTTPChannel
from waitress.task import ErrorTask, ThreadedTaskDispatcher, WSGITask

from ..errors import HTTP_ERROR_MESSAGES
from ..limits import MAX_BODY_BYTES
from ..page import jsonwire
from ..views import Served
from .access import AccessRule, access_token
from .server import OVERLOADED, create_app, view_of

log = logging.getLogger(__name__)
QUICK_THREADS = 2  # threads for the requests that do not run the models
MAX_WAITING_REQUESTS = 16  # model requests waiting for a thread, at most
IDLE_TIMEOUT_S = 30  # an idle (kept-alive) connection is closed after this
CONNECTION_LIMIT = 500
STOP_TIMEOUT_S = 10.0  # what stopping waits for the request threads to finish, at most
LOOP_TIMEOUT_S = 0.2  # how often the loop looks whether it should stop
ANSWER_IN_MEMORY_BYTES = 32 * 2**20  # larger answers are spooled to a temporary file


class JsonErrorTask(ErrorTask):
    """An error waitress answers itself (before the app runs), as ``{"error": ...}``."""

    def execute(self) -> None:
        e = self.request.error
        body = jsonwire.dumps({"error": HTTP_ERROR_MESSAGES.get(e.code) or f"{e.reason.lower()}: {e.body}"}).encode()
        self.status = f"{e.code} {e.reason}"
        self.response_headers.extend([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class MarkedTask(WSGITask):
    """A request whose environ says, when it is so, that the server's queue was full (the app refuses it)."""

    def get_environment(self) -> dict:
        environ = super().get_environment()
        waiting = getattr(self.request, "insights_waiting", 0)
        if waiting:
            environ[OVERLOADED] = waiting
        return environ


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask
    task_class = MarkedTask


class QueueDepthLog:
    """Takes waitress's queue warnings (a dispatcher's ``queue_logger``) and logs them at debug level.

    A queue is how a burst of requests is served, not a fault: as warnings they filled the terminal.
    Set on each dispatcher we own, so waitress's logger itself (and any other server) is left alone.
    """

    def warning(self, message: str, *args: object) -> None:
        log.debug(message, *args)


class RoutingDispatcher:
    """Two pools of request threads: one for the requests that run the models, one for the rest.

    A waitress server hands each complete request (its channel) to ``add_task``; the
    request's path says which pool serves it, and only a request the access rule lets in
    (the token, the host) may wait for a model thread: the others are refused from the quick
    pool, so nobody can fill the queue without the token. A model request that would wait
    behind ``max_waiting`` others goes to the quick pool instead, marked, and the app refuses it.

    It reads waitress's ``ThreadedTaskDispatcher`` internals (its lock, queue and counts):
    setup.cfg pins waitress below 4, and the serving tests exercise every one of them.
    """

    def __init__(
        self, visualizer: Served, access: AccessRule, compute_threads: int, quick_threads: int, max_waiting: int
    ) -> None:
        self.visualizer = visualizer
        self.access = access
        self.max_waiting = max_waiting
        self.compute = ThreadedTaskDispatcher()
        self.compute.queue_logger = QueueDepthLog()
        self.compute.set_thread_count(compute_threads)
        self.quick = ThreadedTaskDispatcher()
        self.quick.queue_logger = QueueDepthLog()
        self.quick.set_thread_count(quick_threads)

    def _computes(self, channel: Any) -> bool:
        request = channel.requests[0] if channel.requests else None
        if request is None or getattr(request, "error", None) is not None:
            return False
        view = view_of(self.visualizer, getattr(request, "path", "") or "")
        if view is None or not view.computes:
            return False
        headers = getattr(request, "headers", {}) or {}
        try:
            cookies = {k: m.value for k, m in SimpleCookie(headers.get("COOKIE", "")).items()}
        except Exception:  # a cookie header the app will not read either
            cookies = {}
        query = parse_qs(getattr(request, "query", "") or "").get("token", [None])[0]
        return self.access.problem(headers.get("HOST", ""), headers.get("AUTHORIZATION", ""), query, cookies) is None

    def add_task(self, channel: Any) -> None:
        if not self._computes(channel):
            self.quick.add_task(channel)
            return
        pool = self.compute
        with pool.lock:  # ThreadedTaskDispatcher.add_task, with the bound checked under the same lock
            idle = len(pool.threads) - pool.stop_count - pool.active_count
            waiting = len(pool.queue) - idle
            if waiting < self.max_waiting:
                pool.queue.append(channel)
                pool.queue_cv.notify()
                return
        channel.requests[0].insights_waiting = waiting
        self.quick.add_task(channel)

    def set_thread_count(self, count: int) -> None:
        self.compute.set_thread_count(count)

    def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
        deadline = time.monotonic() + timeout
        done = self.compute.shutdown(cancel_pending, timeout)
        return self.quick.shutdown(cancel_pending, max(0.1, deadline - time.monotonic())) and done


@dataclass
class ServerHandle:
    """A running waitress server: its port and URL, and how to stop or wait for it."""

    server: Any
    thread: threading.Thread
    host: str
    port: int
    token: str | None
    stopping: threading.Event  # set: the app cancels what it computes
    stop_loop: threading.Event  # set: the loop thread ends

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

    def close(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Cancel the running requests, stop accepting, close every connection, wait for the threads
        (``timeout`` seconds in all, at most)."""
        deadline = time.monotonic() + timeout
        self.stopping.set()
        self.stop_loop.set()
        self.thread.join(timeout=min(1.0, timeout))
        channels = self.server._map
        listeners = _listeners(self.server)
        for channel in list(channels.values()):
            if isinstance(channel, HTTPChannel):
                channel.handle_close()  # a request thread writing to it gives up (ClientDisconnected)
        dispatcher = getattr(self.server, "task_dispatcher", None)
        if dispatcher is not None:
            dispatcher.shutdown(cancel_pending=True, timeout=max(0.1, deadline - time.monotonic()))
        for listener in listeners:
            listener.close()
        for channel in list(channels.values()):  # the loop's trigger
            try:
                channel.close()
            except OSError:
                pass


def _listeners(server: Any) -> list[Any]:
    """The listening server objects (one per address: 'localhost' may be two)."""
    from waitress.server import BaseWSGIServer

    if isinstance(server, BaseWSGIServer):
        return [server]
    return [s for s in server.map.values() if isinstance(s, BaseWSGIServer)]


def start_server(
    visualizer: Served,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    threads: int = 8,
    debug: bool = False,
    quiet: bool = False,
) -> ServerHandle:
    """Bind, start serving in a background thread, and return once connections are accepted."""
    from waitress import wasyncore
    from waitress.server import create_server

    token = access_token(host, token)
    if debug:
        logging.getLogger("insights_app").setLevel(logging.DEBUG)
    threads = max(1, int(threads))
    stopping = threading.Event()
    app = create_app(visualizer, token=token or None, stopping=stopping)
    dispatcher = RoutingDispatcher(
        visualizer, app.extensions["insights_access"], threads, QUICK_THREADS, MAX_WAITING_REQUESTS
    )
    server = create_server(
        app,
        host=host,
        port=int(port),
        threads=threads,
        ident="insights-app",
        channel_timeout=IDLE_TIMEOUT_S,
        cleanup_interval=5,
        connection_limit=CONNECTION_LIMIT,
        max_request_body_size=MAX_BODY_BYTES,
        channel_request_lookahead=1,
        outbuf_overflow=ANSWER_IN_MEMORY_BYTES,
        expose_tracebacks=False,
        _dispatcher=dispatcher,
    )
    listeners = _listeners(server)
    for listener in listeners:
        listener.channel_class = JsonErrorChannel
    actual_port = int(listeners[0].effective_port)
    stop_loop = threading.Event()

    def run() -> None:
        # waitress's own run() loops until its sockets are closed under it; this loop ends when
        # asked, so that closing happens afterwards, from one thread.
        channels = server._map
        while not stop_loop.is_set() and channels:
            try:
                wasyncore.loop(timeout=LOOP_TIMEOUT_S, use_poll=server.adj.asyncore_use_poll, map=channels, count=1)
            except (OSError, ValueError):  # pragma: no cover - a socket closed by the OS
                log.debug("server loop error", exc_info=True)

    thread = threading.Thread(target=run, name=f"insights-app:{actual_port}", daemon=True)
    thread.start()
    handle = ServerHandle(server, thread, host, actual_port, token or None, stopping, stop_loop)
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else host.strip("[]")
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection((probe_host, actual_port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline:
                handle.close()
                raise OSError(f"the server on {host}:{actual_port} did not accept connections within 10 s") from None
            time.sleep(0.02)
    if not quiet:
        print(f"Insights is running at {handle.url}", flush=True)
    return handle
