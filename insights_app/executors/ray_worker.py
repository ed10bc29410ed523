"""The Ray actors' side of the ray executor: what each actor builds once, and computes per chunk.

An actor receives the models, features, score functions and methods once, at its
construction (cloudpickle), and builds one :class:`~insights_app.engine.Engine` per model
whose ``store`` is a :class:`RecordingStore`: it answers from the rows of the chunk that the
driver found stored (so the engine takes the path it takes in the driver, and computes
exactly what the local executor would) and keeps the rows the engine saves, which the actor
sends back for the driver to write (:mod:`.ray_executor`). Nothing here imports Ray.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch

from ..dataset import Example
from ..engine import Engine
from ..errors import ValidationError
from ..store import ModelStore
from . import CHUNK

ExplanationKey = tuple[str, str, int | None]  # (example fingerprint, arguments_key, target)


# ---------------------------------------------------------------------- what an actor's engines see as a store


class RecordingStore:
    """The store of an actor's :class:`Engine`: the driver's stored rows of one chunk, and what the engine saves.

    It implements the :class:`~insights_app.store.ModelStore` methods the engine calls. Its
    ``predictions`` are the stored ones (the engine picks targets from them, as it does
    here); its ``explanations`` say which maps are stored (with empty maps: the driver has
    them, and nothing in the actor reads them back). What the engine saves is kept in
    ``saved_predictions`` and ``saved_explanations`` for the driver, and answered from then
    on, as the real store would.
    """

    def __init__(self) -> None:
        self.begin({}, set())

    def begin(self, predictions: dict[str, tuple[list[int], list[float]]], explained: set[ExplanationKey]) -> None:
        """A new chunk: what the driver found stored for it."""
        self._predictions = dict(predictions)
        self._explained = set(explained)
        self.saved_predictions: list[tuple[str, list[int], list[float]]] = []
        self.saved_explanations: list[tuple[ExplanationKey, list[Any], list[float]]] = []

    def predictions(self, examples: Sequence[str]) -> dict[str, tuple[list[int], list[float]]]:
        return {fp: self._predictions[fp] for fp in examples if fp in self._predictions}

    def explanations(self, keys: Sequence[ExplanationKey]) -> dict[ExplanationKey, tuple[list[Any], list[float]]]:
        return {k: ([], []) for k in keys if k in self._explained}

    def save_predictions(self, rows: Sequence[tuple[str, Sequence[int], Sequence[float]]]) -> int:
        for fp, indices, scores in rows:
            self._predictions[fp] = (list(indices), list(scores))
            self.saved_predictions.append((fp, list(indices), list(scores)))
        return len(rows)

    def save_explanations(self, rows: Sequence[tuple[ExplanationKey, Sequence[Any], Sequence[float]]]) -> int:
        for key, maps, contributions in rows:
            self._explained.add(key)
            self.saved_explanations.append((key, list(maps), list(contributions)))
        return len(rows)


@dataclass
class EngineConfig:
    """What an actor needs to build the same engine as the driver's (the model travels alongside)."""

    name: str
    device: str  # "cpu", "cuda" (the actor's GPU), ...
    use_label_for_attr: bool
    internal_batch_size: int


@dataclass
class ChunkResult:
    """What an actor sends back for one chunk."""

    rows: list[tuple[list[Any], list[Any]]]  # per model: (saved predictions, saved explanations)
    failures: list[tuple[Any, str, str, str]]  # (example id, model, method, error), in the local order
    seconds: float = 0.0
    invalid: tuple[str, str] | None = None  # a ValidationError's field and message (raised by the driver)


class ChunkWorker:
    """The body of a Ray actor: one engine per model, built once; ``run`` computes one chunk.

    ``payload`` is the cloudpickled (models, features, score functions, engine configs,
    methods); ``sys_path`` the driver's import path, added before it is loaded, so that a
    model class from the user's own module (``--model mymodels:build``) is found;
    ``threads`` the torch threads of this actor (its CPU slots).
    """

    def __init__(self, payload: bytes, sys_path: Sequence[str], threads: int) -> None:
        for entry in sys_path:
            if entry and entry not in sys.path:
                sys.path.append(entry)
        import cloudpickle

        from ..store.fingerprint import software_versions

        torch.set_num_threads(max(1, int(threads)))
        models, features, score_funcs, configs, self.specs = cloudpickle.loads(payload)
        self.software = software_versions()
        # Example ids come once each, so the engines' in-memory caches only need to hold a chunk's
        # predictions and maps (each is read again within the chunk, by the next method).
        entries = 4 * CHUNK * max(1, len(self.specs))
        self.engines: list[Engine] = []
        self.recorders: list[RecordingStore] = []  # each engine's store, in order
        for model, feats, score_func, cfg in zip(models, features, score_funcs, configs):
            self.recorders.append(RecordingStore())
            self.engines.append(
                Engine(
                    model,
                    feats,
                    score_func,
                    name=cfg.name,
                    device=cfg.device,
                    use_label_for_attr=cfg.use_label_for_attr,
                    internal_batch_size=cfg.internal_batch_size,
                    cache_entries=entries,
                    prediction_entries=entries,
                    store=cast(ModelStore, self.recorders[-1]),  # it has the ModelStore methods the engine calls
                )
            )

    def ready(self) -> tuple[str, int]:
        """This actor's software versions (the store's rows are keyed by them) and torch threads."""
        return self.software, torch.get_num_threads()

    def run(
        self,
        chunk: list[Example],
        want: list[int | None],
        stored: list[tuple[dict[str, tuple[list[int], list[float]]], set[ExplanationKey]]],
    ) -> ChunkResult:
        """The local executor's calls on one chunk; the rows its engines saved, and the examples' errors."""
        t0 = time.monotonic()
        for recorder, (predictions, explained) in zip(self.recorders, stored):
            recorder.begin(predictions, explained)
        failures: list[tuple[Any, str, str, str]] = []
        try:
            for spec, params in self.specs:
                for engine in self.engines:
                    with engine.call_sizes.static():  # the local executor's batches, bit for bit
                        results = engine.run(chunk, spec, params, want)
                    for result in results:
                        if result.error:
                            failures.append((result.example_id, engine.name, spec.name, result.error))
        except ValidationError as exc:  # the arguments do not fit the model: the driver raises it
            return ChunkResult([], [], time.monotonic() - t0, (exc.field, str(exc)[len(exc.field) + 2 :]))
        rows = [(r.saved_predictions, r.saved_explanations) for r in self.recorders]
        for r in self.recorders:
            r.begin({}, set())
        return ChunkResult(rows, failures, time.monotonic() - t0)


__all__ = ["ChunkResult", "ChunkWorker", "EngineConfig", "ExplanationKey", "RecordingStore"]
