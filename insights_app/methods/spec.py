"""What a method is: a :class:`MethodSpec` (its schema, cost and runner), and the context it runs in.

A method is declared where it runs, with :func:`method` on its runner::

    @method("Saliency", label="Saliency", help="Gradient of the target score ...", params=(ABS,),
            first_forward="grad")
    def saliency(ctx: AttributionContext) -> Attributions:
        return Saliency(ctx.forward).attribute(ctx.inputs, target=ctx.targets, abs=ctx.params["abs"],
                                               additional_forward_args=ctx.additional_args)

The runner gets one batch of examples per call and returns one attribution tensor per
input. It asks the context for baselines (``ctx.baselines(kind)``, ``ctx.distribution(kind,
n)``) and layers (``ctx.resolve_layer(name)``); the engine knows none of its parameters by
name: it reads the spec's declarations (cost, rows per example, seed, first forward pass).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from types import CodeType
from typing import Any

import torch

from ..errors import ValidationError
from ..features import BaseFeature
from ..limits import MAX_EVALS_PER_EXAMPLE
from . import baselines as baseline_maker
from .params import Param

Attributions = torch.Tensor | tuple[torch.Tensor, ...]
Cost = Callable[[Mapping[str, Any], tuple[int, int]], int]


@dataclass
class AttributionContext:
    """Everything a method needs for one captum call over a batch of examples."""

    model: torch.nn.Module
    forward: Callable[..., torch.Tensor]  # the model's raw outputs (logits), what captum differentiates
    inputs: tuple[torch.Tensor, ...]  # model inputs (transformed), batch first, on the device
    targets: torch.Tensor | None  # (B,) class indices, or None (models without class outputs)
    additional_args: Any  # extra forward arguments (a tuple) or None
    params: dict[str, Any]  # the validated arguments
    image_inputs: tuple[int, ...]  # indices of inputs that are images (C, H, W)
    internal_batch_size: int
    resolve_layer: Callable[[str], torch.nn.Module]  # a layer by name ("": the last Conv2d)
    features: Sequence[BaseFeature]
    display_inputs: tuple[torch.Tensor, ...]  # the same examples as the dataset yields them
    ids: Sequence[Hashable]
    seed: int
    device: torch.device
    # Shared by every call of one request: a page split into several calls draws its SHAP
    # baseline distribution once.
    shared: dict[Any, Any] = field(default_factory=dict)
    _baselines: dict[str, tuple[torch.Tensor, ...]] = field(default_factory=dict)

    def baselines(self, kind: str) -> tuple[torch.Tensor, ...]:
        """One baseline per example (``zeros``, ``uniform``, ``gaussian``, ``blur``, ``feature``),
        built on first use: methods without baselines never pay for them."""
        if kind not in self._baselines:
            self._baselines[kind] = baseline_maker.per_example(
                kind, self.features, self.display_inputs, self.ids, self.seed, self.device
            )
        return self._baselines[kind]

    def distribution(self, kind: str, n: int) -> tuple[torch.Tensor, ...]:
        """``n`` baselines per input drawn independently of the examples (the SHAP methods)."""
        shapes = tuple((x.shape[1:], x.dtype) for x in self.display_inputs)
        key = ("distribution", kind, n, shapes)
        if key not in self.shared:
            self.shared[key] = baseline_maker.distribution(kind, self.features, shapes, n, self.seed, self.device)
        return self.shared[key]


def _one_pass(params: Mapping[str, Any], hw: tuple[int, int]) -> int:
    return 1


@dataclass(frozen=True)
class MethodSpec:
    """A registered attribution method: its schema, its runner and what it costs."""

    name: str
    label: str
    captum_class: str
    help: str
    params: tuple[Param, ...]
    run: Callable[[AttributionContext], Attributions]
    # Forward passes per example for the given parameters and image (height, width).
    cost: Cost = _one_pass
    # Rows one example adds to each of captum's forward passes, when not ``cost`` (the
    # perturbation methods evaluate ``perturbations_per_eval`` perturbations per pass).
    rows: Cost | None = None
    # Whether captum's first forward pass is on the unchanged inputs, so that the page's
    # prediction pass can serve as that pass: "grad" (it is differentiated), "eval" (it is
    # the reference score), or "" (no such pass).
    first_forward: str = ""
    # Whether captum draws from numpy's global generator too (Gradient SHAP does), so that it
    # must be seeded as well as torch's.
    numpy_rng: bool = False
    # The sign its maps are drawn with when a request names none: "all" for signed methods;
    # "absolute_value" or "positive" for methods whose maps (at their defaults) have one sign.
    sign: str = "all"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a method needs a non-empty name")
        if not callable(self.run):
            raise TypeError(f"method {self.name!r}: run must be callable")
        if self.first_forward not in ("", "grad", "eval"):
            raise ValueError(f"method {self.name!r}: first_forward must be '', 'grad' or 'eval'")
        if self.sign not in ("all", "positive", "negative", "absolute_value"):
            raise ValueError(f"method {self.name!r}: sign must be all, positive, negative or absolute_value")
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"method {self.name!r}: parameter names must be unique")

    @functools.cached_property
    def fingerprint(self) -> str:
        """What identifies the computation: the name, the parameters and the runner's code.

        Results are cached under it, so a method registered in place of another of the same
        name never serves the other one's results, and an unchanged one is recognized as such.
        """
        blob = json.dumps(
            [self.name, [p.to_json() for p in self.params], self.numpy_rng, _code_digest(self.run)], default=str
        )
        return hashlib.sha1(blob.encode()).hexdigest()

    @property
    def randomized(self) -> bool:
        """Whether the method draws random numbers (it declares a seed): it is then seeded, and
        run one example per call so that an example's map depends only on it and the seed."""
        return any(p.role == "seed" for p in self.params)

    def seed(self, params: Mapping[str, Any]) -> int:
        """The seed these arguments ask for (0 for a method without one)."""
        for p in self.params:
            if p.role == "seed":
                return int(params.get(p.name, p.default) or 0)
        return 0

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def validate(self, arguments: Any, image_hw: tuple[int, int] = (224, 224)) -> dict[str, Any]:
        """Fill defaults and check every given argument; unknown names are errors.

        ``image_hw`` is the size of the dataset's images, used to bound the cost.
        """
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise ValidationError("arguments", "must be an object of parameter values")
        known = {p.name for p in self.params}
        for key in arguments:
            if key not in known:
                allowed = ", ".join(sorted(known)) or "none"
                raise ValidationError(f"arguments.{key}", f"is not a parameter of {self.name} (allowed: {allowed})")
        out = {p.name: p.validate(arguments[p.name]) if p.name in arguments else p.default for p in self.params}
        evals = self.cost(out, image_hw)
        if evals > MAX_EVALS_PER_EXAMPLE:
            raise ValidationError(
                "arguments",
                f"{self.name} would cost {evals} forward passes per example (limit {MAX_EVALS_PER_EXAMPLE})",
            )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "captum_class": self.captum_class,
            "help": self.help,
            "params": [p.to_json() for p in self.params],
            "defaults": self.defaults(),
            "default_sign": self.sign,
        }


def _code_digest(fn: Any) -> str:
    """A digest of a function's code (its bytecode, constants and names, nested functions included)."""
    code = getattr(fn, "__code__", None)
    if code is None:  # a callable object: its type and repr
        return f"{type(fn).__module__}.{type(fn).__qualname__}:{fn!r}"

    def digest(c: CodeType) -> str:
        consts = [digest(k) if isinstance(k, CodeType) else repr(k) for k in c.co_consts]
        return hashlib.sha1(repr((c.co_code, consts, c.co_names)).encode()).hexdigest()

    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', '')}:{digest(code)}"


def method(
    name: str,
    *,
    label: str = "",
    help: str = "",
    params: Sequence[Param] = (),
    captum_class: str = "",
    cost: Cost = _one_pass,
    rows: Cost | None = None,
    first_forward: str = "",
    numpy_rng: bool = False,
    sign: str = "all",
) -> Callable[[Callable[[AttributionContext], Attributions]], MethodSpec]:
    """Declare a method on its runner: the decorated function becomes its :class:`MethodSpec`."""

    def declare(run: Callable[[AttributionContext], Attributions]) -> MethodSpec:
        return MethodSpec(
            name=name,
            label=label or name,
            captum_class=captum_class or name,
            help=help,
            params=tuple(params),
            run=run,
            cost=cost,
            rows=rows,
            first_forward=first_forward,
            numpy_rng=numpy_rng,
            sign=sign,
        )

    return declare
