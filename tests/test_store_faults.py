"""The store is a cache: none of its faults may cost an answer.

A full disk, another process's lock, a read-only file system, damaged rows, garbage in the middle
of the file: every page is still answered (200, the maps a store-less visualizer gives), in a
bounded time, with one warning; precompute finishes with an honest summary. The full disk is
real SQLite behaviour (``PRAGMA max_page_count`` caps the file); the lock is another connection
holding ``BEGIN EXCLUSIVE``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import answer_differences, make_model, make_visualizer, without_timing

from insights_app.precompute import precompute
from insights_app.store import FILE_NAME, Store
from insights_app.transport.server import create_app

PAGE = {"method": "IntegratedGradients", "arguments": {"n_steps": 8}, "page_size": 6}
ARGS = {"IntegratedGradients": {"n_steps": 4}}


def store_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith(("insights_app.store", "insights_app.engine.readthrough"))
    ]


def answered(vis, body: dict) -> dict:
    """One page through the HTTP app: it must be a 200."""
    r = create_app(vis).test_client().post("/api/v1/examples", json=body)
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    return without_timing(r.get_json())


@pytest.fixture(scope="module")
def reference() -> dict[int, dict]:
    """Pages 0 and 1 as a visualizer without a store answers them."""
    vis = make_visualizer(models=make_model())
    return {page: answered(vis, dict(PAGE, page=page)) for page in (0, 1)}


def filled(directory: Path, pages: tuple[int, ...] = (0,)) -> Path:
    """A store holding ``pages``, checkpointed (its file self-contained), every connection closed."""
    vis = make_visualizer(models=make_model(), store=directory)
    for page in pages:
        vis.page(dict(PAGE, page=page))
    del vis
    conn = sqlite3.connect(directory / FILE_NAME)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return directory


class FullStore(Store):
    """A store on a disk that is full once ``full`` is set: SQLite's own SQLITE_FULL, from
    ``max_page_count`` capped at the file's size on every connection."""

    full = False

    def _connect(self) -> sqlite3.Connection:
        conn = super()._connect()
        if self.full:
            conn.execute("PRAGMA max_page_count = 1")  # SQLite keeps it at the current size: no page more
        return conn


def test_a_full_disk_answers_every_page_and_precompute_says_what_was_not_stored(tmp_path, caplog, reference):
    caplog.set_level(logging.WARNING)
    store = FullStore(tmp_path)
    store.full = True
    vis = make_visualizer(models=make_model(), store=store)
    t0 = time.monotonic()
    for page in (0, 1):
        assert answer_differences(reference[page], answered(vis, dict(PAGE, page=page))) == []
    assert time.monotonic() - t0 < 30
    before = store.counts()["explanations"]  # what fitted in the pages the file had (a few rows)
    summary = precompute(vis, ["IntegratedGradients"], ARGS, limit=16, progress=False)
    assert (summary.examples, summary.already, summary.failed) == (16, 0, 0)
    assert summary.stored == store.counts()["explanations"] - before  # what it says it stored, it did
    assert summary.unsaved == 16 - summary.stored > 0
    assert f"{summary.unsaved} computed but not stored" in summary.line() and "full" in summary.line()
    warnings = store_warnings(caplog)
    assert len(warnings) == 1 and "database or disk is full" in warnings[0], warnings


def test_a_store_locked_by_another_process_is_waited_for_briefly_then_gone_without(tmp_path, caplog, reference):
    filled(tmp_path)
    caplog.set_level(logging.WARNING)
    holder = sqlite3.connect(tmp_path / FILE_NAME, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        t0 = time.monotonic()
        vis = make_visualizer(models=make_model(), store=tmp_path)  # a fresh server on the locked store
        assert answer_differences(reference[1], answered(vis, dict(PAGE, page=1))) == []  # computed
        assert answer_differences(reference[0], answered(vis, dict(PAGE, page=0))) == []  # stored
        elapsed = time.monotonic() - t0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert elapsed < 5, elapsed
    warnings = store_warnings(caplog)
    assert len(warnings) == 1 and "locked" in warnings[0], warnings


def test_a_read_only_store_is_served_as_it_is(tmp_path, caplog, reference, monkeypatch):
    """Opened read-only (else immutable): what it holds is served without the model, what it lacks is
    computed, the file is not written. (Tests run as root, for whom chmod stops no write: the read-only
    file system is simulated where the store asks whether it may write, os.access, and by read_only=True;
    "immutable" is a read-only file system where not even SQLite's -shm file can be made, so that a
    mode=ro open fails as it would there.)"""
    source = filled(tmp_path / "source")
    real_access, real_connect = os.access, sqlite3.connect

    def no_shm(database, *a, **k):
        if "mode=ro" in str(database):
            raise sqlite3.OperationalError("unable to open database file")
        return real_connect(database, *a, **k)

    for how in ("detected", "asked", "immutable"):
        directory = tmp_path / how
        directory.mkdir()
        shutil.copy(source / FILE_NAME, directory / FILE_NAME)
        before = (directory / FILE_NAME).read_bytes()
        caplog.clear()
        caplog.set_level(logging.WARNING)
        monkeypatch.setattr(
            os,
            "access",
            lambda p, mode, **k: False if mode & os.W_OK and str(directory) in str(p) else real_access(p, mode),
        )
        if how == "immutable":
            monkeypatch.setattr(sqlite3, "connect", no_shm)
        store = Store(directory, read_only=how == "asked")
        assert store.read_only
        vis = make_visualizer(models=make_model(), store=store)
        forwards = []
        engine = vis.engines[0]
        forward = engine.forward
        engine.forward = lambda *a, _f=forward, **k: forwards.append(1) or _f(*a, **k)
        assert answer_differences(reference[0], answered(vis, dict(PAGE, page=0))) == []
        assert forwards == []  # read from the store
        assert answer_differences(reference[1], answered(vis, dict(PAGE, page=1))) == []
        monkeypatch.undo()
        assert (directory / FILE_NAME).read_bytes() == before
        wal = directory / f"{FILE_NAME}-wal"
        assert not wal.exists() or wal.stat().st_size == 0  # nothing written beside it either
        if how == "immutable":
            assert sorted(p.name for p in directory.iterdir()) == [FILE_NAME]
        warnings = store_warnings(caplog)
        assert len(warnings) == 1 and "read-only" in warnings[0], warnings


def damage_rows(path: Path) -> None:
    """Overwrite stored rows as a faulty disk or a careless hand would: each a different way."""
    conn = sqlite3.connect(path / FILE_NAME, isolation_level=None)
    rows = conn.execute("SELECT example, maps FROM explanations").fetchall()
    assert len(rows) == 6
    header, _, body = rows[0][1].partition(b"\n")
    damages = [
        ("maps", rows[0][1][:-7]),  # shorter than its header says
        ("maps", b"\x00\xff garbage \x17" * 9),  # not ours at all
        ("maps", b'[["<f4", [4, 4]]]\n' + body),  # another shape, the same bytes
        ("contributions", "[NaN]"),
        ("contributions", "[]"),
        ("maps", header + b"\n" + np.full(len(body) // 4, np.nan, "<f4").tobytes()),
    ]
    for (example, _), (column, value) in zip(rows, damages):
        conn.execute(f"UPDATE explanations SET {column} = ? WHERE example = ?", (value, example))
    conn.execute(
        "UPDATE predictions SET indices = ? WHERE example = (SELECT example FROM predictions LIMIT 1)", (b"\x01",)
    )
    conn.close()


def test_damaged_rows_are_computed_again_and_rewritten(tmp_path, caplog, reference):
    filled(tmp_path)
    damage_rows(tmp_path)
    caplog.set_level(logging.WARNING)
    vis = make_visualizer(models=make_model(), store=tmp_path)
    assert answer_differences(reference[0], answered(vis, dict(PAGE, page=0))) == []
    warnings = store_warnings(caplog)
    assert len(warnings) == 1 and "damaged" in warnings[0], warnings
    again = make_visualizer(models=make_model(), store=tmp_path)
    calls = []
    engine = again.engines[0]
    attribute = engine.attribute
    engine.attribute = lambda *a, **k: calls.append(1) or attribute(*a, **k)
    assert answer_differences(reference[0], answered(again, dict(PAGE, page=0))) == []
    assert calls == []  # the rewritten rows are whole


def test_garbage_in_the_middle_of_the_file_costs_no_answer(tmp_path, caplog, reference):
    filled(tmp_path, pages=(0, 1, 2, 3, 4, 5, 6, 7))
    path = tmp_path / FILE_NAME
    size = path.stat().st_size
    assert size > 8 * 8192
    with open(path, "r+b") as f:
        f.seek(size // 2 // 4096 * 4096)
        f.write(np.random.default_rng(0).bytes(8192))
    caplog.set_level(logging.WARNING)
    vis = make_visualizer(models=make_model(), store=tmp_path)
    t0 = time.monotonic()
    for page in (0, 1):
        assert answer_differences(reference[page], answered(vis, dict(PAGE, page=page))) == []
    assert time.monotonic() - t0 < 30
    warnings = store_warnings(caplog)
    assert 1 <= len(warnings) <= 2, warnings  # the damage, and maybe that it cannot be written
    assert all(w.isascii() and w.isprintable() for w in warnings), warnings


class PrunedMeanwhile(Store):
    """A store that another process prunes to nothing after every write of maps."""

    def put_explanations(self, model, software, rows) -> int:
        n = super().put_explanations(model, software, rows)
        other = Store(self.directory)
        other.prune(0)
        other.close()
        return n


def test_prune_during_a_precompute_does_not_make_its_summary_lie(tmp_path):
    vis = make_visualizer(models=make_model(), store=PrunedMeanwhile(tmp_path))
    summary = precompute(vis, ["IntegratedGradients"], ARGS, limit=32, progress=False)
    assert (summary.examples, summary.stored, summary.already, summary.failed) == (32, 32, 0, 0)
    assert summary.unsaved == 0
    assert summary.line().startswith("32 examples: 32 maps stored, 0 already stored, 0 failed,")


def test_prune_refuses_a_read_only_store_in_one_line(tmp_path, monkeypatch, capsys, caplog):
    import launch

    filled(tmp_path)
    caplog.set_level(logging.WARNING)
    before = (tmp_path / FILE_NAME).read_bytes()
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, **k: False if mode & os.W_OK and str(tmp_path) in str(p) else real(p, mode)
    )
    assert launch.main(["prune", "--store", str(tmp_path), "--max-size", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot be written" in err and err.count("\n") == 1, err
    assert store_warnings(caplog) == []  # the one line is the whole message
    assert (tmp_path / FILE_NAME).read_bytes() == before


FULL_DISK_CLI = """
import sys
import insights_app.store.sqlite as sqlite

class FullStore(sqlite.Store):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.full = True
    def _connect(self):
        conn = super()._connect()
        if getattr(self, "full", False):
            conn.execute("PRAGMA max_page_count = 1")
        return conn

sqlite.Store = FullStore  # the store the command line opens: its disk is full
sys.path.insert(0, sys.argv[1])
import launch
sys.exit(launch.main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_precompute_on_a_full_disk_finishes_with_one_warning_and_an_honest_summary(tmp_path):
    import subprocess
    import sys

    from launch_helpers import ROOT, TESTS, launch_env

    from insights_app.demos.digits import write_digit_images

    write_digit_images(tmp_path / "digits", size=16, valid_fraction=0.2, limit=60)
    data = tmp_path / "digits" / "valid"
    args = [
        "--model",
        "launch_helpers:digits_net",
        "--data",
        str(data),
        "--channels",
        "1",
        "--store",
        str(tmp_path / "s"),
    ]
    args += ["--methods", "Saliency", "--limit", "12"]
    env = launch_env(tmp_path / "cache")
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CLI, str(ROOT), "precompute", *args],
        cwd=TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "database or disk is full" in warnings[0], done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    stored = int(summary.split(": ")[1].split(" maps stored")[0])
    assert summary.startswith("12 examples: ") and f"{12 - stored} computed but not stored" in summary, summary
    assert Store(tmp_path / "s").counts()["explanations"] == stored
