"""Offline precompute: every example's predictions and maps for some methods, into the store.

``insights-app precompute`` (and :func:`precompute` from Python) walks the dataset in chunks,
runs every model's engine on each chunk with each method, and lets the engine write what it
computes to the visualizer's store. What the store already has is read, not recomputed, so a
run stopped by Ctrl+C or ``kill -9`` resumes where it stopped when started again (at most the
chunk in flight is redone). A served visualizer on the same store then answers those pages
without running the model.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from .dataset import Example
from .errors import DatasetError, ValidationError

TARGETS = ("top1", "label")
CHUNK = 16  # examples per engine call (the engine splits it into captum calls as it measures best)


@dataclass
class PrecomputeSummary:
    """What a run did: examples seen, maps stored by this run, found stored already, failed."""

    examples: int = 0
    stored: int = 0
    already: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: List[str] = field(default_factory=list)  # the first few messages

    def line(self) -> str:
        return (f"{self.examples} examples: {self.stored} maps stored, {self.already} already stored, "
                f"{self.failed} failed, in {self.seconds:.1f} s")


def parse_arguments(text: Optional[str], methods: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """``--arguments`` JSON: {method: {argument: value}} for some of ``methods`` (ValidationError otherwise)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError("--arguments", f"is not valid JSON: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValidationError("--arguments", 'must be a JSON object of objects, e.g. {"IntegratedGradients": '
                                             '{"n_steps": 16}}')
    unknown = [m for m in value if m not in methods]
    if unknown:
        raise ValidationError("--arguments", f"names {unknown[0]!r}, which is not among --methods")
    return value


def precompute(vis: Any, methods: Sequence[str], arguments: Optional[Mapping[str, Mapping[str, Any]]] = None,
               targets: str = "top1", limit: Optional[int] = None, progress: bool = True,
               report: Callable[[str], None] = lambda line: print(line, flush=True)) -> PrecomputeSummary:
    """Compute and store every example's maps with ``methods`` (names), for every model."""
    if vis.results_store is None:
        raise ValidationError("store", "precompute needs a store: pass store=DIR (--store DIR)")
    if targets not in TARGETS:
        raise ValidationError("targets", f"must be one of {', '.join(TARGETS)}")
    specs = []
    for name in methods:
        if name not in vis.methods:
            raise ValidationError("methods", f"unknown method {name!r}; choose among {', '.join(vis.methods)}")
        spec = vis.methods[name]
        specs.append((spec, spec.validate(dict((arguments or {}).get(name, {})), vis.image_hw)))
    summary = PrecomputeSummary()
    before = vis.results_store.counts()["explanations"]
    t0 = time.monotonic()
    bar = _progress_bar(vis, limit, progress)
    ex_id = 0
    try:
        while limit is None or ex_id < limit:
            chunk = _read_chunk(vis, ex_id, CHUNK if limit is None else min(CHUNK, limit - ex_id))
            if not chunk:
                break
            want = [ex.label if targets == "label" else None for ex in chunk]
            for spec, params in specs:
                for engine in vis.engines:
                    for result in engine.run(chunk, spec, params, want):
                        if result.error:
                            summary.failed += 1
                            if len(summary.failures) < 5:
                                summary.failures.append(f"example {result.example_id}, {engine.name}, {spec.name}: "
                                                        f"{result.error}")
            ex_id += len(chunk)
            summary.examples = ex_id
            if bar is not None:
                bar.update(len(chunk))
            elif progress and ex_id % (CHUNK * 16) == 0:
                report(f"{ex_id} examples done")
    finally:
        if bar is not None:
            bar.close()
        summary.seconds = time.monotonic() - t0
        summary.stored = vis.results_store.counts()["explanations"] - before
        wanted = summary.examples * len(specs) * len(vis.engines)
        summary.already = max(0, wanted - summary.stored - summary.failed)
    return summary


def _read_chunk(vis: Any, first: int, n: int) -> List[Example]:
    out: List[Example] = []
    for i in range(first, first + n):
        try:
            out.append(vis.store.get(i))
        except IndexError:
            break
        except DatasetError:
            raise
    return out


def _progress_bar(vis: Any, limit: Optional[int], progress: bool) -> Any:
    """tqdm on a terminal; None otherwise (plain progress lines then)."""
    if not progress or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    from .triage.dataset_pass import known_size

    total = known_size(vis.store.dataset)
    if limit is not None:
        total = limit if total is None else min(total, limit)
    return tqdm(total=total, unit="ex", desc="precompute")
