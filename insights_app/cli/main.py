"""``main()``: the entry point of ``insights-app`` and ``python launch.py``, and its exit statuses.

0 when done, 2 for a mistake the user can fix (one line on standard error, checked before the slow
work where it can be), 1 for anything unexpected (``--debug`` shows the traceback), 130 on Ctrl+C
before the server runs.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import prune
from .arguments import SUBCOMMANDS, parse_args
from .build import build_visualizer
from .errors import EXIT_USAGE, PROG, CliError, one_line, say_error
from .serve import STOP_TIMEOUT_S, serve

if TYPE_CHECKING:
    from insights_app.visualizer import AttributionVisualizer

log = logging.getLogger("insights_app.launch")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``insights-app`` (and ``python launch.py``); returns the exit status."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    if list(sys.argv[1:] if argv is None else argv)[:1] == ["prune"]:
        return prune.run(list(sys.argv[1:] if argv is None else argv)[1:])
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except CliError as exc:
        say_error(str(exc))
        return EXIT_USAGE
    except (OSError, ValueError) as exc:  # a path the OS refuses to look at (too long, NUL byte, ...)
        say_error(f"unusable path: {one_line(str(exc))[:300]}")
        return EXIT_USAGE
    quiet_libraries(args.debug)
    started = time.perf_counter()
    try:
        from data_adapters.errors import AdapterError

        try:
            visualizer = build_visualizer(args)
        except AdapterError as exc:
            raise CliError(str(exc)) from exc
        log.debug("ready in %.1fs", time.perf_counter() - started)
        if args.command in SUBCOMMANDS:
            rc = EXIT_USAGE
            try:
                rc = SUBCOMMANDS[args.command].run(visualizer, args)
                return rc
            finally:
                finish(visualizer, rc)
        return serve(visualizer, args)
    except CliError as exc:
        if debug:
            logging.getLogger(PROG).exception("details")
        say_error(one_line(str(exc)))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:
        if debug:
            raise
        print(
            f"{PROG}: error: unexpected {type(exc).__name__}: {one_line(str(exc))} "
            "(run again with --debug for the traceback)",
            file=sys.stderr,
            flush=True,
        )
        return 1


def finish(visualizer: AttributionVisualizer, rc: int) -> None:
    """After a one-shot command: stop the dataset pass and wait until no model computes, since torch
    computing on another thread while the interpreter exits aborts the process (SIGABRT: seen once
    after a CSV export, whose dataset pass thread was still ending). Still computing after
    STOP_TIMEOUT_S: exit now with ``rc``, skipping the teardown that torch's threads would abort."""
    if not visualizer.stop(timeout=STOP_TIMEOUT_S):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


def quiet_libraries(debug: bool) -> None:
    """Library chatter that a CLI user cannot act on (deprecations, captum's gradient notes)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if debug:
        for name in ("insights_app", "data_adapters", "waitress"):
            logging.getLogger(name).setLevel(logging.DEBUG)
        return
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", module=r"captum(\.|$)")
    warnings.filterwarnings("ignore", message=r".*insecure pickle.*")
