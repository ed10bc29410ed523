"""Which quality metrics a request asks for, with what settings, and what they cost.

``"metrics": ["deletion", "insertion", "infidelity", "sensitivity"]`` in a page or attribute
request, with optional ``"metric_arguments": {"steps": 20, "patch": 0, "samples": 8, "noise":
0.1, "radius": 0.02}``. Their forward passes count toward the per-example evaluation bound
with the method's own. Everything here is read from the registered metrics' declarations
(:mod:`.registered`, :mod:`.spec`): names, settings and their bounds, costs, store keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..errors import ValidationError
from .deletion import patch_for
from .registered import MetricRegistry, metric_names, metric_registry, metric_settings
from .spec import MetricSpec, Number

# The registered metrics' names when this module was imported (the command line's choices);
# requests read the registry itself (:mod:`.registered`).
METRICS: tuple[str, ...] = metric_names()
LOWER_IS_BETTER: Mapping[str, bool] = MappingProxyType(
    {spec.name: spec.lower_is_better for spec in metric_registry().values()}
)
# The methods a method report judges unless told: the common gradient and perturbation ones.
REPORT_METHODS = ("IntegratedGradients", "Saliency", "InputXGradient", "GuidedBackprop", "DeepLift", "Occlusion")


@dataclass(frozen=True, init=False)
class MetricOptions:
    """The metrics a request asks for (registered names, in the registry's order) and every
    setting's value (the declared default where the request gives none).

    ``MetricOptions(("deletion",), steps=10)``; a setting reads as an attribute (``options.steps``).
    ``registry``: the visualizer's metrics (``vis.metrics``), else the built-in ones."""

    names: tuple[str, ...]
    values: tuple[tuple[str, Number], ...]
    specs: tuple[MetricSpec, ...] = field(compare=False, repr=False)

    def __init__(self, names: Sequence[str], *, registry: MetricRegistry | None = None, **settings: Number) -> None:
        registry = metric_registry() if registry is None else registry
        unknown = [n for n in names if n not in registry]
        if unknown:
            raise ValueError(f"unknown metric {unknown[0]!r}")
        known = metric_settings(registry)
        for key in settings:
            if key not in known:
                raise TypeError(f"unknown metric setting {key!r}")
        object.__setattr__(self, "names", tuple(names))
        object.__setattr__(self, "values", tuple((k, settings.get(k, s.default)) for k, s in known.items()))
        object.__setattr__(self, "specs", tuple(registry[n] for n in names))

    def __getattr__(self, name: str) -> Number:
        if name.startswith("_") or name in ("names", "values", "specs"):
            raise AttributeError(name)
        for key, value in self.values:
            if key == name:
                return value
        raise AttributeError(name)

    def value(self, name: str) -> Number:
        """A setting's value."""
        for key, value in self.values:
            if key == name:
                return value
        raise KeyError(name)

    def integer(self, name: str) -> int:
        return int(self.value(name))

    def number(self, name: str) -> float:
        return float(self.value(name))

    def spec(self, name: str) -> MetricSpec:
        for spec in self.specs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def key(self, name: str) -> str:
        """What identifies one metric's value in caches and the store (the settings it depends on)."""
        return self.spec(name).key(dict(self.values))

    def kept_attributions(self) -> dict[Any, Any] | None:
        """What a run computing the maps these metrics judge should keep (``Engine.run``'s
        ``keep_attributions``): an empty dictionary when a metric (infidelity) needs the
        full-resolution attributions, else None (nothing is kept)."""
        return {} if any(spec.keeps_attributions for spec in self.specs) else None

    def patch_for(self, hw: tuple[int, int]) -> int:
        """Deletion and insertion's location side for images of ``hw`` (see :func:`.deletion.patch_for`)."""
        return patch_for(self.integer("patch"), hw)

    def evals(self, method_cost: int) -> int:
        """Forward passes per example of these metrics, given the method's own cost."""
        values = dict(self.values)
        return sum(int(spec.cost(values, method_cost)) for spec in self.specs)


ABSENT = object()  # a key the request does not have (an explicit null is refused: it is not the key's type)


def parse_metrics(
    names: Any = ABSENT, arguments: Any = ABSENT, registry: MetricRegistry | None = None
) -> MetricOptions | None:
    """The request's ``metrics`` and ``metric_arguments`` (None when it asks for none); pass
    ``body.get("metrics", ABSENT)`` and ``body.get("metric_arguments", ABSENT)``, and the
    visualizer's metrics (else the built-in ones are known)."""
    known = metric_names(registry)
    if names is None:
        raise ValidationError("metrics", f"must be a list of metric names among {', '.join(known)}")
    if arguments is None:
        raise ValidationError("metric_arguments", "must be an object")
    if names is ABSENT or names == []:
        if arguments is not ABSENT:
            raise ValidationError("metric_arguments", "goes with metrics")
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValidationError("metrics", f"must be a list of metric names among {', '.join(known)}")
    if len(set(names)) != len(names):
        raise ValidationError("metrics", "names a metric twice")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValidationError("metrics", f"unknown metric {unknown[0][:40]!r}; choose among {', '.join(known)}")
    values: dict[str, Number] = {}
    if arguments is not ABSENT:
        if not isinstance(arguments, dict):
            raise ValidationError("metric_arguments", "must be an object")
        settings = metric_settings(registry)
        for key, value in arguments.items():
            if key not in settings:
                raise ValidationError(f"metric_arguments.{key[:40]}", f"unknown; choose among {', '.join(settings)}")
            values[key] = settings[key].validate(value)
    return MetricOptions(tuple(n for n in known if n in names), registry=registry, **values)


def check_cost(options: MetricOptions | None, method_cost: int, bound: int) -> None:
    """A ValidationError when the method and its metrics would cost more than ``bound`` per example."""
    if options is None:
        return
    total = method_cost + options.evals(method_cost)
    if total > bound:
        raise ValidationError(
            "metrics",
            f"cost {total} forward passes per example with the method (at most {bound}); "
            "ask for fewer metrics, fewer samples or steps, or a cheaper method",
        )


def request_schema(registry: MetricRegistry | None = None) -> Mapping[str, Any]:
    """The OpenAPI properties of ``metrics`` and ``metric_arguments`` (of a visualizer's metrics)."""
    return {
        "metrics": {
            "type": "array",
            "items": {"enum": list(metric_names(registry))},
            "uniqueItems": True,
            "description": "quality metrics of each map (see the README)",
        },
        "metric_arguments": {
            "type": "object",
            "additionalProperties": False,
            "properties": {key: setting.schema() for key, setting in metric_settings(registry).items()},
        },
    }


def metrics_config(registry: MetricRegistry) -> list[dict[str, Any]]:
    """A visualizer's metrics as ``/config`` publishes them (the page reads names, labels,
    directions, settings and sets from there)."""
    return [spec.to_json() for spec in registry.values()]
