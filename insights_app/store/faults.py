"""What a store does when it cannot do its job: it is a cache, so it steps aside and says so once.

A write that fails (a full disk, a read-only file system, another process's lock held past a
short wait, an I/O error) is not an error of the request that made it: the computed values are
still answered, they are just not stored, and writes skip the store for a while (so no request
waits again, and no warning repeats). A read that fails finds nothing (the values are computed);
a damaged row is absent (computed again, then rewritten). Each kind of trouble is logged once per
store; the counts of what was written and what could not be are kept for precompute's summary.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections import Counter

log = logging.getLogger("insights_app.store")

LOCKED_PAUSE_S = 10.0  # after a write found the store locked: writes skip the store this long (no wait per write)
FAILED_PAUSE_S = 60.0  # after a write failed otherwise (a full disk, an I/O error): writes skip the store this long
LOCKED = ("SQLITE_BUSY", "SQLITE_LOCKED")


def is_locked(exc: sqlite3.Error) -> bool:
    """Another connection holds the lock (still, after the wait)."""
    return getattr(exc, "sqlite_errorname", "").startswith(LOCKED) or "locked" in str(exc)


def cannot_write(exc: sqlite3.Error) -> bool:
    """The file system does not let this process write the store (it may still be read)."""
    name = getattr(exc, "sqlite_errorname", "")
    return name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")) or "readonly" in str(exc)


class Faults:
    """One store's troubles: warnings (once per kind), whether writes are skipped, what was written."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._skip_until = 0.0
        self.read_only = False
        self.problem: str | None = None  # why the last skipped or failed write was not stored
        self.written: Counter[str] = Counter()  # rows committed by this process, per table
        self.unwritten: Counter[str] = Counter()  # rows given to the store but not stored, per table

    def warn_once(self, kind: str, message: str) -> None:
        with self._lock:
            if kind in self._warned:
                return
            self._warned.add(kind)
        log.warning("%s", message)

    def set_read_only(self, why: str) -> None:
        self.read_only = True
        self.problem = f"the store {self.path} is read-only ({why})"
        self.warn_once(
            "read-only",
            f"{self.problem}: what it holds is served; what is computed is not stored",
        )

    def skipping(self) -> bool:
        """Whether writes bypass the store now (read-only, or a recent write failed)."""
        return self.read_only or time.monotonic() < self._skip_until

    def wrote(self, table: str, n: int) -> None:
        with self._lock:
            self.written[table] += n

    def not_written(self, table: str, n: int) -> None:
        with self._lock:
            self.unwritten[table] += n

    def write_failed(self, table: str, n: int, exc: sqlite3.Error) -> None:
        """A write that did not commit: skip the store a while, and say why once."""
        self.not_written(table, n)
        if is_locked(exc):
            kind, pause = "locked", LOCKED_PAUSE_S
            self.problem = f"the store {self.path} is locked by another process"
            detail = f"{self.problem}: results are answered without being stored while it is"
        else:
            kind, pause = "write", FAILED_PAUSE_S
            self.problem = f"cannot write to the store {self.path} ({exc})"
            detail = f"{self.problem}: results are answered without being stored"
        # a file this process may not write stays so: writes skip it from now on (it is still read)
        self._skip_until = math.inf if cannot_write(exc) else time.monotonic() + pause
        self.warn_once(kind, detail)

    def read_failed(self, exc: sqlite3.Error) -> None:
        if is_locked(exc):
            self.warn_once("read-locked", f"the store {self.path} is locked by another process: results are computed")
        else:
            self.warn_once("read", f"cannot read the store {self.path} ({exc}): results are computed")

    def damaged(self, table: str, why: str) -> None:
        self.warn_once(
            "damaged",
            f"the store {self.path} has damaged rows ({table}: {why}): they are computed again and rewritten",
        )
