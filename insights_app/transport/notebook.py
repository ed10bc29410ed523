"""The web UI inside Jupyter, as an anywidget talking to the kernel over the widget comm.

Captum Insights shipped a classic-notebook nbextension that JupyterLab 4, Notebook 7 and
VS Code cannot load. Here the page's own ES modules (``static/``) are the widget's front
end: anywidget loads ``static/widget.js``, which links the page's modules (sent as the
``_modules`` trait) and mounts the app in every frontend that runs ipywidgets 8. The
page's requests travel as widget messages instead of HTTP, so no port has to be reachable
from the browser (remote kernels, JupyterHub, SSH tunnels to the notebook server only).

Protocol. The browser sends ``{"id", "kind", "body"}``, where kind names one of the
visualizer's views (the same that serve ``/api/v1/<kind>``), or ``cancel``. The kernel
answers with messages carrying the same id: zero or more ``{"id", "event": {...}}`` (the
events of a streaming view), then exactly one ``{"id", "result": ...}`` or ``{"id",
"error": "message"}``. Work runs on a small thread pool owned by the widget, so the kernel
stays responsive while captum computes.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..cancel import Cancel
from ..errors import Cancelled, error_event, error_reply
from ..views import Served, Stream

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent.parent / "static"

WIDGET_ENTRY = "widget.js"  # anywidget's module: links the page's modules and mounts the app
PAGE_ENTRY = "main.js"  # the standalone page's entry, not part of the widget
CSS_IMPORT = re.compile(r'^@import url\("([^"]+)"\);\s*$', re.M)


def _read_static(name: str) -> str:
    path = STATIC_DIR / name
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuntimeError(
            f"the notebook widget needs {path}, which is missing ({exc.strerror}); reinstall insights-app"
        ) from None


def widget_esm() -> str:
    """The widget's ES module (static/widget.js)."""
    return _read_static(WIDGET_ENTRY)


def widget_modules() -> dict[str, str]:
    """Every ES module of the page (path under static/ -> source), for the widget to link."""
    paths = sorted(p.relative_to(STATIC_DIR).as_posix() for p in STATIC_DIR.rglob("*.js"))
    return {path: _read_static(path) for path in paths if path not in (WIDGET_ENTRY, PAGE_ENTRY)}


def widget_css() -> str:
    """The page's style sheet with its ``@import url("...");`` lines replaced by the files they name.

    A widget's sheet is a string, where an import could not resolve: any other form of
    ``@import`` (in style.css or in a file it imports) is refused rather than shipped broken.
    """
    css = CSS_IMPORT.sub(lambda m: _read_static(m.group(1)), _read_static("style.css"))
    if "@import" in css:
        raise RuntimeError(
            'static/style.css may only hold @import url("..."); lines naming sheets that import nothing themselves'
        )
    return css


def handle_request(
    visualizer: Served,
    kind: Any,
    body: Any,
    emit: Callable[[dict[str, Any]], None],
    cancelled: Callable[[], bool] = lambda: False,
) -> None:
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
    if view.streams and (body is None or isinstance(body, dict)):
        body = dict(body or {}, stream=True)  # over the comm, a streaming view always streams
    try:
        result = view.answer(visualizer, body if view.takes_body else None, Cancel(cancelled))
    except Cancelled:  # the page asked for something else: nobody waits for this answer
        return
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
    except Cancelled:
        return
    except Exception as exc:  # never a traceback in the page; the log has it
        emit({"event": error_event(exc)})
    emit({"result": None})


class InsightsWidget(anywidget.AnyWidget):
    """An :class:`~insights_app.AttributionVisualizer` as a Jupyter widget (``vis.render()``).

    Sizing: the widget takes the output cell's width and never more (a narrow cell, or a side
    panel, gets the page's narrow layout: the sidebar above the cards), and ``height`` pixels
    of height, the page scrolling inside them. ``height=0`` or ``None`` gives it no fixed
    height: it grows with its content and the notebook scrolls instead. ``height`` is a trait:
    setting it on a shown widget resizes it.

    Colours: inside a dark JupyterLab or Notebook 7 theme (and VS Code's dark themes) the page
    takes the theme's colours; in a light theme it keeps its own light palette, whatever the
    operating system's preference (that only decides for the standalone page).
    """

    _esm = traitlets.Unicode().tag(sync=True)
    _css = traitlets.Unicode().tag(sync=True)
    _modules = traitlets.Dict().tag(sync=True)
    height = traitlets.Int(900, allow_none=True, min=0).tag(sync=True)  # px; 0 or None: grow with the content

    def __init__(self, visualizer: Served, height: int | None = 900, max_workers: int = 4, **kwargs: Any) -> None:
        super().__init__(
            _esm=widget_esm(),
            _css=widget_css(),
            _modules=widget_modules(),
            height=None if height is None else int(height),
            **kwargs,
        )
        self.visualizer = visualizer
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=max(1, int(max_workers)), thread_name_prefix="insights-widget"
        )
        self._requests: dict[str, bool] = {}  # in-flight request id -> cancelled
        self._requests_lock = threading.Lock()
        self.on_msg(self._on_custom_message)

    def _on_custom_message(self, _widget: Any, content: Any, _buffers: list[Any]) -> None:
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
        def emit(reply: dict[str, Any]) -> None:
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
