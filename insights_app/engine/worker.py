"""One long-lived thread per model for its tensor work.

The web server answers each request on whichever of its threads is free. Run there, a
model's forward and backward passes would allocate their activations from a different
malloc arena per server thread: measured with resnet18 and pages of 16 examples, resident
memory grew by about 300 MB for each of the 8 server threads that served a page (1.1 GB
to 3.1 GB), and each thread's first page took 15-20 % longer while its arena grew. Funnelling
a model's work through one thread keeps one warm arena per model; the engine runs one
computation per model at a time anyway.
"""

from __future__ import annotations

import functools
import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from ..errors import Busy

T = TypeVar("T")


class ComputeThread:
    """Runs submitted calls, one at a time, on one daemon thread started on first use.

    A call made from that thread itself runs directly, so computations may nest. At most
    ``max_waiting`` calls wait for the thread: one more is refused at once with
    :class:`~insights_app.errors.Busy` (a slow model must not collect an unbounded queue of
    work). The thread ends with :meth:`close` or when its owner is garbage collected (see
    :meth:`close_with`); a daemon thread never keeps the interpreter from exiting, which is
    why :meth:`wait_idle` exists: torch must not be computing when the interpreter exits.
    """

    def __init__(self, name: str, max_waiting: int = 16) -> None:
        self.name = name
        self.max_waiting = max(1, int(max_waiting))
        self._queue: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._pending = 0  # calls submitted and not finished (waiting or running)
        self._pending_lock = threading.Condition()

    def close_with(self, owner: object) -> None:
        """Stop the thread once ``owner`` is garbage collected."""
        weakref.finalize(owner, self.close)

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the compute thread; its result or its exception here."""
        if self._thread is not None and threading.current_thread() is self._thread:
            return fn(*args, **kwargs)
        if self._closed:
            raise RuntimeError(f"{self.name} is closed")
        with self._pending_lock:
            if self._pending > self.max_waiting:
                raise Busy(
                    f"{self.name.split(': ', 1)[-1]} is busy: {self._pending - 1} computations are waiting "
                    "for it; try again shortly"
                )
            self._pending += 1
        future: Future[T] = Future()
        try:
            self._ensure_started()
        except BaseException:
            self._finished(future)
            raise
        future.add_done_callback(self._finished)
        self._queue.put((future, fn, args, kwargs))
        return future.result()

    def _finished(self, _future: Any) -> None:
        with self._pending_lock:
            self._pending -= 1
            self._pending_lock.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no call is waiting or running (True), or ``timeout`` seconds passed (False)."""
        with self._pending_lock:
            return self._pending_lock.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """Let the thread finish what it was given, then end."""
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=_serve, args=(self._queue,), name=self.name, daemon=True)
                thread.start()
                self._thread = thread


def _serve(jobs: queue.SimpleQueue[tuple | None]) -> None:
    # A plain function holding only the queue: the thread keeps no reference to its owner.
    while True:
        job = jobs.get()
        if job is None:
            return
        future, fn, args, kwargs = job
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the waiting caller, which re-raises it
            future.set_exception(exc)
        del job, future, fn, args, kwargs  # drop tensors before waiting for the next job


def on_compute_thread(method: Callable[..., T]) -> Callable[..., T]:
    """Decorate a method of an object with a ``compute`` :class:`ComputeThread`."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        return self.compute.run(method, self, *args, **kwargs)

    return wrapper
