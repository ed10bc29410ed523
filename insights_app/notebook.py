"""The web UI inside Jupyter, as an anywidget talking to the kernel over the widget comm.

Captum Insights shipped a classic-notebook nbextension that JupyterLab 4, Notebook 7 and
VS Code cannot load. Here the page's own ES module (``static/app.js``) is the widget's
front end: anywidget loads it in every frontend that runs ipywidgets 8, and the page's
requests travel as widget messages instead of HTTP, so no port has to be reachable from
the browser (remote kernels, JupyterHub, SSH tunnels to the notebook server only).

Protocol. The browser sends ``{"id", "kind", "body"}`` with kind ``config``, ``examples``
or ``attribute``. The kernel answers with messages carrying the same id: zero or more
``{"id", "event": {...}}`` (the streamed page events of ``examples``), then exactly one
``{"id", "result": ...}`` or ``{"id", "error": "message"}``. Work runs on a small thread
pool owned by the widget, so the kernel stays responsive while captum computes.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import anywidget
import traitlets

from .errors import error_event, error_reply
from .views import Stream

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).with_name("static")

# Appended to app.js (which must stay free of imports): mounts the app with a transport
# that speaks the protocol above over the widget's comm.
WIDGET_ENTRY = r"""
// ---- notebook entry point (insights_app/notebook.py): requests travel over the widget comm ----
function insightsCommTransport(model) {
  const prefix = Math.random().toString(36).slice(2);
  const pending = new Map();
  let counter = 0;
  const onMessage = (msg) => {
    if (!msg || typeof msg !== "object" || typeof msg.id !== "string") return;
    const req = pending.get(msg.id);
    if (!req) return;  // another view of the same widget asked
    if (Object.prototype.hasOwnProperty.call(msg, "event")) {
      if (req.onEvent) {
        try { req.onEvent(msg.event); } catch (err) { console.error("insights: event handler failed", err); }
      }
      return;
    }
    pending.delete(msg.id);
    if (Object.prototype.hasOwnProperty.call(msg, "error")) {
      const err = new Error(String(msg.error));
      const field = /^([A-Za-z_][\w.\-]*): /.exec(err.message);  // as httpTransport: "field: message"
      if (field) err.field = field[1];
      req.reject(err);
    } else req.resolve(msg.result);
  };
  model.on("msg:custom", onMessage);
  const abortError = () => {
    try { return new DOMException("the request was cancelled", "AbortError"); } catch (_) {
      const err = new Error("the request was cancelled");
      err.name = "AbortError";
      return err;
    }
  };
  const request = (kind, body, onEvent, signal) => new Promise((resolve, reject) => {
    if (signal && signal.aborted) { reject(abortError()); return; }
    const id = `${prefix}-${++counter}`;
    const onAbort = () => {
      if (!pending.has(id)) return;
      pending.delete(id);
      try { model.send({ id, kind: "cancel", body: null }); } catch (_) { /* the kernel is gone */ }
      reject(abortError());
    };
    const done = (fn) => (value) => {
      if (signal) signal.removeEventListener("abort", onAbort);
      fn(value);
    };
    pending.set(id, { resolve: done(resolve), reject: done(reject), onEvent });
    if (signal) signal.addEventListener("abort", onAbort);
    try {
      model.send({ id, kind, body: body === undefined ? null : body });
    } catch (err) {
      pending.delete(id);
      done(reject)(err);
    }
  });
  return {
    transport: {
      config: () => request("config", null, null, null),
      examples: (body, onEvent, signal) => request("examples", body, onEvent, signal),
      attribute: (body, signal) => request("attribute", body, null, signal),
    },
    close() {
      model.off("msg:custom", onMessage);
      for (const req of pending.values()) req.reject(new Error("the widget was closed"));
      pending.clear();
    },
  };
}

export default {
  render({ model, el }) {
    const root = document.createElement("div");
    root.className = "insights-app insights-notebook";
    const setHeight = () => {
      const h = Number(model.get("height")) || 0;
      root.style.maxHeight = h > 0 ? `${h}px` : "";
      root.style.overflow = h > 0 ? "auto" : "";
    };
    setHeight();
    model.on("change:height", setHeight);
    el.appendChild(root);
    const comm = insightsCommTransport(model);
    let app = null;
    try {
      app = mount(root, comm.transport, { urlState: false });
    } catch (err) {
      root.textContent = `Insights failed to start: ${err && err.message ? err.message : err}`;
    }
    return () => {
      model.off("change:height", setHeight);
      comm.close();
      if (app && typeof app.destroy === "function") app.destroy();
      else if (typeof app === "function") app();
    };
  },
};
"""


def _read_static(name: str) -> str:
    path = STATIC_DIR / name
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuntimeError(f"the notebook widget needs {path}, which is missing ({exc.strerror}); "
                           "reinstall insights-app") from None


def widget_esm() -> str:
    """The widget's ES module: the page's app.js plus the comm entry point."""
    return _read_static("app.js") + "\n" + WIDGET_ENTRY


def widget_css() -> str:
    return _read_static("style.css")


def handle_request(visualizer: Any, kind: Any, body: Any, emit: Callable[[Dict[str, Any]], None],
                   cancelled: Callable[[], bool] = lambda: False) -> None:
    """Run one request of the page against ``visualizer``; ``emit`` each reply (without its id).

    ``kind`` names one of the visualizer's views, the same that serve ``/api/v1/<kind>``,
    with the same answers: a malformed request is an ``error`` reply (HTTP's 4xx). Over the
    comm a streaming view always streams: its events are ``event`` replies, a failure
    midway an ``error`` event, then ``{"result": None}``. A page whose request was
    ``cancelled`` (the user asked for another one) stops between examples instead of
    computing attributions nobody will see.
    """
    view = visualizer.views.get(kind) if isinstance(kind, str) else None
    if view is None:
        emit({"error": f"unknown request kind {kind!r}; expected one of {', '.join(visualizer.views)}"})
        return
    if view.streams and isinstance(body, dict) and "stream" not in body:
        body = dict(body, stream=True)
    try:
        result = view.run(visualizer, body if view.takes_body else None)
    except Exception as exc:
        emit({"error": error_reply(exc)[1]["error"]})
        return
    if not isinstance(result, Stream):
        emit({"result": result})
        return
    try:
        for event in result:
            if cancelled():
                result.close()
                return
            emit({"event": event})
    except Exception as exc:  # never a traceback in the page; the log has it
        emit({"event": error_event(exc)})
    emit({"result": None})


class InsightsWidget(anywidget.AnyWidget):
    """An :class:`~insights_app.AttributionVisualizer` as a Jupyter widget (``vis.render()``)."""

    _esm = traitlets.Unicode().tag(sync=True)
    _css = traitlets.Unicode().tag(sync=True)
    height = traitlets.Int(900).tag(sync=True)

    def __init__(self, visualizer: Any, height: int = 900, max_workers: int = 4, **kwargs: Any) -> None:
        super().__init__(_esm=widget_esm(), _css=widget_css(), height=int(height), **kwargs)
        self.visualizer = visualizer
        self._pool: Optional[ThreadPoolExecutor] = ThreadPoolExecutor(
            max_workers=max(1, int(max_workers)), thread_name_prefix="insights-widget")
        self._requests: Dict[str, bool] = {}  # in-flight request id -> cancelled
        self._requests_lock = threading.Lock()
        self.on_msg(self._on_custom_message)

    def _on_custom_message(self, _widget: Any, content: Any, _buffers: List[Any]) -> None:
        if not isinstance(content, dict) or not isinstance(content.get("id"), str):
            log.debug("ignoring widget message %r", content)
            return
        request_id, kind = content["id"], content.get("kind")
        with self._requests_lock:
            if kind == "cancel":
                if request_id in self._requests:
                    self._requests[request_id] = True
                return
            self._requests[request_id] = False
        try:
            if self._pool is not None:
                self._pool.submit(self._answer, request_id, kind, content.get("body"))
        except RuntimeError:  # closed meanwhile
            pass

    def _is_cancelled(self, request_id: str) -> bool:
        with self._requests_lock:
            return self._requests.get(request_id, True)

    def _answer(self, request_id: str, kind: Any, body: Any) -> None:
        def emit(reply: Dict[str, Any]) -> None:
            if not self._is_cancelled(request_id):
                self.send({"id": request_id, **reply})

        try:
            if not self._is_cancelled(request_id):
                handle_request(self.visualizer, kind, body, emit, lambda: self._is_cancelled(request_id))
        except Exception:  # the comm itself failed (kernel shutting down): nothing to tell the page
            log.debug("could not answer widget request %s", request_id, exc_info=True)
        finally:
            with self._requests_lock:
                self._requests.pop(request_id, None)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        super().close()
