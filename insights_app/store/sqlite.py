"""The persistent store: one SQLite database in a directory the user names (``store=DIR``).

SQLite from the standard library, in WAL mode: readers read while the one writer writes, and
a process killed in the middle of a write leaves the last committed state (a transaction is
all or nothing). Rows are keyed by content (see :mod:`.fingerprint`), so nothing stored is
ever stale. A file that is not ours (another application's database, or not a database) is
refused with one line and never written to. The size is bounded: past ``max_bytes`` of
stored maps, the oldest rows go first (``prune``).

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
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import StoreError

APPLICATION_ID = 0x49415031  # "IAP1": PRAGMA application_id of an insights-app store
SCHEMA_VERSION = 2  # 2: the dataset pass's rows and the quality metrics (a store of version 1 gains them)
FILE_NAME = "insights.sqlite"
DEFAULT_MAX_BYTES = 4 * 2**30
TABLES_BY_SOFTWARE = ("explanations", "predictions", "pass_rows", "pass_losses", "metrics")
PRUNE_EVERY = 256  # writes between two checks of the size bound

SCHEMA = """
CREATE TABLE explanations (
    model TEXT NOT NULL, example TEXT NOT NULL, key TEXT NOT NULL, target INTEGER NOT NULL,
    software TEXT NOT NULL, maps BLOB NOT NULL, contributions TEXT NOT NULL, nbytes INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (model, example, key, target, software)
) WITHOUT ROWID;
CREATE INDEX explanations_created ON explanations (created);
CREATE TABLE predictions (
    model TEXT NOT NULL, example TEXT NOT NULL, software TEXT NOT NULL,
    indices BLOB NOT NULL, scores BLOB NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (model, example, software)
) WITHOUT ROWID;
"""
SCHEMA_2 = """
CREATE TABLE IF NOT EXISTS pass_rows (
    model TEXT NOT NULL, example TEXT NOT NULL, label INTEGER NOT NULL, software TEXT NOT NULL, loss TEXT NOT NULL,
    top_classes BLOB NOT NULL, top_scores BLOB NOT NULL, label_score REAL, loss_value REAL, created REAL NOT NULL,
    PRIMARY KEY (model, example, label, software, loss)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pass_losses (
    model TEXT NOT NULL, software TEXT NOT NULL, loss TEXT NOT NULL, name TEXT NOT NULL, note TEXT NOT NULL,
    PRIMARY KEY (model, software, loss)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS metrics (
    model TEXT NOT NULL, example TEXT NOT NULL, key TEXT NOT NULL, target INTEGER NOT NULL, software TEXT NOT NULL,
    metric TEXT NOT NULL, value TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (model, example, key, target, software, metric)
) WITHOUT ROWID;
"""


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    """Statements one by one inside the caller's transaction (executescript would commit it)."""
    for statement in script.strip().split(";"):
        if statement.strip():
            conn.execute(statement)


def encode_maps(maps: Sequence[np.ndarray]) -> bytes:
    """Arrays as one blob: a JSON header of (dtype, shape) per array, a newline, their bytes."""
    arrays = [np.ascontiguousarray(m) for m in maps]
    header = json.dumps([[a.dtype.str, list(a.shape)] for a in arrays]).encode()
    return header + b"\n" + b"".join(a.tobytes() for a in arrays)


def decode_maps(blob: bytes) -> list[np.ndarray]:
    header, _, body = blob.partition(b"\n")
    out, offset = [], 0
    for dtype, shape in json.loads(header):
        dt = np.dtype(dtype)
        size = int(np.prod(shape)) * dt.itemsize
        out.append(np.frombuffer(body, dtype=dt, count=int(np.prod(shape)), offset=offset).reshape(shape).copy())
        offset += size
    return out


def _real(value: float) -> float | None:
    value = float(value)
    return None if value != value else value  # NaN is stored as NULL


# (top classes, top scores, label score, loss): one model's dataset-pass row of one example
PassRow = tuple[np.ndarray, np.ndarray, float, float]
# (example fingerprint, method key, target or None, metric key) -> a JSON value
MetricKey = tuple[str, str, int | None, str]
# (example fingerprint, method key, target or None) -> (maps, contributions)
ExplanationKey = tuple[str, str, int | None]
StoredExplanation = tuple[list[np.ndarray], list[float]]


class Store:
    """One store directory (its SQLite file); safe to share across threads."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.directory = Path(directory).expanduser()
        self.path = self.directory / FILE_NAME
        self.max_bytes = max(1, int(max_bytes))
        if self.directory.exists() and not self.directory.is_dir():
            raise StoreError(f"store {self.directory} is a file, not a directory")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store directory {self.directory}: {exc.strerror}") from None
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._writes = 0
        self._check_or_create()

    # ------------------------------------------------------------ connections
    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
                conn.execute("PRAGMA busy_timeout = 30000")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the store {self.path}: {exc}") from None
            self._local.conn = conn
        return conn

    def _refuse(self, why: str) -> StoreError:
        return StoreError(f"{self.path} {why}; it is left as it is: choose another store directory")

    def _check_or_create(self) -> None:
        conn = self._connect()
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise self._refuse(f"is not an SQLite database ({exc})") from None
        if app_id == 0 and tables == 0:
            with self._write_lock:
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                except sqlite3.Error as exc:
                    raise StoreError(f"cannot create the store {self.path}: {exc}") from None
                with self._transaction(conn, "create"):
                    _execute_script(conn, SCHEMA + SCHEMA_2)
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        if app_id != APPLICATION_ID:
            raise self._refuse("is not an insights-app store (another application's database)")
        if version > SCHEMA_VERSION:
            raise self._refuse(
                f"was written by a newer insights-app (store format {version}, this one reads {SCHEMA_VERSION})"
            )
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("SELECT count(*) FROM explanations LIMIT 1").fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._refuse(f"is damaged ({exc})") from None
        if version < SCHEMA_VERSION:
            self._upgrade(conn)

    def _upgrade(self, conn: sqlite3.Connection) -> None:
        """A store of an older format gains the newer tables (what it holds stays valid)."""
        with self._write_lock, self._transaction(conn, "upgrade"):
            _execute_script(conn, SCHEMA_2)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextlib.contextmanager
    def _transaction(self, conn: sqlite3.Connection, what: str) -> Iterator[None]:
        """One whole transaction (the caller holds the write lock): committed, or rolled back and
        reported as "cannot <what> the store"."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"cannot {what} the store {self.path}: {exc}") from None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ------------------------------------------------------------ explanations
    def get_explanations(
        self, model: str, software: str, keys: Sequence[ExplanationKey]
    ) -> dict[ExplanationKey, StoredExplanation]:
        """The stored explanations among ``keys`` of one model (missing keys are absent)."""
        found: dict[ExplanationKey, StoredExplanation] = {}
        if not keys:
            return found
        conn = self._connect()
        try:
            for ex, key, target in keys:
                row = conn.execute(
                    "SELECT maps, contributions FROM explanations WHERE model=? AND example=? AND key=? AND target=? "
                    "AND software=?",
                    (model, ex, key, -1 if target is None else int(target), software),
                ).fetchone()
                if row is not None:
                    found[(ex, key, target)] = (decode_maps(row[0]), json.loads(row[1]))
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read the store {self.path}: {exc}") from None
        return found

    def put_explanations(
        self, model: str, software: str, rows: Iterable[tuple[ExplanationKey, Sequence[np.ndarray], Sequence[float]]]
    ) -> int:
        """Store explanations (one transaction); returns how many were written."""
        now = time.time()
        values = []
        for (ex, key, target), maps, contribs in rows:
            blob = encode_maps(maps)
            values.append(
                (
                    model,
                    ex,
                    key,
                    -1 if target is None else int(target),
                    software,
                    sqlite3.Binary(blob),
                    json.dumps([float(c) for c in contribs]),
                    len(blob),
                    now,
                )
            )
        if not values:
            return 0
        self._write("INSERT OR REPLACE INTO explanations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
        return len(values)

    # ------------------------------------------------------------ predictions
    def get_predictions(
        self, model: str, software: str, examples: Sequence[str]
    ) -> dict[str, tuple[list[int], list[float]]]:
        found: dict[str, tuple[list[int], list[float]]] = {}
        conn = self._connect()
        try:
            for ex in examples:
                row = conn.execute(
                    "SELECT indices, scores FROM predictions WHERE model=? AND example=? AND software=?",
                    (model, ex, software),
                ).fetchone()
                if row is not None:
                    found[ex] = (
                        np.frombuffer(row[0], dtype="<i4").tolist(),
                        np.frombuffer(row[1], dtype="<f4").tolist(),
                    )
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read the store {self.path}: {exc}") from None
        return found

    def put_predictions(
        self, model: str, software: str, rows: Iterable[tuple[str, Sequence[int], Sequence[float]]]
    ) -> int:
        now = time.time()
        values = [
            (
                model,
                ex,
                software,
                sqlite3.Binary(np.asarray(idx, "<i4").tobytes()),
                sqlite3.Binary(np.asarray(scores, "<f4").tobytes()),
                now,
            )
            for ex, idx, scores in rows
        ]
        if values:
            self._write("INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?, ?)", values)
        return len(values)

    # ------------------------------------------------------------ the dataset pass
    def get_pass_rows(
        self, model: str, software: str, loss: str, keys: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], PassRow]:
        """The stored pass rows among ``keys`` (example fingerprint, label or -1) of one model and loss."""
        found: dict[tuple[str, int], PassRow] = {}
        conn = self._connect()
        try:
            for ex, label in keys:
                row = conn.execute(
                    "SELECT top_classes, top_scores, label_score, loss_value FROM pass_rows WHERE "
                    "model=? AND example=? AND label=? AND software=? AND loss=?",
                    (model, ex, int(label), software, loss),
                ).fetchone()
                if row is not None:
                    found[(ex, label)] = (
                        np.frombuffer(row[0], dtype="<i4").copy(),
                        np.frombuffer(row[1], dtype="<f4").copy(),
                        float("nan") if row[2] is None else row[2],
                        float("nan") if row[3] is None else row[3],
                    )
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read the store {self.path}: {exc}") from None
        return found

    def put_pass_rows(
        self, model: str, software: str, loss: str, rows: Iterable[tuple[tuple[str, int], PassRow]]
    ) -> int:
        now = time.time()
        values = [
            (
                model,
                ex,
                int(label),
                software,
                loss,
                sqlite3.Binary(np.asarray(classes, "<i4").tobytes()),
                sqlite3.Binary(np.asarray(scores, "<f4").tobytes()),
                _real(label_score),
                _real(loss_value),
                now,
            )
            for (ex, label), (classes, scores, label_score, loss_value) in rows
        ]
        if values:
            self._write("INSERT OR REPLACE INTO pass_rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
        return len(values)

    def get_pass_loss(self, model: str, software: str, loss: str) -> tuple[str, str] | None:
        """The (name, note) of the loss the pass chose for this model, if a pass stored one."""
        row = self._read_one(
            "SELECT name, note FROM pass_losses WHERE model=? AND software=? AND loss=?", (model, software, loss)
        )
        return None if row is None else (row[0], row[1])

    def put_pass_loss(self, model: str, software: str, loss: str, name: str, note: str) -> None:
        self._write("INSERT OR REPLACE INTO pass_losses VALUES (?, ?, ?, ?, ?)", [(model, software, loss, name, note)])

    # ------------------------------------------------------------ quality metrics
    def get_metrics(self, model: str, software: str, keys: Sequence[MetricKey]) -> dict[MetricKey, object]:
        """Stored metric values (JSON) among ``keys`` (example, method key, target or None, metric key)."""
        found: dict[MetricKey, object] = {}
        conn = self._connect()
        try:
            for ex, key, target, metric in keys:
                row = conn.execute(
                    "SELECT value FROM metrics WHERE model=? AND example=? AND key=? AND target=? AND "
                    "software=? AND metric=?",
                    (model, ex, key, -1 if target is None else int(target), software, metric),
                ).fetchone()
                if row is not None:
                    found[(ex, key, target, metric)] = json.loads(row[0])
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read the store {self.path}: {exc}") from None
        return found

    def put_metrics(self, model: str, software: str, rows: Iterable[tuple[MetricKey, object]]) -> int:
        now = time.time()
        values = [
            (
                model,
                ex,
                key,
                -1 if target is None else int(target),
                software,
                metric,
                json.dumps(value, allow_nan=False),
                now,
            )
            for (ex, key, target, metric), value in rows
        ]
        if values:
            self._write("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?)", values)
        return len(values)

    def _read_one(self, sql: str, params: tuple) -> tuple | None:
        try:
            return self._connect().execute(sql, params).fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read the store {self.path}: {exc}") from None

    # ------------------------------------------------------------ writing, size
    def _write(self, sql: str, values: list[tuple]) -> None:
        conn = self._connect()
        with self._write_lock:
            with self._transaction(conn, "write to"):
                conn.executemany(sql, values)
            self._writes += len(values)
            if self._writes >= PRUNE_EVERY:
                self._writes = 0
                self._prune_locked(self.max_bytes)

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
