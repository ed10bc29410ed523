"""The Ray executor (``executor="ray"``, ``--executor ray``): chunks computed by Ray actors.

The driver (this process) walks the dataset in the local executor's chunks and, for each,
reads what the store already has: an example whose prediction and every method's map are
stored, for every model, is done; a chunk with anything missing goes to an actor. Each actor
(:mod:`.ray_worker`) receives the models, features, score functions and methods once, at its
construction, runs the local executor's ``engine.run`` calls on each chunk it is sent and
returns the rows its engines saved and the examples' errors; the driver writes them with the
real store, the only writer. A few chunks per actor are in flight at once; results are
written as they arrive.

An actor that dies (killed, out of memory, a crash in native code) costs no more than its
chunks: they are sent again to the other actors, and a replacement actor is started (at most
as many replacements as actors at the start). A chunk whose actor died while computing it
twice fails alone: its missing maps are counted and listed as the run's failures. Only when
no actor is left does the run stop, with the error. Before joining a cluster at an address,
the address is probed (:mod:`.ray_address`): Ray's own connection retries last about ten
minutes. Ctrl+C stops submitting, writes what has arrived, kills the actors and raises
KeyboardInterrupt.

Ray is imported here only, and this module only when ``executor="ray"`` is asked for.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from ..dataset import Example, ExampleBatch
from ..engine import Engine, Prediction, arguments_key, fingerprints
from ..errors import ComputationError, ValidationError
from ..store import ModelStore
from . import Run
from .ray_address import probe
from .ray_worker import ChunkResult, ChunkWorker, EngineConfig, ExplanationKey, RecordingStore

log = logging.getLogger(__name__)

RAY_MISSING = 'ray needs Ray: pip install "insights-app[ray]"'
IN_FLIGHT_PER_ACTOR = 2  # one computing, one waiting in the actor's queue: no idle gap between chunks
START_TIMEOUT_S = 300.0  # an actor that has not started by then is given up on (the cluster has no room)
MAX_ATTEMPTS = 2  # a chunk whose actor died while computing it this often fails (a crash on its examples)
SETTLE_S = 30.0  # how long a dead actor's other chunks are waited for (Ray answers them at once)


def require_ray() -> Any:
    """The ray module, or the one-line error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ValidationError("executor", RAY_MISSING) from None
    return ray


# ---------------------------------------------------------------------- the driver


@dataclass
class Plan:
    """One chunk: its examples, its wanted targets, and what the store has for it (per model).

    ``missing`` names what the chunk adds to the store, (example id, model, method): what fails
    when the chunk does. ``attempts`` counts the actors that died while computing it."""

    first: int
    chunk: list[Example]
    want: list[int | None]
    stored: list[tuple[dict[str, tuple[list[int], list[float]]], set[ExplanationKey]]] = field(default_factory=list)
    missing: list[tuple[Any, str, str]] = field(default_factory=list)
    attempts: int = 0

    @property
    def complete(self) -> bool:
        return not self.missing


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
        asked: list[tuple[int, ExplanationKey]] = []  # (index of the method, key)
        for ex, fp, requested in zip(chunk, fps, want):
            if fp not in predictions:
                plan.missing.extend((ex.id, engine.name, spec.name) for spec, _ in run.specs)
                continue
            target = engine.target(Prediction(*predictions[fp]), requested)
            asked.extend((m, (fp, key, target)) for m, key in enumerate(keys))
        explained = set(store.explanations([key for _, key in asked])) if asked else set()
        ids = {fp: ex.id for ex, fp in zip(chunk, fps)}
        plan.missing.extend(
            (ids[key[0]], engine.name, run.specs[m][0].name) for m, key in asked if key not in explained
        )
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
        self.replacements_left = 0
        self._spawn: tuple[Any, Any, list[str]] | None = None  # (actor class, payload ref, import path)
        self._software = ""
        if not ray.is_initialized():
            if address:
                check_address(address)
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
        self._spawn = (actor_class, payload_ref, path)
        self._software = stored_in(run.vis.engines[0]).software
        actors = [actor_class.remote(payload_ref, path, 1) for _ in range(n)]
        self.actors = list(actors)
        readies = {a.ready.remote(): a for a in actors}
        done, late = ray.wait(list(readies), num_returns=len(readies), timeout=START_TIMEOUT_S)
        if not done:
            raise ComputationError(
                f"no Ray worker started within {START_TIMEOUT_S:.0f} s (the cluster has "
                f"{resources.get('CPU', 0):g} free CPUs and {resources.get('GPU', 0):g} GPUs)"
            )
        for ref in done:
            self.check_versions(ray.get(ref)[0])
        for ref in late:
            log.warning("a Ray worker did not start within %.0f s; going on with %d", START_TIMEOUT_S, len(done))
            ray.kill(readies[ref])
        self.actors = [readies[ref] for ref in done]
        self.replacements_left = n
        log.info("precompute: %d Ray workers%s", len(self.actors), " (one GPU each)" if on_cuda else "")

    def check_versions(self, theirs: str) -> None:
        """An actor's software versions are this process's: the store's rows are keyed by them."""
        if theirs != self._software:
            raise ValidationError(
                "executor",
                f"the Ray workers run {theirs}, this process {self._software}: their results "
                "would be stored under the wrong versions; install the same versions "
                "on the workers",
            )

    def drop(self, actor: Any) -> None:
        """An actor that died (or is given up on): killed, to be sure, and no longer used."""
        self.actors = [a for a in self.actors if a is not actor]
        try:
            self.ray.kill(actor)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def replace(self) -> tuple[Any, Any] | None:
        """A new actor, while replacements are left: (actor, the ref its start answers on)."""
        if self._spawn is None or self.replacements_left < 1:
            return None
        self.replacements_left -= 1
        actor_class, payload_ref, path = self._spawn
        actor = actor_class.remote(payload_ref, path, 1)
        self.actors.append(actor)  # killed by close() even before it is ready
        return actor, actor.ready.remote()

    def close(self) -> None:
        for actor in list(self.actors):
            self.drop(actor)
        if self.started:
            self.ray.shutdown()
            self.started = False


def check_address(address: str) -> None:
    """A ValidationError, within seconds, for an address where no Ray cluster answers (``auto``:
    the cluster ``ray start`` recorded on this machine, as Ray finds it)."""
    target: str | None = address
    if address.strip() == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address
        except ImportError:  # Ray moved it: Ray's own checks then
            return
        try:
            target = canonicalize_bootstrap_address("auto")
        except ConnectionError as exc:
            raise ValidationError("ray_address", f"cannot join the Ray cluster at auto: {exc}") from None
    problem = probe(target) if target else None
    if problem:
        raise ValidationError("ray_address", f"cannot join the Ray cluster at {address}: {problem}")


@dataclass
class InFlight:
    """A chunk sent to an actor; ``order`` is when (an actor computes its chunks in that order)."""

    actor: Any
    plan: Plan
    order: int


class Workers:
    """The actors at work: their free slots, the chunks in flight, the replacements starting.

    When an actor dies, its chunks come back from :meth:`wait` as lost (to be sent again, or to
    fail); the first of them, the one it was computing, counts an attempt; a replacement starts.
    """

    def __init__(self, run: Run, cluster: Cluster) -> None:
        self.run, self.cluster, self.ray = run, cluster, cluster.ray
        self.free: deque[Any] = deque(a for a in cluster.actors for _ in range(IN_FLIGHT_PER_ACTOR))
        self.pending: dict[Any, InFlight] = {}  # result ref -> the chunk
        self.starting: dict[Any, tuple[Any, float]] = {}  # ready ref -> (replacement actor, deadline)
        self.sent = 0
        self.deaths = 0
        self.last_death = ""

    @property
    def busy(self) -> bool:
        return bool(self.pending or self.starting)

    def submit(self, plan: Plan) -> None:
        actor = self.free.popleft()
        ref = actor.run.remote([_compact(ex) for ex in plan.chunk], plan.want, plan.stored)
        self.pending[ref] = InFlight(actor, plan, self.sent)
        self.sent += 1

    def wait(self) -> tuple[list[tuple[Plan, ChunkResult]], list[Plan]]:
        """Until something arrives: the chunks done, with their results, and the chunks lost with their actor."""
        ray = self.ray
        timeout = None
        if self.starting:
            timeout = max(0.0, min(deadline for _, deadline in self.starting.values()) - time.monotonic())
        ready, _ = ray.wait([*self.pending, *self.starting], num_returns=1, timeout=timeout)
        done: list[tuple[Plan, ChunkResult]] = []
        lost: list[Plan] = []
        for ref in ready:
            if ref in self.starting:
                self._started(ref)
                continue
            flight = self.pending.pop(ref)
            try:
                done.append((flight.plan, ray.get(ref)))
                self.free.append(flight.actor)
            except ray.exceptions.RayActorError as exc:
                self._died(flight, exc, done, lost)
        for ref, (actor, deadline) in list(self.starting.items()):
            if time.monotonic() >= deadline:
                log.warning("a new Ray worker did not start within %.0f s", START_TIMEOUT_S)
                del self.starting[ref]
                self.cluster.drop(actor)
        return done, lost

    def _died(self, flight: InFlight, exc: Exception, done: list[tuple[Plan, ChunkResult]], lost: list[Plan]) -> None:
        """``flight``'s actor is gone: its other chunks are collected (done or lost), one replacement starts."""
        ray, actor = self.ray, flight.actor
        self.deaths += 1
        self.last_death = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        self.free = deque(a for a in self.free if a is not actor)
        others = {ref: f for ref, f in self.pending.items() if f.actor is actor}
        for ref in others:
            del self.pending[ref]
        settled, _ = ray.wait(list(others), num_returns=len(others), timeout=SETTLE_S) if others else ([], [])
        failed = [flight]
        for ref, other in others.items():
            try:
                if ref not in settled:
                    raise TimeoutError
                done.append((other.plan, ray.get(ref)))
            except (ray.exceptions.RayActorError, TimeoutError):
                failed.append(other)
        failed.sort(key=lambda f: f.order)
        failed[0].plan.attempts += 1  # the chunk it was computing; the others waited in its queue
        lost.extend(f.plan for f in failed)
        self.cluster.drop(actor)
        spare = self.cluster.replace()
        if spare is not None:
            self.starting[spare[1]] = (spare[0], time.monotonic() + START_TIMEOUT_S)
        chunks = ", ".join(f"{f.plan.chunk[0].id}-{f.plan.chunk[-1].id}" for f in failed)
        self.run.report(
            f"a Ray worker died ({self.last_death}); its examples {chunks} are computed again"
            + (", and a new worker is starting" if spare is not None else "")
        )

    def _started(self, ref: Any) -> None:
        actor, _ = self.starting.pop(ref)
        try:
            theirs, _ = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            log.warning("a new Ray worker failed to start: %s", exc)
            self.cluster.drop(actor)
            return
        self.cluster.check_versions(theirs)
        self.free.extend([actor] * IN_FLIGHT_PER_ACTOR)


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


def _fail(run: Run, plan: Plan, why: str) -> None:
    """A chunk that killed the actors computing it: what it would have stored fails, listed."""
    first, last = plan.chunk[0].id, plan.chunk[-1].id
    error = f"the Ray worker computing examples {first}-{last} died {plan.attempts} times ({why})"
    for example_id, model, method in plan.missing:
        run.failure(example_id, model, method, error)
    run.advance(len(plan.chunk))


def next_plan(run: Run, first: int) -> Plan | None:
    """The chunk at ``first`` and what the store has for it; None past the end (or the limit)."""
    if run.limit is not None and first >= run.limit:
        return None
    chunk = run.read_chunk(first)
    if not chunk:
        return None
    plan = stored_for(run, chunk, run.wanted_targets(chunk))
    plan.first = first
    return plan


def run_ray(run: Run, address: str | None = None, workers: int | None = None) -> None:
    """Precompute on Ray actors; the store is written here only (see the module's docstring).

    Ray is joined (or a local instance started) when the first chunk that misses something is
    found: a run over a store that has everything starts no cluster."""
    ray = require_ray()
    cluster: Cluster | None = None
    pool: Workers | None = None
    again: deque[Plan] = deque()  # chunks whose actor died, to send again
    ex_id, exhausted = 0, False
    try:
        while True:
            while pool is None or pool.free or not pool.busy:
                if again:
                    plan = again.popleft()
                else:
                    found = None if exhausted else next_plan(run, ex_id)
                    if found is None:
                        exhausted = True
                        break
                    plan = found
                    ex_id = plan.chunk[-1].id + 1  # past the chunk (and any unreadable position in it)
                    if plan.complete:
                        run.advance(len(plan.chunk))
                        continue
                if pool is None:
                    started = time.monotonic()
                    cluster = Cluster(ray, address, workers)
                    cluster.start_actors(run, workers)
                    run.summary.startup_seconds += time.monotonic() - started
                    pool = Workers(run, cluster)
                if not pool.free:  # no actor left, none starting
                    raise ComputationError(
                        f"every Ray worker died ({pool.deaths} deaths, the last: {pool.last_death}); "
                        f"{run.summary.examples} examples are done and stored (a new run computes the rest)"
                    )
                pool.submit(plan)
            if pool is None or (not pool.pending and not again and exhausted):
                break  # (a replacement still starting is not waited for)
            done, lost = pool.wait()
            for plan, result in done:
                _write(run, plan, result)
            for plan in lost:
                if plan.attempts >= MAX_ATTEMPTS:
                    _fail(run, plan, pool.last_death)
                else:
                    again.append(plan)
    except KeyboardInterrupt:
        # Stop submitting; keep what has arrived (whole chunks), then stop the actors.
        pending = pool.pending if pool is not None else {}
        if pending:
            try:
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
                for ref in ready:
                    _write(run, pending.pop(ref).plan, ray.get(ref, timeout=5))
            except Exception:  # noqa: BLE001 - interrupted: what could not be read is computed next time
                log.debug("results lost to the interrupt", exc_info=True)
        raise
    finally:
        if cluster is not None:
            cluster.close()


__all__ = ["ChunkWorker", "RecordingStore", "check_address", "require_ray", "run_ray", "stored_for"]
