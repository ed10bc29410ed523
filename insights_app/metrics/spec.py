"""What a quality metric is: a :class:`MetricSpec` (settings, cost, direction, compute), and what it computes on.

A metric is declared in the module that computes it and listed once in
:data:`insights_app.metrics.registered.BUILTIN_METRICS`; the request parser, the OpenAPI
schema, the cost bound, the store keys, ``/config`` (and so the page), the method report and
the dispatch all read the declarations::

    max_abs = MetricSpec(
        name="max_abs", label="largest attribution", short="max", help="The map's largest magnitude.",
        settings=(), cost=lambda values, method_cost: 0, lower_is_better=False, compute=largest,
    )

``compute(ctx, names)`` gets a :class:`MetricContext` (one model, one batch of examples, their
maps and targets) and the names it is asked for, and returns one ``{name: value}`` per example.
Metrics that share a computation (deletion and insertion share their curves) declare the same
function: it is called once for all of them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import ValidationError
from ..methods import baselines as baseline_maker

if TYPE_CHECKING:
    from ..dataset import ExampleBatch
    from ..engine import CancellableForward, Engine
    from ..methods import MethodSpec
    from .options import MetricOptions

Number = int | float
Value = Any  # a metric's JSON value: {"area", "curve"}, a number, or {"error": ...}
# (the settings' values, the method's forward passes per example) -> the metric's forward passes per example
Cost = Callable[[Mapping[str, Number], int], int]


@dataclass(frozen=True)
class Setting:
    """One setting of ``metric_arguments``: typed (by its default) and bounded. Settings of the same
    name are one setting, shared by the metrics that declare it (``samples``, ``seed``)."""

    name: str
    default: Number
    minimum: Number
    maximum: Number
    help: str

    @property
    def integer(self) -> bool:
        return isinstance(self.default, int) and not isinstance(self.default, bool)

    def validate(self, value: Any) -> Number:
        """The value as its type, else a ValidationError naming ``metric_arguments.<name>``."""
        field = f"metric_arguments.{self.name}"
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (self.integer and not float(value).is_integer())
            or not math.isfinite(value)
        ):
            raise ValidationError(field, f"must be {'an integer' if self.integer else 'a number'}")
        if not self.minimum <= value <= self.maximum:
            raise ValidationError(field, f"must be between {self.minimum} and {self.maximum}")
        return int(value) if self.integer else float(value)

    def schema(self) -> dict[str, Any]:
        """Its OpenAPI property."""
        return {
            "type": "integer" if self.integer else "number",
            "minimum": self.minimum,
            "maximum": self.maximum,
            "description": self.help,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": "integer" if self.integer else "number",
            "default": self.default,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "help": self.help,
        }


@dataclass
class MetricContext:
    """One model's batch of explanations to judge, on the model's compute thread."""

    engine: Engine
    method: MethodSpec
    params: dict[str, Any]  # the method's validated arguments
    batch: ExampleBatch
    inputs: tuple[torch.Tensor, ...]  # the model inputs (transformed, real-valued), batch first
    maps: Sequence[Sequence[np.ndarray]]  # per example, per feature: the map the page shows
    targets: torch.Tensor  # (n,) class indices, on the CPU
    options: MetricOptions
    forward: CancellableForward | None = None  # asked before passes: a cancelled request stops
    # Per example, the run's full-resolution attribution where it kept it (see ``keeps_attributions``).
    attributions: Sequence[tuple[torch.Tensor, ...] | None] | None = None

    def check(self) -> None:
        """Raise Cancelled when the request was cancelled."""
        if self.forward is not None:
            self.forward.check()

    def scores(self) -> Callable[..., torch.Tensor]:
        """(model inputs) -> (rows, classes) scores: the model, then its score function, no gradients."""
        engine = self.engine

        def scores(*inputs: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                out = engine.forward(*inputs)
                return engine.score_func(out) if engine.score_func is not None else out

        return scores

    def outputs(self) -> Callable[..., torch.Tensor]:
        """(model inputs) -> the model's raw outputs, no gradients (what the methods explain)."""
        engine = self.engine

        def outputs(*inputs: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return engine.forward(*inputs)

        return outputs

    def baselines(self) -> tuple[torch.Tensor, ...]:
        """One baseline per example: the method's own kind (its ``baseline`` argument), else zeros."""
        kind = self.params.get("baseline")
        kind = kind if isinstance(kind, str) and kind in baseline_maker.KINDS else "zeros"
        engine = self.engine
        return baseline_maker.per_example(
            kind, engine.features, self.batch.inputs, self.batch.ids, self.method.seed(self.params), engine.device
        )


Compute = Callable[[MetricContext, Sequence[str]], list[dict[str, Value]]]


def _no_passes(values: Mapping[str, Number], method_cost: int) -> int:
    return 0


@dataclass(frozen=True)
class MetricSpec:
    """A registered quality metric: its settings, cost, direction and computation."""

    name: str
    label: str  # in words, for titles: "deletion area"
    short: str  # on the badge under a map: "del"
    help: str
    settings: tuple[Setting, ...]
    compute: Compute
    lower_is_better: bool
    cost: Cost = _no_passes
    # In the page's cheap set (the "Quality metrics" box, the method report's default) as well as in "all".
    fast: bool = False
    # Non-empty when its value has a curve ({"area", "curve"}): what the curve's steps do to the
    # input, in the chart's words ("removed, largest attribution first").
    curve: str = ""
    # Whether it needs the run's full-resolution attributions (``Engine.run``'s ``keep_attributions``).
    keeps_attributions: bool = False
    version: str = "v1"  # part of its store key: a new version is never served an old value

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a metric needs a non-empty name")
        if not callable(self.compute) or not callable(self.cost):
            raise TypeError(f"metric {self.name!r}: compute and cost must be callable")
        names = [s.name for s in self.settings]
        if len(set(names)) != len(names):
            raise ValueError(f"metric {self.name!r}: setting names must be unique")

    @property
    def direction(self) -> str:
        return "lower" if self.lower_is_better else "higher"

    @property
    def sets(self) -> tuple[str, ...]:
        """The page's metric sets it belongs to ("fast": the cheap ones; "all")."""
        return ("fast", "all") if self.fast else ("all",)

    def defaults(self) -> dict[str, Number]:
        return {s.name: s.default for s in self.settings}

    def key(self, values: Mapping[str, Number]) -> str:
        """What identifies its value in caches and the store: its name, version and the settings it uses."""
        return f"{self.name}:{self.version}:" + json.dumps(
            {s.name: values[s.name] for s in self.settings}, sort_keys=True
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "short": self.short,
            "help": self.help,
            "direction": self.direction,
            "settings": [s.to_json() for s in self.settings],
            # forward passes per example at the default settings, for a method of one pass
            "passes": int(self.cost(self.defaults(), 1)),
            "sets": list(self.sets),
            "curve": self.curve,
        }


def finite(x: float) -> float | None:
    """A number for JSON: six significant digits, or None when it is not finite."""
    return float(f"{float(x):.6g}") if math.isfinite(float(x)) else None


__all__ = ["Compute", "Cost", "MetricContext", "MetricSpec", "Setting", "Value", "finite"]
