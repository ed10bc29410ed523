"""The method report: every method's metrics over a sample of the dataset, for each model.

Which method to believe depends on the model; this answers it with numbers: for each model and
method, the mean and spread of each metric over the same examples (evenly spaced over the
dataset when its size is known, else its first ones), and the sanity check on a few of them.
Everything goes through the engines' caches and the store, so a second report is read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..dataset import ExampleBatch, Unreadable
from ..engine import Explanation, arguments_key, fingerprints
from ..engine.readthrough import Backing, ReadThrough
from ..errors import ValidationError
from .options import METRICS, REPORT_METHODS, MetricOptions
from .sanity import MAX_STEPS, layers, sanity_check

if TYPE_CHECKING:
    from ..cancel import Cancel
    from ..dataset import Example
    from ..engine import Engine, Result
    from ..methods import MethodSpec
    from ..protocols import VisualizerLike
    from ..store.sqlite import MetricKey

# The sanity check's per-example summary is stored like a metric (same table, same keys, its own name).
SANITY_KEY = f'sanity:v1:{{"seed": 0, "steps": {MAX_STEPS}}}'

SAMPLE_MAX = 1024
SANITY_MAX = 64


def sample_ids(vis: VisualizerLike, sample: int) -> list[int]:
    """``sample`` example ids spread evenly over the dataset (its first ones when its size is unknown)."""
    from ..triage.dataset_pass import known_size

    size = vis.store.length if vis.store.length is not None else known_size(vis.store.dataset)
    if size is None or size <= sample:
        return list(range(sample if size is None else size))
    return sorted({int(i) for i in np.linspace(0, size - 1, sample)})


def _examples(vis: VisualizerLike, ids: Sequence[int], cancel: Cancel | None) -> list[Example]:
    out = []
    for i in ids:
        try:
            out.append(vis.store.get(i, cancel))
        except IndexError:
            break
        except Unreadable:  # an unreadable file of an indexed dataset: not in the sample
            continue
    return out


def _summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"mean": None, "std": None, "n": 0}
    a = np.asarray(values, np.float64)
    return {"mean": float(f"{a.mean():.6g}"), "std": float(f"{a.std():.6g}"), "n": int(len(a))}


def _number(value: Any) -> float | None:
    if isinstance(value, dict):
        value = value.get("area")
    return None if value is None else float(value)


@dataclass(frozen=True)
class ReportPlan:
    """A checked report request: what each step runs and what it costs (forward passes, for the time left)."""

    methods: list[tuple[MethodSpec, dict[str, Any]]]  # each method with its validated arguments
    sample: int
    sanity: int
    options: MetricOptions


def plan_report(
    vis: VisualizerLike,
    methods: Sequence[str] | None = None,
    sample: int = 64,
    options: MetricOptions | None = None,
    arguments: Mapping[str, Mapping[str, Any]] | None = None,
    sanity: int = 8,
) -> ReportPlan:
    """The request checked before any work (so that a mistake is a 400, not an event midway through a stream)."""
    options = options or MetricOptions(tuple(vis.metrics), registry=vis.metrics)
    names = [m for m in (methods or [m for m in REPORT_METHODS if m in vis.methods])]
    for name in names:
        if name not in vis.methods:
            raise ValidationError("methods", f"unknown method {name!r}; choose among {', '.join(vis.methods)}")
    if not 1 <= sample <= SAMPLE_MAX:
        raise ValidationError("sample", f"must be between 1 and {SAMPLE_MAX}")
    if not 0 <= sanity <= min(sample, SANITY_MAX):
        raise ValidationError("sanity", f"must be between 0 and {min(sample, SANITY_MAX)} (and at most the sample)")
    specs = [vis.methods[name] for name in names]
    checked = [(spec, spec.validate(dict((arguments or {}).get(spec.name, {})), vis.image_hw)) for spec in specs]
    return ReportPlan(checked, sample, sanity, options)


def _passes(vis: VisualizerLike, spec: MethodSpec, params: dict[str, Any], options: MetricOptions) -> int:
    """Forward passes per example of a method with the report's metrics (the weight of its step)."""
    try:
        cost = max(1, int(spec.cost(params, vis.image_hw)))
    except Exception:  # a user's cost function that cannot price these arguments: count one pass
        cost = 1
    return cost + options.evals(cost)


def report_events(vis: VisualizerLike, plan: ReportPlan, cancel: Cancel | None = None) -> Iterator[dict[str, Any]]:
    """The report as it is computed: a ``progress`` event before each step (each model's method, then
    its sanity check) and one when all are done, then the ``report``, then ``done``.

    Each step weighs its forward passes (examples times the method's and its metrics' passes; the
    sanity check's randomization steps), and ``left_ms`` is the time the remaining weight takes at
    the rate measured over the finished steps (None before one has finished): honest whatever the
    first step costs, and it drops as soon as a step is read from the store.
    """
    t0 = time.perf_counter()
    ids = sample_ids(vis, plan.sample)
    steps: list[tuple[int, MethodSpec, dict[str, Any], bool, float]] = []
    for m, engine in enumerate(vis.engines):
        cascade_steps = min(MAX_STEPS, max(1, len(layers(engine.model))))
        for spec, params in plan.methods:
            passes = _passes(vis, spec, params, plan.options)
            steps.append((m, spec, params, False, float(len(ids) * passes)))
            if plan.sanity:
                sanity_passes = plan.sanity * max(1, passes - plan.options.evals(passes)) * cascade_steps
                steps.append((m, spec, params, True, float(sanity_passes)))
    total = sum(w for *_, w in steps) or 1.0
    done = 0.0

    def progress(i: int) -> dict[str, Any]:
        elapsed = (time.perf_counter() - t0) * 1000
        left = None if done <= 0 else elapsed * (total - done) / done
        step = None
        if i < len(steps):
            m, spec, _p, is_sanity, _w = steps[i]
            step = f"{vis.engines[m].name}: {spec.label}" + (" (sanity check)" if is_sanity else "")
        return {
            "type": "progress",
            "step": step,
            "steps_done": i,
            "steps": len(steps),
            "done": round(done / total, 4),
            "elapsed_ms": round(elapsed, 1),
            "left_ms": None if left is None else round(left, 1),
        }

    yield progress(0)
    examples = _examples(vis, ids, cancel)
    models = [{"index": m, "name": e.name, "methods": []} for m, e in enumerate(vis.engines)]
    results: list[Result] = []
    for i, (m, spec, params, is_sanity, weight) in enumerate(steps):
        engine = vis.engines[m]
        rows = cast(list, models[m]["methods"])
        if not is_sanity:
            keep = plan.options.kept_attributions()  # this method's attributions only, for its metrics
            results = engine.run(examples, spec, params, cancel=cancel, keep_attributions=keep)
            values = engine.metrics(examples, results, spec, params, plan.options, cancel, attributions=keep)
            rows.append(_row(spec, plan.options, values, results))
        else:
            rows[-1]["sanity"] = _sanity(engine, spec, params, examples[: plan.sanity], results[: plan.sanity], cancel)
        done += weight
        yield progress(i + 1)
    yield {
        "type": "report",
        "report": {
            "examples": len(examples),
            "metrics": list(plan.options.names),
            "lower_is_better": {k: plan.options.spec(k).lower_is_better for k in plan.options.names},
            "models": models,
            "elapsed_ms": round((time.perf_counter() - t0) * 1000, 1),
        },
    }
    yield {"type": "done", "elapsed_ms": round((time.perf_counter() - t0) * 1000, 1)}


def _row(spec: MethodSpec, options: MetricOptions, values: list[dict[str, Any]], results: list[Result]) -> dict:
    """One method's line of the report: each metric's mean and spread, and how many examples failed."""
    row: dict[str, Any] = {"method": spec.name, "label": spec.label, "metrics": {}, "failed": 0}
    for metric in options.names:
        got = [
            _number(v.get(metric))
            for v in values
            if metric in v and not (isinstance(v.get(metric), dict) and "error" in v[metric])
        ]
        row["metrics"][metric] = _summary([g for g in got if g is not None])
    row["failed"] = sum(1 for r in results if r.explanation is None)
    return row


def method_report(
    vis: VisualizerLike,
    methods: Sequence[str] | None = None,
    sample: int = 64,
    options: MetricOptions | None = None,
    arguments: Mapping[str, Mapping[str, Any]] | None = None,
    sanity: int = 8,
    cancel: Cancel | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """The report as JSON (see :func:`table` for it as text); ``progress`` gets a line per method run."""
    plan = plan_report(vis, methods, sample, options, arguments, sanity)
    report: dict[str, Any] = {}
    n = len(sample_ids(vis, plan.sample))
    for event in report_events(vis, plan, cancel):
        if event["type"] == "progress" and event["step"] and not event["step"].endswith("(sanity check)"):
            progress(f"{event['step']} on {n} examples")
        elif event["type"] == "report":
            report = event["report"]
    return report


def _sanity(
    engine: Engine,
    spec: MethodSpec,
    params: dict[str, Any],
    examples: list[Example],
    results: list[Result],
    cancel: Cancel | None,
) -> dict[str, Any]:
    kept: list[tuple[Example, Explanation]] = [
        (ex, r.explanation)
        for ex, r in zip(examples, results)
        if r.explanation is not None and r.explanation.target is not None
    ]
    if not kept:
        return {"examples": 0, "insensitive": 0, "spearman": None, "ssim": None, "flag": False}
    # Per example: its SanityResult.to_json(), cached and stored like a metric (the engine's read-through).
    cache: ReadThrough[Hashable, Any] = ReadThrough(engine.results, size=lambda _v: 512)
    key = arguments_key(spec.fingerprint, params)
    checked: list[dict[str, Any]] = []
    by_id = {ex.id: exp for ex, exp in kept}
    for _index, batch in ExampleBatch.groups([ex for ex, _ in kept]):
        exps = [by_id[i] for i in batch.ids]

        def computed(positions: list[int], batch: ExampleBatch = batch, exps: list[Explanation] = exps) -> list[Any]:
            checks = engine.compute.run(
                sanity_check,
                engine,
                spec,
                params,
                batch.select(positions),
                [cast(int, exps[j].target) for j in positions],  # kept: each has one
                [exps[j].maps for j in positions],
                cancel=cancel,
            )
            return [c.to_json() for c in checks]

        backing: Backing[MetricKey, Any] | None = None
        if engine.store is not None:

            def store_keys(
                positions: list[int], batch: ExampleBatch = batch, exps: list[Explanation] = exps
            ) -> list[MetricKey]:
                fps = fingerprints(batch)  # asked only for what memory did not have
                return [(fps[j], key, exps[j].target, SANITY_KEY) for j in positions]

            backing = Backing(store_keys, engine.store.metrics, engine.store.save_metrics)
        memory_keys = [(ex_id, key, exp.target, SANITY_KEY) for ex_id, exp in zip(batch.ids, exps)]
        checked.extend(cache.get_many(memory_keys, computed, backing))
    rho = [c["spearman"][-1] for c in checked if c["spearman"] and c["spearman"][-1] is not None]
    ssim = [c["ssim"][-1] for c in checked if c["ssim"] and c["ssim"][-1] is not None]
    flagged = sum(bool(c["insensitive"]) for c in checked)
    return {
        "examples": len(checked),
        "insensitive": flagged,
        "spearman": _summary(rho)["mean"],
        "ssim": _summary(ssim)["mean"],
        "flag": flagged * 2 > len(checked),
    }


def table(report: Mapping[str, Any]) -> str:
    """The report as a Markdown table per model (mean ± std; the sanity check's verdict)."""
    metrics = report["metrics"]
    arrows = {k: ("↓" if report["lower_is_better"][k] else "↑") for k in metrics}
    lines = []
    for model in report["models"]:
        lines.append(f"{model['name']}, {report['examples']} examples:")
        lines.append("")
        head = ["method"] + [f"{k} {arrows[k]}" for k in metrics] + ["randomized model: Spearman / SSIM"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for row in model["methods"]:
            cells = [row["label"]]
            for k in metrics:
                s = row["metrics"][k]
                cells.append("n/a" if s["mean"] is None else f"{s['mean']:.3g} ± {s['std']:.2g}")
            san = row.get("sanity")
            if not san or not san["examples"]:
                cells.append("not run")
            else:
                verdict = " **insensitive to the model**" if san["flag"] else ""
                fmt = lambda v: "n/a" if v is None else f"{v:.2f}"
                cells.append(f"{fmt(san['spearman'])} / {fmt(san['ssim'])}{verdict}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


__all__ = ["REPORT_METHODS", "METRICS", "method_report", "sample_ids", "table"]
