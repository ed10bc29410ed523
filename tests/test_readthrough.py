"""The engine's read-through cache: memory, then the store, then one computation of the misses, then write back."""

from __future__ import annotations

import pytest

from insights_app.cache import LRUCache
from insights_app.engine.readthrough import Backing, ReadThrough


class FakeStore:
    def __init__(self, rows: dict[str, int]) -> None:
        self.rows = dict(rows)
        self.read_keys: list[list[str]] = []
        self.written: list[list[tuple[str, int]]] = []

    def backing(self, keys: list[str]) -> Backing[str, int]:
        self.asked_for_keys: list[list[int]] = []

        def store_keys(positions: list[int]) -> list[str]:
            self.asked_for_keys.append(list(positions))
            return [keys[p] for p in positions]

        def read(wanted: list[str]) -> dict[str, int]:
            self.read_keys.append(list(wanted))
            return {k: self.rows[k] for k in wanted if k in self.rows}

        def write(rows: list[tuple[str, int]]) -> None:
            self.written.append(rows)
            self.rows.update(rows)

        return Backing(store_keys, read, write)


def test_memory_then_store_then_one_computation_of_the_rest_written_back():
    memory = LRUCache(100)
    memory.put("a", 1)
    store = FakeStore({"b": 2})
    calls: list[list[int]] = []
    cache: ReadThrough[str, int] = ReadThrough(memory)
    keys = ["a", "b", "c", "d"]

    def compute(positions: list[int]) -> list[int]:
        calls.append(positions)
        return [10 * p for p in positions]

    assert cache.get_many(keys, compute, store.backing(keys)) == [1, 2, 20, 30]
    assert calls == [[2, 3]]  # the misses only, in one call
    assert store.asked_for_keys == [[1, 2, 3]]  # store keys made for what memory missed only
    assert store.written == [[("c", 20), ("d", 30)]]
    assert memory.get("b") == 2 and memory.get("c") == 20  # what the store had is now in memory too
    calls.clear()
    assert cache.get_many(keys, compute, store.backing(keys)) == [1, 2, 20, 30]
    assert not calls and store.asked_for_keys == []  # all in memory: the store is not asked


def test_values_not_to_keep_are_neither_cached_nor_stored():
    memory = LRUCache(100)
    store = FakeStore({})
    cache: ReadThrough[str, int] = ReadThrough(memory, keep=lambda v: v >= 0)
    keys = ["x", "y"]
    assert cache.get_many(keys, lambda ps: [-1, 5], store.backing(keys)) == [-1, 5]
    assert "x" not in memory and store.rows == {"y": 5}


def test_without_a_store_memory_alone_and_sizes_count_against_its_bound():
    memory = LRUCache(100, max_bytes=100)
    cache: ReadThrough[int, str] = ReadThrough(memory, size=len)
    assert cache.get_many([1, 2], lambda ps: ["x" * 60, "y" * 30]) == ["x" * 60, "y" * 30]
    assert memory.nbytes == 90
    cache.remember([3], ["z" * 20])  # over the bound: the oldest goes
    assert 1 not in memory and 3 in memory


def test_what_an_iterator_gave_before_it_raised_stays_in_memory_but_is_not_stored():
    memory = LRUCache(100)
    store = FakeStore({})
    cache: ReadThrough[str, int] = ReadThrough(memory)
    keys = ["p", "q"]

    def compute(positions: list[int]):
        yield 1
        raise RuntimeError("the second call failed")

    with pytest.raises(RuntimeError):
        cache.get_many(keys, compute, store.backing(keys))
    assert memory.get("p") == 1 and "q" not in memory and store.written == []


def test_write_stores_values_computed_elsewhere():
    store = FakeStore({})
    cache: ReadThrough[str, int] = ReadThrough(LRUCache(10), keep=lambda v: v != 0)
    cache.write(store.backing(["k", "l", "m"]), [1, 0, 3])
    assert store.written == [[("k", 1), ("m", 3)]]
