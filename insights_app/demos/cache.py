"""What every demo shares: where the cache lives, the class of a demo's cached files, and how they are built.

A demo trains its model once, on data that ships with Python or scikit-learn (nothing is
downloaded), and keeps the result in a folder of its own under :func:`cache_root`. A
:class:`DemoCache` subclass names that folder's files; the folder is complete when its
``meta.json`` and every entry of ``REQUIRED`` are there, and it is (re)built in a temporary sibling
folder renamed into place (:func:`build_in_place`), so an interrupted first start leaves nothing
half-written behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, TypeVar

CACHE_ENV = "INSIGHTS_APP_CACHE"

Progress = Callable[[str], None]
T = TypeVar("T")
C = TypeVar("C", bound="DemoCache")


def say(message: str) -> None:
    """The demos' default progress report: a line on standard output, flushed."""
    print(message, flush=True)


def cache_root() -> Path:
    """Where insights-app keeps its files: ``$INSIGHTS_APP_CACHE``, else the XDG cache directory."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "insights-app"


@dataclass(frozen=True)
class DemoCache:
    """One demo's folder in the cache. Subclasses name its files as properties and list in
    ``REQUIRED`` the entries a complete cache holds besides ``meta.json`` (a trailing ``/``: a folder)."""

    root: Path
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def in_cache(cls: type[C], name: str, cache: Path | None = None) -> C:
        """The folder ``name`` under ``cache`` (default: :func:`cache_root`)."""
        return cls((Path(cache) if cache is not None else cache_root()) / name)

    @property
    def meta(self) -> Path:
        """What was trained, how well, and how long it took (JSON): written last, so it marks a finished build."""
        return self.root / "meta.json"

    def complete(self) -> bool:
        def present(entry: str) -> bool:
            path = self.root / entry
            return path.is_dir() if entry.endswith("/") else path.is_file()

        return self.meta.is_file() and all(present(entry) for entry in self.REQUIRED)

    def ensure(self: C, what: str, train: Callable[[C], T], progress: Progress, retrain: bool = False) -> T | None:
        """Train ``what`` into this folder unless it is complete (or ``retrain``): ``train`` writes the
        files of a copy of this cache in a temporary sibling folder, renamed into place at the end.
        Returns what ``train`` returned, or None when the cache was already there."""
        if self.complete() and not retrain:
            return None
        progress(f"first start: training {what} once (cached in {self.root})")
        return build_in_place(self.root, self.complete, lambda work: train(replace(self, root=work)))


@contextmanager
def training_threads(limit: int = 4) -> Iterator[None]:
    """Half the cores (at most ``limit``) while training: one thread on a 2-core machine.

    A model this small gains little from more threads, and when the cores are busy with
    anything else, OpenMP threads that wait on each other make an epoch 5-20x slower.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(limit, (os.cpu_count() or 1) // 2)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_in_place(root: Path, complete: Callable[[], bool], build: Callable[[Path], T]) -> T:
    """``build(work)`` in a temporary sibling folder of ``root``, renamed to ``root`` at the end.

    An interrupted build never leaves a half-written cache behind, and two concurrent first
    starts do not corrupt each other: the one that renames second keeps the first one's files
    when they are ``complete()``. Every demo's cache is written this way.
    """
    root.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        result = build(work)
        if root.exists():
            shutil.rmtree(root, ignore_errors=True)
        try:
            os.replace(work, root)
        except OSError:  # another process finished first: use its files
            if not complete():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result
