"""``insights-app [SOURCE FLAGS]``: serve the page until Ctrl+C or SIGTERM, then stop in order."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

from insights_app.transport.access import is_loopback

from .errors import CliError, Say, say
from .preflight import port_error

if TYPE_CHECKING:
    from insights_app.visualizer import AttributionVisualizer

STOP_TIMEOUT_S = 10.0  # what stopping waits for running computations


def serve(visualizer: AttributionVisualizer, args: argparse.Namespace, out: Say = say) -> int:
    """Start the server, print its URL, optionally open a browser, and wait for Ctrl+C / SIGTERM."""
    try:
        visualizer.serve(port=args.port, host=args.host, token=args.token, quiet=True)
    except OSError as exc:
        raise port_error(exc, args.host, args.port) from None
    except ValueError as exc:  # e.g. a non-loopback address with an empty token
        raise CliError(str(exc)) from None
    url = visualizer.url
    assert url is not None  # set once serve() returned
    out(f"Insights is running at {url}")
    if not is_loopback(args.host):
        out(
            f"listening on {args.host}: from another machine, use this machine's address in the URL "
            "(the token is required)"
        )
    if args.open:
        import webbrowser

        if not webbrowser.open(url):
            out("could not open a browser; open the URL above yourself")
    out("Press Ctrl+C to stop.")
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_signal) if in_main_thread else None
    previous_int = signal.getsignal(signal.SIGINT) if in_main_thread else None
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl+C must not interrupt the shutdown
        # Running requests are cancelled (they stop before their next forward pass), connections
        # closed, and the models' threads waited for: torch computing while the interpreter
        # exits aborts the process (SIGABRT).
        try:
            idle = visualizer.stop(timeout=STOP_TIMEOUT_S)
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, previous_int)
    if not idle:
        out(f"stopped (a computation was still running after {STOP_TIMEOUT_S:g} s)")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # skip the interpreter's teardown, which torch's running threads would abort
    out("stopped")
    return 0
