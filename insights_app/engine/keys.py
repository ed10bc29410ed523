"""What the engine's caches and the store key a result by: the method and its arguments, the example's content."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..dataset import ExampleBatch
from ..store.fingerprint import example_fingerprints


def arguments_key(method: str, params: dict[str, Any]) -> str:
    """A stable, hashable key for a method (its fingerprint) and its validated parameters."""
    blob = json.dumps([method, params], sort_keys=True, default=list)
    return hashlib.sha1(blob.encode()).hexdigest()


def fingerprints(batch: ExampleBatch) -> list[str]:
    """The store's fingerprint of each example of ``batch``, hashed once per request's batch (the
    prediction and the attribution lookups, and the writes, share it)."""
    return batch.memo(lambda b: example_fingerprints(b.inputs, b.additional_args))


class Subsets:
    """Sub-batches of one batch by row positions, the last one kept: the store's keys of a lookup's
    misses and their computation share one selection (a copy of those rows' inputs)."""

    def __init__(self, batch: ExampleBatch) -> None:
        self.batch = batch
        self._last: tuple[list[int], ExampleBatch] | None = None

    def __call__(self, rows: list[int]) -> ExampleBatch:
        if self._last is None or self._last[0] != rows:
            self._last = (list(rows), self.batch.select(rows))
        return self._last[1]
