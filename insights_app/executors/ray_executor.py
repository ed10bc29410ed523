"""The Ray executor (``executor="ray"``, ``--executor ray``): chunks computed by Ray actors.

The driver (this process) walks the dataset in the local executor's chunks and, for each,
reads what the store already has: an example whose prediction and every method's map are
stored, for every model, is done; a chunk with anything missing goes to an actor. Each actor
receives the models, features, score functions and methods once, at its construction
(cloudpickle), and builds one :class:`~insights_app.engine.Engine` per model whose ``store``
is a :class:`RecordingStore`: it answers from the rows of the chunk that the driver found
stored (so the engine takes the path it takes here, and computes exactly what the local
executor would) and keeps the rows the engine saves. The actor runs the local executor's
``engine.run`` calls on the chunk and returns those rows and the examples' errors; the driver
writes them with the real store, the only writer. A few chunks per actor are in flight at
once; results are written as they arrive. Ctrl+C stops submitting, writes what has arrived,
kills the actors and raises KeyboardInterrupt.

Ray is imported here only, and this module only when ``executor="ray"`` is asked for.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch

from ..dataset import Example, ExampleBatch
from ..engine import Engine, Prediction, arguments_key, fingerprints
from ..errors import ComputationError, ValidationError
from ..store import ModelStore
from . import CHUNK, Run

log = logging.getLogger(__name__)

RAY_MISSING = 'ray needs Ray: pip install "insights-app[ray]"'
IN_FLIGHT_PER_ACTOR = 2  # one computing, one waiting in the actor's queue: no idle gap between chunks
START_TIMEOUT_S = 300.0  # an actor that has not started by then is given up on (the cluster has no room)
ExplanationKey = tuple[str, str, int | None]  # (example fingerprint, arguments_key, target)


def require_ray() -> Any:
    """The ray module, or the one-line error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ValidationError("executor", RAY_MISSING) from None
    return ray


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


# ---------------------------------------------------------------------- the driver


@dataclass
class Plan:
    """One chunk: its examples, its wanted targets, and what the store has for it (per model)."""

    first: int
    chunk: list[Example]
    want: list[int | None]
    stored: list[tuple[dict[str, tuple[list[int], list[float]]], set[ExplanationKey]]] = field(default_factory=list)
    complete: bool = True


def stored_in(engine: Engine) -> ModelStore:
    """The driver's store of one model (precompute is given one before it starts)."""
    if engine.store is None:
        raise ComputationError(f"precompute needs a store: {engine.name} has none")
    return engine.store


def stored_for(run: Run, chunk: list[Example], want: list[int | None]) -> Plan:
    """What the store has for a chunk, per model; ``complete`` when every example has its prediction
    and every method's map for every model (the same fingerprints, keys and targets as the engine's)."""
    plan = Plan(0, chunk, want)
    fps: list[str] = [""] * len(chunk)
    for index, batch in ExampleBatch.groups(chunk):
        for i, fp in zip(index, fingerprints(batch)):
            fps[i] = fp
    keys = [arguments_key(spec.fingerprint, params) for spec, params in run.specs]
    for engine in run.vis.engines:
        store = stored_in(engine)
        predictions = store.predictions(fps)
        asked: list[ExplanationKey] = []
        for fp, requested in zip(fps, want):
            if fp not in predictions:
                plan.complete = False
                continue
            target = engine.target(Prediction(*predictions[fp]), requested)
            asked.extend((fp, key, target) for key in keys)
        explained = set(store.explanations(asked)) if asked else set()
        if len(explained) < len(asked):
            plan.complete = False
        plan.stored.append((predictions, explained))
    return plan


def _compact(ex: Example) -> Example:
    """The example with its own tensors: the dataset's rows are views of its whole batch, which
    pickling would send along with every example."""

    def own(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x.detach().clone()
        if isinstance(x, (tuple, list)):
            return type(x)(own(v) for v in x)
        return x

    return Example(ex.id, tuple(own(x) for x in ex.inputs), ex.label, own(ex.additional_args))


def _payload(run: Run) -> tuple[bytes, bool]:
    """The cloudpickled models, features, score functions, engine configs and methods; and whether
    the models are on CUDA (then they travel on the CPU and each actor moves them to its GPU)."""
    import cloudpickle

    models, features, score_funcs, configs = [], [], [], []
    on_cuda = any(e.device.type == "cuda" for e in run.vis.engines)
    for engine in run.vis.engines:
        model = engine.model
        if engine.device.type == "cuda" and isinstance(model, torch.nn.Module):
            model = copy.deepcopy(model).to("cpu")
        models.append(model)
        features.append(engine.features)
        score_funcs.append(engine.score_func)
        configs.append(
            EngineConfig(
                engine.name,
                "cuda" if engine.device.type == "cuda" else engine.device.type,
                engine.use_label_for_attr,
                engine.internal_batch_size,
            )
        )
    for spec, _ in run.specs:
        spec.fingerprint  # noqa: B018  (computed here, so that the actors key their rows as this process does
    return cloudpickle.dumps((models, features, score_funcs, configs, list(run.specs))), on_cuda


class Cluster:
    """Ray joined (or started), and the actors; everything undone by :meth:`close`."""

    def __init__(self, ray: Any, address: str | None, workers: int | None) -> None:
        self.ray = ray
        self.started = False
        self.actors: list[Any] = []
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
                else:
                    ray.init(
                        num_cpus=workers or os.cpu_count() or 1,
                        include_dashboard=False,
                        log_to_driver=False,
                        logging_level=logging.WARNING,
                    )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                raise ValidationError("ray_address", f"cannot start or join {where}: {exc}") from None
            self.started = True

    def start_actors(self, run: Run, workers: int | None) -> None:
        """One actor per CPU slot (or per GPU for a CUDA model), or ``workers``; wait until they run."""
        ray = self.ray
        payload, on_cuda = _payload(run)
        resources = ray.available_resources()
        if on_cuda:
            n = workers or int(resources.get("GPU", 0))
            if n < 1:
                raise ValidationError("executor", "the model is on CUDA but the Ray cluster has no free GPU")
            options: dict[str, Any] = {"num_cpus": 1, "num_gpus": 1}
        else:
            n = workers or max(1, int(resources.get("CPU", 1)))
            options = {"num_cpus": 1}
        payload_ref = ray.put(payload)
        path = [os.getcwd() if p == "" else p for p in sys.path]
        actor_class = ray.remote(ChunkWorker).options(max_restarts=0, **options)
        actors = [actor_class.remote(payload_ref, path, 1) for _ in range(n)]
        self.actors = list(actors)
        readies = {a.ready.remote(): a for a in actors}
        done, late = ray.wait(list(readies), num_returns=len(readies), timeout=START_TIMEOUT_S)
        if not done:
            raise ComputationError(
                f"no Ray worker started within {START_TIMEOUT_S:.0f} s (the cluster has "
                f"{resources.get('CPU', 0):g} free CPUs and {resources.get('GPU', 0):g} GPUs)"
            )
        ours = stored_in(run.vis.engines[0]).software
        for ref in done:
            theirs, _ = ray.get(ref)
            if theirs != ours:
                raise ValidationError(
                    "executor",
                    f"the Ray workers run {theirs}, this process {ours}: their results "
                    "would be stored under the wrong versions; install the same versions "
                    "on the workers",
                )
        for ref in late:
            log.warning("a Ray worker did not start within %.0f s; going on with %d", START_TIMEOUT_S, len(done))
            ray.kill(readies[ref])
        self.actors = [readies[ref] for ref in done]
        log.info("precompute: %d Ray workers%s", len(self.actors), " (one GPU each)" if on_cuda else "")

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []
        if self.started:
            self.ray.shutdown()
            self.started = False


def _write(run: Run, plan: Plan, result: ChunkResult) -> None:
    """The driver writes an actor's rows (the only writer) and counts the chunk done."""
    if result.invalid is not None:
        raise ValidationError(*result.invalid)
    for engine, (predictions, explanations) in zip(run.vis.engines, result.rows):
        if predictions:
            stored_in(engine).save_predictions(predictions)
        if explanations:
            stored_in(engine).save_explanations(explanations)
    for example_id, model, method, error in result.failures:
        run.failure(example_id, model, method, error)
    run.advance(len(plan.chunk))


def run_ray(run: Run, address: str | None = None, workers: int | None = None) -> None:
    """Precompute on Ray actors; the store is written here only (see the module's docstring).

    Ray is joined (or a local instance started) when the first chunk that misses something is
    found: a run over a store that has everything starts no cluster."""
    ray = require_ray()
    cluster: Cluster | None = None
    free: deque[Any] = deque()  # one entry per free in-flight slot (an actor)
    pending: dict[Any, tuple[Any, Plan]] = {}  # result ref -> (actor, plan)
    ex_id, exhausted = 0, False
    try:
        while True:
            while not exhausted and (cluster is None or free):
                if run.limit is not None and ex_id >= run.limit:
                    exhausted = True
                    break
                chunk = run.read_chunk(ex_id)
                if not chunk:
                    exhausted = True
                    break
                plan = stored_for(run, chunk, run.wanted_targets(chunk))
                plan.first = ex_id
                ex_id = chunk[-1].id + 1  # past the chunk (and any unreadable position in it)
                if plan.complete:
                    run.advance(len(chunk))
                    continue
                if cluster is None:
                    started = time.monotonic()
                    cluster = Cluster(ray, address, workers)
                    cluster.start_actors(run, workers)
                    run.summary.startup_seconds += time.monotonic() - started
                    free.extend(a for a in cluster.actors for _ in range(IN_FLIGHT_PER_ACTOR))
                actor = free.popleft()
                ref = actor.run.remote([_compact(ex) for ex in chunk], plan.want, plan.stored)
                pending[ref] = (actor, plan)
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                actor, plan = pending.pop(ref)
                _write(run, plan, ray.get(ref))
                free.append(actor)
    except KeyboardInterrupt:
        # Stop submitting; keep what has arrived (whole chunks), then stop the actors.
        if pending:
            try:
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
                for ref in ready:
                    _write(run, pending.pop(ref)[1], ray.get(ref, timeout=5))
            except Exception:  # noqa: BLE001 - interrupted: what could not be read is computed next time
                log.debug("results lost to the interrupt", exc_info=True)
        raise
    finally:
        if cluster is not None:
            cluster.close()


__all__ = ["ChunkWorker", "RecordingStore", "require_ray", "run_ray", "stored_for"]
