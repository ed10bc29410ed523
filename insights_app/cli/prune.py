"""``insights-app prune --store DIR [--max-size SIZE]``: needs no model, so it skips the source flags."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import EXIT_USAGE, PROG, one_line, say, say_error


def run(argv: Sequence[str]) -> int:
    """insights-app prune --store DIR [--max-size SIZE]: needs no model, so it skips the source flags."""
    from insights_app.errors import StoreError
    from insights_app.store.prune import prune_command

    try:
        return prune_command(argv, PROG, say)
    except SystemExit as exc:  # --help, or argparse's usage error (status 2)
        return int(exc.code or 0)
    except (StoreError, ValueError) as exc:
        say_error(one_line(str(exc)))
        return EXIT_USAGE
