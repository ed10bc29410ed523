"""captum.insights' Python-side API of a visualizer, for code written against captum 0.8.

Captum Insights let a script (and its own tests) use a visualizer without its page: a
:class:`FilterConfig` says which examples and which method, ``visualize()`` answers the next
examples as :class:`VisualizationOutput` (each feature's :class:`~insights_app.features.FeatureOutput`
from its own ``visualize()``), ``get_insights_config()`` lists the classes, methods and their
arguments. The page does not use any of this (it has its own views); the work is done by the same
engines, so a model is still run on its compute thread, one computation at a time.

Where captum would loop for ever (a filter nothing matches) this scans a bounded number of
examples (the visualizer's ``max_scan``) and answers what it found.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from .dataset import Example, ExampleBatch, NotReadYet
from .errors import ValidationError
from .features import FeatureOutput, _safe_div
from .methods import MethodSpec, Param

if TYPE_CHECKING:
    from .engine import Engine, Prediction
    from .visualizer import AttributionVisualizer

PREDICTIONS = ("all", "correct", "incorrect")
TOP_K = 4  # captum.insights showed the top 4 predictions


class FilterConfig(NamedTuple):
    """Which examples ``visualize()`` answers, and how they are attributed (captum.insights' fields,
    defaults and type: a named tuple, so ``_replace`` and unpacking work as they did).

    ``prediction``: "all", "correct" or "incorrect" (against each model's top prediction);
    ``classes``: keep examples whose top prediction is one of these class names (empty: any);
    ``attribution_arguments``: the method's arguments (ours; captum's Occlusion names
    ``sliding_window_shapes`` and ``strides`` are understood too).
    """

    attribution_method: str = "IntegratedGradients"
    attribution_arguments: dict[str, Any] = {"n_steps": 25, "method": "gausslegendre"}  # noqa: RUF012 - never mutated
    prediction: str = "all"
    classes: list[str] = []  # noqa: RUF012 - never mutated
    num_examples: int = 4


class OutputScore(NamedTuple):
    """One class's score (captum.insights' ``OutputScore``); the label's own has score 100."""

    score: float
    index: int  # type: ignore[assignment]  # captum named the field so; it hides tuple.index
    label: str


class VisualizationOutput(NamedTuple):
    """One example under one model (captum.insights' ``VisualizationOutput``)."""

    feature_outputs: list[FeatureOutput]
    actual: OutputScore | None
    predicted: list[OutputScore]
    active_index: int | None
    model_index: int


class Visualized(NamedTuple):
    """What one ``visualize()`` call answers, and where the next one starts."""

    outputs: list[list[VisualizationOutput]]
    next_id: int


def insights_config(vis: AttributionVisualizer, config: FilterConfig) -> dict[str, Any]:
    """``get_insights_config()``: the classes, the methods, each method's arguments as captum
    described them (``{"value", "limit", "type"}``), and the selected method."""
    return {
        "classes": list(vis.classes),
        "methods": list(vis.methods),
        "method_arguments": {name: {p.name: _described(p) for p in spec.params} for name, spec in vis.methods.items()},
        "selected_method": config.attribution_method,
    }


def _described(p: Param) -> dict[str, Any]:
    if p.type in ("int", "float"):
        return {"value": p.default, "limit": (p.minimum, p.maximum), "type": "number"}
    if p.type == "enum":
        return {"value": p.default, "limit": list(p.choices), "type": "enum"}
    if p.type == "bool":
        return {"value": p.default, "limit": [False, True], "type": "boolean"}
    text = "" if p.default is None else " ".join(str(v) for v in p.default) if p.type == "shape" else str(p.default)
    return {"value": text, "type": "string"}


def method_arguments(spec: MethodSpec, given: dict[str, Any], vis: AttributionVisualizer) -> dict[str, Any]:
    """A config's arguments, validated for ``spec``: captum's names translated, and the features'
    own baselines (their ``baseline_transforms``, as captum used) unless a baseline is named."""
    args = dict(given)
    args.pop("baselines", None)  # captum set it itself, from the features
    names = {p.name for p in spec.params}
    for captum_name, ours in (("sliding_window_shapes", "window"), ("strides", "stride")):
        if captum_name in args and ours in names:
            args[ours] = _last_two(args.pop(captum_name))
    if "baseline" in names and "baseline" not in args:
        if "feature" in spec.param("baseline").choices and any(f.baseline_transforms for f in vis.features):
            args["baseline"] = "feature"
    return spec.validate(args, vis.image_hw)


def _last_two(value: Any) -> Any:
    """A captum window or stride (``"3 5 5"``, ``(3, 5, 5)`` or ``2``) as the [height, width] we take."""
    if isinstance(value, str):
        value = [int(v) for v in value.split()] if value.strip() else None
    if isinstance(value, int):
        return [value, value]
    return None if value is None else list(value)[-2:]


def visualized(vis: AttributionVisualizer, config: FilterConfig, start: int) -> Visualized:
    """``visualize()``: the next ``config.num_examples`` examples from ``start`` that some model
    keeps under the filter (wrapping around to the first example once, never answering one twice),
    each as one :class:`VisualizationOutput` per model that keeps it."""
    if config.prediction not in PREDICTIONS:
        raise ValidationError("prediction", f"must be one of {', '.join(PREDICTIONS)}")
    if config.attribution_method not in vis.methods:
        raise ValidationError("attribution_method", f"unknown method {config.attribution_method!r}")
    spec = vis.methods[config.attribution_method]
    params = method_arguments(spec, dict(config.attribution_arguments or {}), vis)
    wanted = max(0, int(config.num_examples))
    out: list[list[VisualizationOutput]] = []
    next_id = start
    for ex in _scanned(vis, start, vis.max_scan):
        if len(out) >= wanted:
            break
        next_id = ex.id + 1
        per_model = [
            v for m, engine in enumerate(vis.engines) if (v := _output(vis, engine, m, ex, config, spec, params))
        ]
        if per_model:
            out.append(per_model)
    return Visualized(out, next_id)


def _scanned(vis: AttributionVisualizer, start: int, bound: int) -> Iterator[Example]:
    """Examples from ``start`` on, then from the first one up to ``start``: at most ``bound``."""
    ex_id, wrapped, seen = max(0, start), start <= 0, 0
    while seen < bound:
        if wrapped and ex_id >= start > 0:
            return
        try:
            ex = vis.store.get(ex_id)
        except (IndexError, NotReadYet):
            if wrapped:
                return
            ex_id, wrapped = 0, True
            continue
        seen += 1
        ex_id += 1
        yield ex


def _output(
    vis: AttributionVisualizer,
    engine: Engine,
    model_index: int,
    ex: Example,
    config: FilterConfig,
    spec: MethodSpec,
    params: dict[str, Any],
) -> VisualizationOutput | None:
    """One example under one model, or None when the filter drops it (or the model fails on it)."""
    (result,) = engine.run([ex])
    pred = result.prediction
    if pred.error or not pred.indices:
        return None
    predicted = [OutputScore(s, i, vis.classes[i]) for i, s in pred.top(TOP_K) if 0 <= i < len(vis.classes)]
    actual = None
    if ex.label is not None and 0 <= ex.label < len(vis.classes):
        actual = OutputScore(100, ex.label, vis.classes[ex.label])
    if not _kept(config, pred, actual, vis.classes):
        return None
    target = engine.target(pred)
    attrs = engine.attribute(spec, params, ExampleBatch.stack([ex]), None if target is None else [target])
    shares = net_contributions(attrs)
    outputs = [f.visualize(a, x.unsqueeze(0), share) for f, a, x, share in zip(vis.features, attrs, ex.inputs, shares)]
    active = target if target is not None else (actual.index if actual is not None else None)
    return VisualizationOutput(outputs, actual, predicted, active, model_index)


def _kept(config: FilterConfig, pred: Prediction, actual: OutputScore | None, classes: Sequence[str]) -> bool:
    """captum.insights' filter: the top prediction among ``config.classes`` (if any), and right or
    wrong as ``config.prediction`` asks (an unlabeled example only under "all")."""
    top = classes[pred.indices[0]] if 0 <= pred.indices[0] < len(classes) else None
    if config.classes and top not in config.classes:
        return False
    if config.prediction == "all":
        return True
    if actual is None:
        return False
    return (top == actual.label) == (config.prediction == "correct")


def net_contributions(attributions: Sequence[torch.Tensor]) -> list[float]:
    """Each feature's net attribution (signed sum), divided by the sum of their magnitudes: the
    contributions captum.insights gives (their absolute values sum to 1; all zeros stay zeros)."""
    net = torch.stack([a.detach().double().sum() for a in attributions])
    return [float(v) for v in _safe_div(net, net.abs().sum()).tolist()]
