"""The page as a service: what a page of examples, an attribute request, an export and ``vis.page()`` share.

Below the views (which parse a request and format the answer) and above the parts it drives: the
pager says which examples a page shows, the example store reads them, every model's
:class:`~insights_app.engine.Engine` predicts and attributes them (with their quality metrics
when asked), and the presenter turns the results into JSON. A page is a sequence of events
(:func:`page_events`): the page's ids first, for an expensive method a preview of each example
(one forward pass), then each example as soon as it is computed, the first alone so that
something shows early, the rest in the chunks the engine computes in one captum call each.
:func:`page_document` is the same page as one document.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from ..cancel import Cancel
from ..dataset import Example, ExampleBatch, NotReadYet, Unreadable
from ..engine import Engine, Explanation, Prediction, Result
from ..errors import ValidationError
from ..metrics.sanity import sanity_check
from ..protocols import VisualizerLike
from .query import AttributeQuery, PageQuery, Query


def predictions(
    engines: Sequence[Engine], examples: Sequence[Example], cancel: Cancel | None = None
) -> list[list[Prediction]]:
    """Every model's predictions of some examples (one list per model), in one pass per model."""
    return [[r.prediction for r in engine.run(examples, cancel=cancel)] for engine in engines]


def computed(
    vis: VisualizerLike, q: PageQuery, examples: Sequence[Example], cancel: Cancel | None = None
) -> list[list[Result]]:
    """Every model's results for some examples (one batch per model; one list per model), with
    their quality metrics when the query asks for them (``Result.metrics``)."""
    if not examples:
        return []
    return [scored(engine, q, examples, cancel=cancel) for engine in vis.engines]


def scored(
    engine: Engine,
    q: Query,
    examples: Sequence[Example],
    targets: Sequence[int | None] | None = None,
    cancel: Cancel | None = None,
) -> list[Result]:
    """One model's results for some examples, with each one's metrics when the query asks for them
    (``q.metrics``, set as ``Result.metrics``). Infidelity reads the run's own full-resolution
    attributions instead of making them again."""
    keep = q.metrics.kept_attributions() if q.metrics is not None else None
    results = engine.run(examples, q.method, q.arguments, targets, cancel=cancel, keep_attributions=keep)
    if q.metrics is not None:
        for result, values in zip(
            results, engine.metrics(examples, results, q.method, q.arguments, q.metrics, cancel, attributions=keep)
        ):
            result.metrics = values
    return results


def presented(
    vis: VisualizerLike,
    q: PageQuery,
    examples: Sequence[Example],
    per_model: list[list[Result]],
    scales: tuple[float, ...] | None = None,
) -> list[dict[str, Any]]:
    """Examples with every model's predictions and rendered attributions, as JSON."""
    out = [
        vis.presenter.example(
            ex,
            [
                vis.presenter.model(m, ex, results[j], q.visualization, q.top_k, scales)
                for m, results in enumerate(per_model)
            ],
        )
        for j, ex in enumerate(examples)
    ]
    return with_losses(vis, examples, out)


def with_losses(vis: VisualizerLike, examples: Sequence[Example], out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each model's loss of the example, once the dataset pass has it (the cards show it)."""
    for ex, ex_json in zip(examples, out):
        losses = vis.dataset_pass.records.losses_of(ex.id)
        if losses is None:
            continue
        for m_json, loss in zip(ex_json["models"], losses):
            if loss is not None:
                m_json["loss"] = round(loss, 6)
    return out


def explained(
    vis: VisualizerLike, q: PageQuery, examples: Sequence[Example], cancel: Cancel | None = None
) -> list[dict[str, Any]]:
    """Every model's predictions and attributions for some examples (one batch per model)."""
    return presented(vis, q, examples, computed(vis, q, examples, cancel))


# A method costing at least this many forward passes per example shows each example's input and
# predictions first (one extra forward pass per page, a small fraction of the page's work); cheaper
# ones are fast enough to show whole, and keep their shared prediction-and-attribution pass.
PREVIEW_MIN_EVALS = 8


def previewed(
    vis: VisualizerLike, q: PageQuery, examples: Sequence[Example], cancel: Cancel | None = None
) -> list[dict[str, Any]]:
    """Every model's predictions of some examples, their attributions still to come."""
    per_model = predictions(vis.engines, examples, cancel)
    return [
        vis.presenter.example(ex, [vis.presenter.pending(m, preds[j], q.top_k) for m, preds in enumerate(per_model)])
        for j, ex in enumerate(examples)
    ]


def evals_per_example(vis: VisualizerLike, q: PageQuery) -> int:
    """Forward passes the page's method costs per example at the dataset's image size (1 when unknown)."""
    try:
        return max(1, int(q.method.cost(q.arguments, vis.image_hw)))
    except Exception:  # an estimate that cannot be made (the engine then decides per example)
        return 1


def stream_chunks(
    vis: VisualizerLike, q: PageQuery, examples: Sequence[Example], first_chunk: int
) -> list[Sequence[Example]]:
    """How a page's examples are computed: the first ``first_chunk`` alone (something shows early),
    then as many per step as every model attributes in one captum call, so an expensive method
    streams each call's examples as it finishes and a cheap one still runs in one batched call."""
    if first_chunk <= 0 or len(examples) <= first_chunk:
        return [examples]
    rest = examples[first_chunk:]
    try:
        one = ExampleBatch.stack(rest[:1])
        step = min(engine.call_size(q.method, q.arguments, one.inputs, len(rest)) for engine in vis.engines)
    except Exception:  # examples the engine will refuse anyway: one batch, as before
        step = len(rest)
    step = max(1, step)
    return [examples[:first_chunk]] + [rest[i : i + step] for i in range(0, len(rest), step)]


def page_events(
    vis: VisualizerLike, q: PageQuery, first_chunk: int = 1, cancel: Cancel | None = None
) -> Iterator[dict[str, Any]]:
    """Events for one page: ``page`` first, then (for an expensive method) a ``preview`` of each
    example (its input and predictions), then each ``example`` as soon as it is computed, then
    for a filter whose scan has not reached the end a ``count`` (the page info again, once the
    scan has gone on for the number of matches), then ``done``.
    """
    t0 = time.perf_counter()
    info = vis.pager.find_page(q.filter, q.page, q.page_size, cancel)
    yield {"type": "page", **info.to_json()}
    examples = vis.store.get_many(info.ids, cancel)
    streaming = first_chunk > 0
    if streaming and examples and evals_per_example(vis, q) >= PREVIEW_MIN_EVALS:
        for ex_json in previewed(vis, q, examples, cancel):
            yield {"type": "preview", "example": ex_json}
    if q.visualization.scale == "page":
        # One colour scale for the whole page: every map is computed before any is drawn.
        done: list[tuple[Sequence[Example], list[list[Result]]]] = []
        for chunk in stream_chunks(vis, q, examples, first_chunk):
            done.append((chunk, computed(vis, q, chunk, cancel)))
            if streaming:
                yield {"type": "progress", "computed": sum(len(c) for c, _ in done), "total": len(examples)}
        scales = vis.presenter.page_scales(
            [r for _, per_model in done for results in per_model for r in results], q.visualization
        )
        for chunk, per_model in done:
            for ex_json in presented(vis, q, chunk, per_model, scales):
                yield {"type": "example", "example": ex_json}
    else:
        for chunk in stream_chunks(vis, q, examples, first_chunk):
            for ex_json in explained(vis, q, chunk, cancel):
                yield {"type": "example", "example": ex_json}
    left = vis.pager.max_scan - info.newly_scanned
    if not q.filter.trivial and not info.exhausted and left > 0:
        # The page is on screen: scan on for the filter's count, within this request's bound.
        yield {"type": "count", **vis.pager.count(q.filter, q.page, q.page_size, left, cancel).to_json()}
    yield {"type": "done", "elapsed_ms": round((time.perf_counter() - t0) * 1000, 1)}


def page_document(vis: VisualizerLike, q: PageQuery, cancel: Cancel | None = None) -> dict[str, Any]:
    """One page as a single JSON document (the non-streaming answer)."""
    result: dict[str, Any] = {"page": None, "examples": []}
    for event in page_events(vis, q, first_chunk=0, cancel=cancel):
        if event["type"] in ("page", "count"):  # the count, when there is one, is the later word
            result["page"] = {k: v for k, v in event.items() if k != "type"}
        elif event["type"] == "example":
            result["examples"].append(event["example"])
        else:
            result["elapsed_ms"] = event["elapsed_ms"]
    return result


# ---------------------------------------------------------------- one example, one model


def example_of(vis: VisualizerLike, q: AttributeQuery, cancel: Cancel | None = None) -> Example:
    """The query's example, or a 400 naming ``example_id`` (past the end, or not read yet)."""
    try:
        return vis.store.get(q.example_id, cancel)
    except IndexError:
        raise ValidationError("example_id", f"no example {q.example_id} in the dataset") from None
    except NotReadYet as exc:
        raise ValidationError("example_id", f"{exc} (page forward to reach it)") from None
    except Unreadable as exc:  # an unreadable file of an indexed dataset (pages skip it)
        raise ValidationError("example_id", str(exc)) from None


def attributed(vis: VisualizerLike, q: AttributeQuery, cancel: Cancel | None = None) -> dict[str, Any]:
    """One example under one model, attributed to the query's target (any class), as JSON."""
    ex = example_of(vis, q, cancel)
    (result,) = scored(vis.engines[q.model], q, [ex], [q.target], cancel)
    model = vis.presenter.model(q.model, ex, result, q.visualization, q.top_k, values=q.values)
    return {"example": vis.presenter.example(ex, [model])}


def sanity_checked(vis: VisualizerLike, q: AttributeQuery, cancel: Cancel | None = None) -> dict[str, Any]:
    """One example's map under one model, and the model-randomization check of it: per step (the
    layers randomized so far, last layer first) the map on the randomized copy, drawn the same
    way, with its Spearman rank correlation and SSIM against the original."""
    ex = example_of(vis, q, cancel)
    engine = vis.engines[q.model]
    (result,) = engine.run([ex], q.method, q.arguments, [q.target], cancel=cancel)
    model = vis.presenter.model(q.model, ex, result, q.visualization, q.top_k)
    out: dict[str, Any] = {"example": vis.presenter.example(ex, [model]), "sanity": None}
    exp = result.explanation
    if exp is None or exp.target is None:
        out["sanity"] = {"error": result.error or "the check needs a class to attribute to"}
        return out
    (checked,) = engine.compute.run(
        sanity_check, engine, q.method, q.arguments, ExampleBatch.stack([ex]), [exp.target], [exp.maps], cancel=cancel
    )
    steps = []
    for name, maps, rho, ssim in zip(checked.steps, checked.maps, checked.spearman, checked.ssim):
        randomized = Result(ex.id, result.prediction, Explanation(exp.target, maps, exp.contributions, exp.key))
        drawn = vis.presenter.model(q.model, ex, randomized, q.visualization, q.top_k)
        steps.append({"randomized": name, "spearman": rho, "ssim": ssim, "attributions": drawn["attributions"]})
    out["sanity"] = dict(checked.to_json(), steps=steps)
    return out
