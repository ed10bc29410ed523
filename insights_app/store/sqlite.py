"""The persistent store: one SQLite database in a directory the user names (``store=DIR``).

SQLite from the standard library, in WAL mode: readers read while the one writer writes, and
a process killed in the middle of a write leaves the last committed state (a transaction is
all or nothing). Rows are keyed by content (see :mod:`.fingerprint`), so nothing stored is
ever stale. A file that is not ours (another application's database, or not a database) is
refused with one line and never written to. The size is bounded: past ``max_bytes`` of
stored maps, the oldest rows go first (``prune``).

It is a cache, so its faults never cost an answer (:mod:`.faults`): a lock is waited for at most
``LOCK_WAIT_S``, then the store is gone without; a write that fails (a full disk, a lock) is
skipped with one warning; a store on a read-only file system is opened immutable and read; a
damaged row (:mod:`.codec`) is absent, so it is computed again and rewritten.

Each thread gets its own connection (sqlite3 connections are not shared across threads);
writes are serialized by a lock of the store object, so one process has one writer.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import StoreError
from .codec import (
    DamagedRow,
    PassRow,
    StoredExplanation,
    decode_explanation,
    decode_maps,
    decode_optional_real,
    decode_text,
    decode_top,
    encode_maps,
    loads,
)
from .faults import Faults, cannot_write, is_locked
from .schema import SCHEMA, SCHEMA_2, SCHEMA_VERSION, execute_script

APPLICATION_ID = 0x49415031  # "IAP1": PRAGMA application_id of an insights-app store
FILE_NAME = "insights.sqlite"
DEFAULT_MAX_BYTES = 4 * 2**30
TABLES_BY_SOFTWARE = ("explanations", "predictions", "pass_rows", "pass_losses", "metrics")
PRUNE_EVERY = 256  # writes between two checks of the size bound
LOCK_WAIT_S = 1.0  # how long a read or a write waits for another process's lock before going without the store


def _ints(values: Sequence[int] | np.ndarray) -> sqlite3.Binary:
    return sqlite3.Binary(np.asarray(values, "<i4").tobytes())


def _floats(values: Sequence[float] | np.ndarray) -> sqlite3.Binary:
    return sqlite3.Binary(np.asarray(values, "<f4").tobytes())


def _real(value: float) -> float | None:
    value = float(value)
    return None if value != value else value  # NaN is stored as NULL


# (example fingerprint, method key, target or None, metric key) -> a JSON value
MetricKey = tuple[str, str, int | None, str]
# (example fingerprint, method key, target or None) -> (maps, contributions)
ExplanationKey = tuple[str, str, int | None]


class Store:
    """One store directory (its SQLite file); safe to share across threads.

    ``read_only``: serve what it holds, never write (as a store on a read-only file system is).
    ``faults.written`` and ``faults.unwritten`` count the rows this object committed and those it could
    not, per table (precompute's summary reads them, not the row counts, which other processes change).
    """

    def __init__(
        self, directory: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES, *, read_only: bool = False
    ) -> None:
        self.directory = Path(directory).expanduser()
        self.path = self.directory / FILE_NAME
        self.max_bytes = max(1, int(max_bytes))
        if self.directory.exists() and not self.directory.is_dir():
            raise StoreError(f"store {self.directory} is a file, not a directory")
        if not read_only:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the store directory {self.directory}: {exc.strerror}") from None
        self.faults = Faults(str(self.path))
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._writes = 0
        self._read_only_mode = "mode=ro"
        writable = os.access(self.directory, os.W_OK) and os.access(self.path, os.W_OK)
        if read_only or (self.path.is_file() and not writable):
            self._open_read_only("opened so" if read_only else "this process cannot write it")
            return
        self._check_or_create()

    @property
    def read_only(self) -> bool:
        return self.faults.read_only

    # ------------------------------------------------------------ connections
    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                if self.faults.read_only:  # mode=ro, else immutable (no -wal or -shm file can be made)
                    uri = f"{self.path.resolve().as_uri()}?{self._read_only_mode}"
                    conn = sqlite3.connect(uri, uri=True, timeout=LOCK_WAIT_S, isolation_level=None)
                else:
                    conn = sqlite3.connect(str(self.path), timeout=LOCK_WAIT_S, isolation_level=None)
                conn.execute(f"PRAGMA busy_timeout = {int(LOCK_WAIT_S * 1000)}")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the store {self.path}: {exc}") from None
            self._local.conn = conn
        return conn

    def _refuse(self, why: str) -> StoreError:
        return StoreError(f"{self.path} {why}; it is left as it is: choose another store directory")

    def _identify(self, conn: sqlite3.Connection) -> tuple[int, int, int]:
        """(application id, tables, format version); StoreError if the file is not a database."""
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise self._refuse(f"is not an SQLite database ({exc})") from None
        return app_id, tables, version

    def _check_ours(self, app_id: int, version: int) -> None:
        if app_id != APPLICATION_ID:
            raise self._refuse("is not an insights-app store (another application's database)")
        if version > SCHEMA_VERSION:
            raise self._refuse(
                f"was written by a newer insights-app (store format {version}, this one reads {SCHEMA_VERSION})"
            )

    def _open_read_only(self, why: str) -> None:
        """Serve the store as it is, opened read-only, else immutable (all a read-only file system allows)."""
        if not self.path.is_file():
            raise StoreError(f"{self.directory} holds no store ({FILE_NAME}) and cannot be written")
        self.faults.read_only = True
        for mode in ("mode=ro", "immutable=1"):  # read-only sees other writers' commits; immutable needs no -shm
            self.close()
            self._read_only_mode = mode
            try:
                app_id, _, version = self._identify(self._connect())
                break
            except StoreError:
                if mode == "immutable=1":
                    raise
        self._check_ours(app_id, version)
        self.faults.set_read_only(why)

    def _check_or_create(self) -> None:
        conn = self._connect()
        try:
            app_id, tables, version = self._identify(conn)
        except StoreError:
            if not self.path.is_file():
                raise
            try:  # a valid store this process cannot open for writing (its -shm or -wal cannot be made)
                self._open_read_only("it cannot be opened for writing")
                return
            except StoreError:
                pass
            self.close()
            raise
        if app_id == 0 and tables == 0:
            with self._write_lock:
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                except sqlite3.Error as exc:
                    raise StoreError(f"cannot create the store {self.path}: {exc}") from None
                with self._transaction(conn, "create"):
                    execute_script(conn, SCHEMA + SCHEMA_2)
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        self._check_ours(app_id, version)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if cannot_write(exc):
                self._open_read_only(str(exc))
                return
            if not is_locked(exc):  # locked: another process has it open, in WAL already
                raise self._refuse(f"is damaged ({exc})") from None
        try:
            conn.execute("SELECT count(*) FROM explanations LIMIT 1").fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._refuse(f"is damaged ({exc})") from None
        if version < SCHEMA_VERSION:
            self._upgrade(conn)

    def _upgrade(self, conn: sqlite3.Connection) -> None:
        """A store of an older format gains the newer tables (what it holds stays valid); one that
        cannot be written now is read as it is (its newer tables are found empty)."""
        try:
            with self._write_lock, self._transaction(conn, "upgrade"):
                execute_script(conn, SCHEMA_2)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except StoreError as exc:
            self.faults.warn_once("upgrade", f"{exc}: it is read as it is")

    @contextlib.contextmanager
    def _transaction(self, conn: sqlite3.Connection, what: str) -> Iterator[None]:
        """One whole transaction (the caller holds the write lock): committed, or rolled back and
        reported as "cannot <what> the store"."""
        try:
            with self._committed(conn):
                yield
        except sqlite3.Error as exc:
            raise StoreError(f"cannot {what} the store {self.path}: {exc}") from None

    @staticmethod
    @contextlib.contextmanager
    def _committed(conn: sqlite3.Connection) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back (if SQLite has not) when anything raises."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ------------------------------------------------------------ reading
    def _lookup(
        self,
        table: str,
        sql: str,
        wanted: Iterable[tuple[Hashable, tuple]],
        decode: Callable[[tuple], object],
    ) -> dict:
        """The decoded row of each (key, parameters) found; a damaged row is absent (and said once),
        a store that cannot be read finds nothing more (and says so once)."""
        found: dict = {}
        try:
            conn = self._connect()
            for key, params in wanted:
                try:
                    row = conn.execute(sql, params).fetchone()
                except sqlite3.OperationalError:
                    raise  # locked, or unreadable: the rest would fail too
                except sqlite3.DatabaseError as exc:  # this row's page is damaged
                    self.faults.damaged(table, str(exc))
                    continue
                if row is None:
                    continue
                try:
                    found[key] = decode(row)
                except DamagedRow as exc:
                    self.faults.damaged(table, str(exc))
        except sqlite3.Error as exc:
            self.faults.read_failed(exc)
        except StoreError as exc:
            self.faults.warn_once("read", f"{exc}: results are computed")
        return found

    # ------------------------------------------------------------ explanations
    def get_explanations(
        self, model: str, software: str, keys: Sequence[ExplanationKey]
    ) -> dict[ExplanationKey, StoredExplanation]:
        """The stored explanations among ``keys`` of one model (missing or damaged keys are absent)."""
        return self._lookup(
            "explanations",
            "SELECT maps, CAST(contributions AS BLOB) FROM explanations WHERE model=? AND example=? AND key=? "
            "AND target=? AND software=?",
            (((ex, key, t), (model, ex, key, -1 if t is None else int(t), software)) for ex, key, t in keys),
            lambda row: decode_explanation(row[0], row[1]),
        )

    def put_explanations(
        self, model: str, software: str, rows: Iterable[tuple[ExplanationKey, Sequence[np.ndarray], Sequence[float]]]
    ) -> int:
        """Store explanations (one transaction); returns how many were written (0 when the store
        could not be written: see :mod:`.faults`)."""
        now = time.time()
        values = []
        for (ex, key, target), maps, contribs in rows:
            blob, target_ = encode_maps(maps), -1 if target is None else int(target)
            shares = json.dumps([float(c) for c in contribs])
            values.append((model, ex, key, target_, software, sqlite3.Binary(blob), shares, len(blob), now))
        return self._write(
            "explanations", "INSERT OR REPLACE INTO explanations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values
        )

    # ------------------------------------------------------------ predictions
    def get_predictions(
        self, model: str, software: str, examples: Sequence[str]
    ) -> dict[str, tuple[list[int], list[float]]]:
        def decode(row: tuple) -> tuple[list[int], list[float]]:
            indices, scores = decode_top(row[0], row[1])
            return indices.tolist(), scores.tolist()

        return self._lookup(
            "predictions",
            "SELECT indices, scores FROM predictions WHERE model=? AND example=? AND software=?",
            ((ex, (model, ex, software)) for ex in examples),
            decode,
        )

    def put_predictions(
        self, model: str, software: str, rows: Iterable[tuple[str, Sequence[int], Sequence[float]]]
    ) -> int:
        now = time.time()
        values = [(model, ex, software, _ints(idx), _floats(scores), now) for ex, idx, scores in rows]
        return self._write("predictions", "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?, ?)", values)

    # ------------------------------------------------------------ the dataset pass
    def get_pass_rows(
        self, model: str, software: str, loss: str, keys: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], PassRow]:
        """The stored pass rows among ``keys`` (example fingerprint, label or -1) of one model and loss."""

        def decode(row: tuple) -> PassRow:
            classes, scores = decode_top(row[0], row[1])
            return classes, scores, decode_optional_real(row[2]), decode_optional_real(row[3])

        return self._lookup(
            "pass_rows",
            "SELECT top_classes, top_scores, label_score, loss_value FROM pass_rows WHERE "
            "model=? AND example=? AND label=? AND software=? AND loss=?",
            (((ex, label), (model, ex, int(label), software, loss)) for ex, label in keys),
            decode,
        )

    def put_pass_rows(
        self, model: str, software: str, loss: str, rows: Iterable[tuple[tuple[str, int], PassRow]]
    ) -> int:
        now = time.time()
        values = [
            (model, ex, int(label), software, loss, _ints(classes), _floats(scores), _real(score), _real(loss_), now)
            for (ex, label), (classes, scores, score, loss_) in rows
        ]
        return self._write(
            "pass_rows", "INSERT OR REPLACE INTO pass_rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values
        )

    def get_pass_loss(self, model: str, software: str, loss: str) -> tuple[str, str] | None:
        """The (name, note) of the loss the pass chose for this model, if a pass stored one."""
        found = self._lookup(
            "pass_losses",
            "SELECT CAST(name AS BLOB), CAST(note AS BLOB) FROM pass_losses WHERE model=? AND software=? AND loss=?",
            [(loss, (model, software, loss))],
            lambda row: (decode_text(row[0]), decode_text(row[1])),
        )
        return found.get(loss)

    def put_pass_loss(self, model: str, software: str, loss: str, name: str, note: str) -> None:
        self._write(
            "pass_losses",
            "INSERT OR REPLACE INTO pass_losses VALUES (?, ?, ?, ?, ?)",
            [(model, software, loss, name, note)],
        )

    # ------------------------------------------------------------ quality metrics
    def get_metrics(self, model: str, software: str, keys: Sequence[MetricKey]) -> dict[MetricKey, object]:
        """Stored metric values (JSON) among ``keys`` (example, method key, target or None, metric key)."""
        return self._lookup(
            "metrics",
            "SELECT CAST(value AS BLOB) FROM metrics WHERE model=? AND example=? AND key=? AND target=? AND "
            "software=? AND metric=?",
            (
                ((ex, key, t, metric), (model, ex, key, -1 if t is None else int(t), software, metric))
                for ex, key, t, metric in keys
            ),
            lambda row: loads(row[0]),
        )

    def put_metrics(self, model: str, software: str, rows: Iterable[tuple[MetricKey, object]]) -> int:
        now = time.time()
        values = [
            (model, ex, key, -1 if t is None else int(t), software, metric, json.dumps(value, allow_nan=False), now)
            for (ex, key, t, metric), value in rows
        ]
        return self._write("metrics", "INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?)", values)

    # ------------------------------------------------------------ writing, size
    def _write(self, table: str, sql: str, values: list[tuple]) -> int:
        """One transaction of rows; how many were stored (0: the store is skipped, see :mod:`.faults`)."""
        if not values:
            return 0
        if self.faults.skipping():
            self.faults.not_written(table, len(values))
            return 0
        with self._write_lock:
            try:
                conn = self._connect()
                with self._committed(conn):
                    conn.executemany(sql, values)
            except sqlite3.Error as exc:
                self.faults.write_failed(table, len(values), exc)
                return 0
            except StoreError as exc:  # the connection could not be opened
                self.faults.not_written(table, len(values))
                self.faults.warn_once("write", f"{exc}: results are answered without being stored")
                return 0
            self.faults.wrote(table, len(values))
            self._writes += len(values)
            if self._writes >= PRUNE_EVERY:
                self._writes = 0
                try:
                    self._prune_locked(self.max_bytes)
                except (sqlite3.Error, StoreError) as exc:  # the bound is kept at a later write
                    self.faults.warn_once("prune", f"cannot keep the store {self.path} within its bound now ({exc})")
        return len(values)

    def stored_bytes(self) -> int:
        row = self._connect().execute("SELECT coalesce(sum(nbytes), 0) FROM explanations").fetchone()
        return int(row[0])

    def prune(self, max_bytes: int | None = None) -> int:
        """Delete the oldest maps until at most ``max_bytes`` (default: the store's bound) remain; how many went."""
        with self._write_lock:
            return self._prune_locked(self.max_bytes if max_bytes is None else max(0, int(max_bytes)))

    def drop_other_software(self, software: str) -> int:
        """Delete every row made by other versions of captum, torch or insights-app (never served by
        this one); how many went."""
        conn = self._connect()
        removed = 0
        with self._write_lock, self._transaction(conn, "write to"):
            for table in TABLES_BY_SOFTWARE:
                removed += conn.execute(f"DELETE FROM {table} WHERE software != ?", (software,)).rowcount
        return removed

    def compact(self) -> bool:
        """Give the space of deleted rows back to the file system (VACUUM); False while another
        process holds the store open for writing."""
        try:
            self._connect().execute("VACUUM")
            return True
        except sqlite3.OperationalError:
            return False

    def _prune_locked(self, max_bytes: int) -> int:
        conn = self._connect()
        total = self.stored_bytes()
        removed = 0
        while total > max_bytes:
            rows = conn.execute(
                "SELECT model, example, key, target, software, nbytes FROM explanations ORDER BY created LIMIT 256"
            ).fetchall()
            if not rows:
                break
            with self._transaction(conn, "prune"):
                for model, ex, key, target, software, nbytes in rows:
                    conn.execute(
                        "DELETE FROM explanations WHERE model=? AND example=? AND key=? AND target=? AND software=?",
                        (model, ex, key, target, software),
                    )
                    total -= nbytes
                    removed += 1
                    if total <= max_bytes:
                        break
        return removed

    def counts(self) -> dict[str, int]:
        conn = self._connect()
        out = {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in ("explanations", "predictions", "pass_rows", "metrics")
        }
        out["bytes"] = self.stored_bytes()
        return out


__all__ = [
    "DEFAULT_MAX_BYTES",
    "FILE_NAME",
    "LOCK_WAIT_S",
    "SCHEMA_VERSION",
    "MetricKey",
    "PassRow",
    "Store",
    "StoreError",
    "decode_maps",
    "encode_maps",
]
