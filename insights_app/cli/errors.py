"""What every subcommand shares to talk to the user: its one-line errors, its output, its notes.

A mistake the user can fix is a :class:`CliError`: one line on standard error and exit status
:data:`EXIT_USAGE`, never a traceback (``--debug`` shows them).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable

PROG = "insights-app"
EXIT_USAGE = 2
Say = Callable[[str], None]


class CliError(Exception):
    """A mistake the user can fix: printed as one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line (the usage text is in --help)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{message} (see {PROG} --help)")


def say(message: str) -> None:
    """What the command reports as it goes: a line on standard output, flushed (a log reads it live)."""
    print(message, flush=True)


def say_note(message: str) -> None:
    """A note on standard error: something the user should know at start-up but need not fix."""
    print(f"{PROG}: note: {message}", file=sys.stderr, flush=True)


def say_error(message: str) -> None:
    """The one line of an error, on standard error."""
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def one_line(text: str) -> str:
    """A message with its line breaks (and the blanks around them) turned into single spaces."""
    return re.sub(r"\s*\n\s*", " ", text.strip())
