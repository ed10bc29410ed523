"""Which quality metrics a request asks for, with what settings, and what they cost.

``"metrics": ["deletion", "insertion", "infidelity", "sensitivity"]`` in a page or attribute
request, with optional ``"metric_arguments": {"steps": 20, "patch": 0, "samples": 8, "noise":
0.1, "radius": 0.02}``. Their forward passes count toward the per-example evaluation bound
with the method's own.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ValidationError

METRICS = ("deletion", "insertion", "infidelity", "sensitivity")
# The methods a method report judges unless told: the common gradient and perturbation ones.
REPORT_METHODS = ("IntegratedGradients", "Saliency", "InputXGradient", "GuidedBackprop", "DeepLift", "Occlusion")
# name -> (default, lowest, highest, description)
SETTINGS = {
    "steps": (20, 2, 100, "deletion / insertion: the equal fractions the locations are removed or revealed in"),
    "patch": (
        0,
        0,
        64,
        "deletion / insertion: the side of the squares an image's locations are (0: 1 pixel up to "
        "64 px, then about 56 squares a side)",
    ),
    "samples": (8, 1, 64, "infidelity / sensitivity: perturbations drawn per example"),
    "noise": (0.1, 0.0, 10.0, "infidelity: the standard deviation of the Gaussian perturbation (model input space)"),
    "radius": (0.02, 0.0, 10.0, "sensitivity: the radius of the uniform perturbation (model input space)"),
    "seed": (0, 0, 2**31 - 1, "infidelity / sensitivity: the seed of the perturbations"),
}
LOWER_IS_BETTER = {"deletion": True, "insertion": False, "infidelity": True, "sensitivity": True}


@dataclass(frozen=True)
class MetricOptions:
    names: tuple[str, ...]
    steps: int = 20
    patch: int = 0
    samples: int = 8
    noise: float = 0.1
    radius: float = 0.02
    seed: int = 0

    def key(self, name: str) -> str:
        """What identifies one metric's value in caches and the store (the settings it depends on)."""
        used = {
            "deletion": ("steps", "patch"),
            "insertion": ("steps", "patch"),
            "infidelity": ("samples", "noise", "seed"),
            "sensitivity": ("samples", "radius", "seed"),
        }[name]
        return f"{name}:v1:" + json.dumps({k: getattr(self, k) for k in used}, sort_keys=True)

    def kept_attributions(self) -> dict[Any, Any] | None:
        """What a run computing the maps these metrics judge should keep (``Engine.run``'s
        ``keep_attributions``): an empty dictionary when infidelity needs the full-resolution
        attributions, else None (nothing is kept)."""
        return {} if "infidelity" in self.names else None

    def patch_for(self, hw: tuple[int, int]) -> int:
        if self.patch:
            return self.patch
        side = max(hw)
        return 1 if side <= 64 else max(1, round(side / 56))

    def evals(self, method_cost: int) -> int:
        """Forward passes per example of these metrics, given the method's own cost."""
        total = 0
        if "deletion" in self.names or "insertion" in self.names:
            total += (self.steps + 1) * (("deletion" in self.names) + ("insertion" in self.names))
        if "infidelity" in self.names:
            total += self.samples + 1 + method_cost  # the attribution again, where the run did not keep it
        if "sensitivity" in self.names:
            total += (self.samples + 1) * method_cost
        return total


ABSENT = object()  # a key the request does not have (an explicit null is refused: it is not the key's type)


def parse_metrics(names: Any = ABSENT, arguments: Any = ABSENT) -> MetricOptions | None:
    """The request's ``metrics`` and ``metric_arguments`` (None when it asks for none); pass
    ``body.get("metrics", ABSENT)`` and ``body.get("metric_arguments", ABSENT)``."""
    if names is None:
        raise ValidationError("metrics", f"must be a list of metric names among {', '.join(METRICS)}")
    if arguments is None:
        raise ValidationError("metric_arguments", "must be an object")
    if names is ABSENT or names == []:
        if arguments is not ABSENT:
            raise ValidationError("metric_arguments", "goes with metrics")
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValidationError("metrics", f"must be a list of metric names among {', '.join(METRICS)}")
    if len(set(names)) != len(names):
        raise ValidationError("metrics", "names a metric twice")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValidationError("metrics", f"unknown metric {unknown[0][:40]!r}; choose among {', '.join(METRICS)}")
    values: dict = {}
    if arguments is not ABSENT:
        if not isinstance(arguments, dict):
            raise ValidationError("metric_arguments", "must be an object")
        for key, value in arguments.items():
            if key not in SETTINGS:
                raise ValidationError(f"metric_arguments.{key[:40]}", f"unknown; choose among {', '.join(SETTINGS)}")
            default, lo, hi, _ = SETTINGS[key]
            kind: Callable[[Any], Any] = int if isinstance(default, int) else float
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or (kind is int and not float(value).is_integer())
                or not math.isfinite(value)
            ):
                raise ValidationError(
                    f"metric_arguments.{key}", f"must be {'an integer' if kind is int else 'a number'}"
                )
            if not lo <= value <= hi:
                raise ValidationError(f"metric_arguments.{key}", f"must be between {lo} and {hi}")
            values[key] = kind(value)
    ordered = tuple(n for n in METRICS if n in names)
    return MetricOptions(ordered, **values)


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


def request_schema() -> Mapping[str, Any]:
    """The OpenAPI properties of ``metrics`` and ``metric_arguments``."""
    return {
        "metrics": {
            "type": "array",
            "items": {"enum": list(METRICS)},
            "uniqueItems": True,
            "description": "quality metrics of each map (see the README)",
        },
        "metric_arguments": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                key: {
                    "type": "integer" if isinstance(d, int) else "number",
                    "minimum": lo,
                    "maximum": hi,
                    "description": text,
                }
                for key, (d, lo, hi, text) in SETTINGS.items()
            },
        },
    }
