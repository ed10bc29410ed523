"""Offline precompute: every example's predictions and maps for some methods, into the store.

``insights-app precompute`` (and :func:`precompute` from Python) walks the dataset in chunks,
runs every model's engine on each chunk with each method, and writes what is computed to the
visualizer's store. What the store already has is read, not recomputed, so a run stopped by
Ctrl+C or ``kill -9`` resumes where it stopped when started again (at most the chunks in
flight are redone). A served visualizer on the same store then answers those pages without
running the model. Who runs the engines is the executor (:mod:`insights_app.executors`):
here (``local``, the default) or Ray actors (``ray``), this process writing the store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ValidationError
from .executors import CHUNK, EXECUTORS, Run, progress_bar
from .executors.local import run_local
from .protocols import VisualizerLike

TARGETS = ("top1", "label")


@dataclass
class PrecomputeSummary:
    """What a run did: examples seen, maps stored by this run, found stored already, failed, and
    computed but not stored (the store could not be written: ``unsaved``, ``store_problem`` says why).

    ``stored`` counts the rows this run's writes committed, so other processes writing or pruning
    the store meanwhile do not change it."""

    examples: int = 0
    stored: int = 0
    already: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)  # the first few messages
    startup_seconds: float = 0.0  # of ``seconds``: joining Ray and starting its actors (ray executor)
    unsaved: int = 0
    store_problem: str | None = None

    def line(self) -> str:
        unsaved = f", {self.unsaved} computed but not stored ({self.store_problem})" if self.unsaved else ""
        return (
            f"{self.examples} examples: {self.stored} maps stored, {self.already} already stored, "
            f"{self.failed} failed{unsaved}, in {self.seconds:.1f} s"
        )


def parse_arguments(text: str | None, methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--arguments`` JSON: {method: {argument: value}} for some of ``methods`` (ValidationError otherwise)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError("--arguments", f"is not valid JSON: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValidationError(
            "--arguments", 'must be a JSON object of objects, e.g. {"IntegratedGradients": {"n_steps": 16}}'
        )
    unknown = [m for m in value if m not in methods]
    if unknown:
        raise ValidationError("--arguments", f"names {unknown[0]!r}, which is not among --methods")
    return value


def precompute(
    vis: VisualizerLike,
    methods: Sequence[str],
    arguments: Mapping[str, Mapping[str, Any]] | None = None,
    targets: str = "top1",
    limit: int | None = None,
    progress: bool = True,
    report: Callable[[str], None] = lambda line: print(line, flush=True),
    *,
    executor: str = "local",
    ray_address: str | None = None,
    workers: int | None = None,
) -> PrecomputeSummary:
    """Compute and store every example's maps with ``methods`` (names), for every model.

    ``executor="local"`` runs the visualizer's engines here; ``"ray"`` runs them in Ray actors
    (``workers`` of them: default one per CPU slot, or per GPU for a model on CUDA) on the
    cluster at ``ray_address`` (default: a local Ray instance), this process the only writer
    to the store. Both store the same results. Ctrl+C stops the run (what is done stays
    stored) and raises KeyboardInterrupt.
    """
    if vis.results_store is None:
        raise ValidationError("store", "precompute needs a store: pass store=DIR (--store DIR)")
    if targets not in TARGETS:
        raise ValidationError("targets", f"must be one of {', '.join(TARGETS)}")
    if executor not in EXECUTORS:
        raise ValidationError("executor", f"must be one of {', '.join(EXECUTORS)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValidationError("workers", "must be a whole number, at least 1")
    if executor == "local" and (ray_address is not None or workers is not None):
        raise ValidationError("executor", "ray_address and workers go with executor='ray' (--executor ray)")
    specs = []
    for name in methods:
        if name not in vis.methods:
            raise ValidationError("methods", f"unknown method {name!r}; choose among {', '.join(vis.methods)}")
        spec = vis.methods[name]
        specs.append((spec, spec.validate(dict((arguments or {}).get(name, {})), vis.image_hw)))
    if executor == "ray":
        from .executors.ray_executor import require_ray

        require_ray()  # before anything runs: one line if Ray is not installed
    summary = PrecomputeSummary()
    faults = vis.results_store.faults  # what this process writes, whatever others do to the store meanwhile
    written, unwritten = faults.written["explanations"], faults.unwritten["explanations"]
    t0 = time.monotonic()
    run = Run(vis, specs, targets, limit, summary, progress_bar(vis, limit, progress), progress, report)
    try:
        if executor == "ray":
            from .executors.ray_executor import run_ray

            run_ray(run, address=ray_address, workers=workers)
        else:
            run_local(run)
    finally:
        if run.bar is not None:
            run.bar.close()
        summary.seconds = time.monotonic() - t0
        summary.stored = faults.written["explanations"] - written
        summary.unsaved = faults.unwritten["explanations"] - unwritten
        summary.store_problem = faults.problem if summary.unsaved else None
        wanted = summary.examples * len(specs) * len(vis.engines)
        summary.already = max(0, wanted - summary.stored - summary.unsaved - summary.failed)
    return summary


__all__ = ["CHUNK", "TARGETS", "PrecomputeSummary", "parse_arguments", "precompute"]
