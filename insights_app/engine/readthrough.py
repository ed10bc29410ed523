"""A batched read-through cache: memory, then the store, then compute the missing ones in one call, then write back.

The engine's predictions and explanations and the metrics of :mod:`insights_app.metrics.evaluate`
are all looked up this way; only what a key is, how the store is asked and how the missing values
are computed differ, and those are the caller's arguments. Values the caller says are not to be
kept (an example's error) are neither cached nor stored: the next request tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from ..cache import LRUCache

K = TypeVar("K", bound=Hashable)
S = TypeVar("S", bound=Hashable)
V = TypeVar("V")
R = TypeVar("R")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backing(Generic[S, V]):
    """The persistent tier of one lookup: the store as one model sees one batch.

    ``keys`` gives the store keys of the asked keys at some positions; it is called only for
    what memory did not have, so an example's content is hashed only when the store is asked.
    ``read`` gives the values stored under some keys (a key is absent where nothing is);
    ``write`` stores computed values. The store's own handling of its errors (a full disk, a
    lock, a damaged row: a warning, then nothing found or nothing written) stays the store's.
    """

    keys: Callable[[list[int]], Sequence[S]]
    read: Callable[[Sequence[S]], Mapping[S, V]]
    write: Callable[[list[tuple[S, V]]], object]


def _one(_value: object) -> int:
    return 1


def _always(_value: object) -> bool:
    return True


class ReadThrough(Generic[K, V]):
    """Values by key from a memory LRU (``memory``), then a :class:`Backing`, else computed.

    ``size`` is a value's size in the memory's byte bound; ``keep`` says whether a computed
    value may be cached and stored (an example's failure may not). Several read-throughs may
    share one :class:`~insights_app.cache.LRUCache` when their keys cannot collide.
    """

    def __init__(
        self,
        memory: LRUCache,
        size: Callable[[V], int] = _one,
        keep: Callable[[V], bool] = _always,
    ) -> None:
        self.memory = memory
        self.size = size
        self.keep = keep
        self._store_failed = threading.Event()  # set once a store call raised (said once)

    def get_many(
        self,
        keys: Sequence[K],
        compute: Callable[[list[int]], Iterable[V]],
        backing: Backing[S, V] | None = None,
    ) -> list[V]:
        """The value of each key, in order. ``compute(positions)`` gives the values of the keys at
        ``positions`` (those neither cached nor stored), in that order, in one call; each is cached
        as it is produced, so what an iterator gave before it raised stays cached. The computed
        values are written to ``backing`` once ``compute`` has given them all."""
        found: list[V | None] = [self.memory.get(k) for k in keys]
        missing = [j for j, value in enumerate(found) if value is None]
        if not missing:
            return cast(list[V], found)
        store_keys: dict[int, S] = {}
        if backing is not None:
            store_keys = dict(zip(missing, backing.keys(missing)))
            stored = self._guarded(backing.read, [store_keys[j] for j in missing]) or {}
            still = []
            for j in missing:
                hit = stored.get(store_keys[j])
                if hit is None:
                    still.append(j)
                    continue
                self.memory.put(keys[j], hit, self.size(hit))
                found[j] = hit
            missing = still
        if missing:
            rows: list[tuple[S, V]] = []
            for j, value in zip(missing, compute(missing), strict=True):
                found[j] = value
                if self.keep(value):
                    self.memory.put(keys[j], value, self.size(value))
                    if backing is not None:
                        rows.append((store_keys[j], value))
            if rows and backing is not None:
                self._guarded(backing.write, rows)
        return cast(list[V], found)

    def _guarded(self, call: Callable[[list], R], arg: list) -> R | None:
        """A store call that must not cost the answer: the store handles its own faults (a warning,
        then nothing found or nothing written); anything it still raises is logged once, and the
        values are answered from memory or computed as if nothing were stored."""
        try:
            return call(arg)
        except Exception as exc:  # noqa: BLE001 - the store is a cache: no fault of it may fail a request
            if not self._store_failed.is_set():
                self._store_failed.set()
                log.warning("the store failed (%s: %s): answering without it", type(exc).__name__, exc)
            return None

    def remember(self, keys: Sequence[K], values: Sequence[V]) -> None:
        """Cache values computed elsewhere (one pass that gave several kinds of value at once)."""
        for k, value in zip(keys, values):
            if self.keep(value):
                self.memory.put(k, value, self.size(value))

    def write(self, backing: Backing[S, V], values: Sequence[V]) -> None:
        """Store values computed elsewhere, one per position of ``backing``'s keys."""
        rows = [(s, value) for s, value in zip(backing.keys(list(range(len(values)))), values) if self.keep(value)]
        if rows:
            self._guarded(backing.write, rows)
