"""Typed, bounded method parameters, and the ones several methods share.

A :class:`Param` says everything a client needs to build a control for it (type, default,
bounds, choices, a human label and help text) and validates what a client sends. The
parameters whose meaning the engine relies on carry a ``role``: the random seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ValidationError
from .baselines import KINDS as BASELINE_KINDS

TYPES = ("int", "float", "bool", "enum", "shape", "layer")


@dataclass(frozen=True)
class Param:
    """One user-settable parameter: JSON type, default, bounds, label and help text."""

    name: str
    type: str  # int | float | bool | enum | shape | layer
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    length: int | None = None  # for shapes
    nullable: bool = False  # None means "derive from the input"
    label: str = ""  # shown next to the control; empty: the name, humanized
    role: str = ""  # "seed": the method's random seed (the engine seeds torch's generators with it)

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"parameter {self.name!r}: type must be one of {', '.join(TYPES)}")
        if not self.label:
            words = self.name.replace("_", " ")
            object.__setattr__(self, "label", words[:1].upper() + words[1:])

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "default": self.default,
            "help": self.help,
        }
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.choices:
            out["choices"] = list(self.choices)
        if self.length is not None:
            out["length"] = self.length
        out["nullable"] = self.nullable
        return out

    def validate(self, value: Any, prefix: str = "arguments.") -> Any:
        """Return the value coerced to its type, or raise :class:`ValidationError`."""
        where = prefix + self.name
        if value is None:
            if self.nullable:
                return None
            raise ValidationError(where, "must not be null")
        if self.type == "bool":
            if not isinstance(value, bool):
                raise ValidationError(where, "must be true or false")
            return value
        if self.type == "int":
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or (isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()))
            ):
                raise ValidationError(where, "must be an integer")
            return self._bounded(int(value), where)
        if self.type == "float":
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or (isinstance(value, float) and not math.isfinite(value))
            ):
                raise ValidationError(where, "must be a finite number")
            try:  # bound first: float() of a 400-digit JSON integer overflows
                return float(self._bounded(value, where))
            except OverflowError:
                raise ValidationError(where, "is too large") from None
        if self.type == "enum":
            if not isinstance(value, str) or value not in self.choices:
                raise ValidationError(where, f"must be one of {', '.join(self.choices)}")
            return value
        if self.type == "shape":
            if not isinstance(value, (list, tuple)) or (self.length is not None and len(value) != self.length):
                raise ValidationError(where, f"must be a list of {self.length} integers")
            part = Param(self.name, "int", None, "", self.minimum, self.maximum)
            return tuple(part.validate(v, prefix) for v in value)
        # layer
        if not isinstance(value, str) or len(value) > 300:
            raise ValidationError(where, "must be a module name such as 'layer4.1.conv2' (empty: automatic)")
        return value

    def _bounded(self, value: float, where: str) -> Any:
        if self.minimum is not None and value < self.minimum:
            raise ValidationError(where, f"must be at least {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise ValidationError(where, f"must be at most {self.maximum:g}")
        return value


def baseline_param(choices: Sequence[str] = BASELINE_KINDS) -> Param:
    """The reference input of a perturbation or path method (see :mod:`.baselines`)."""
    return Param(
        "baseline",
        "enum",
        "zeros",
        "Reference input: zeros, uniform noise, gaussian noise, a blurred copy of the input, "
        "or the feature's own baseline_transforms",
        choices=tuple(choices),
        label="Baseline",
    )


SEED = Param(
    "seed",
    "int",
    0,
    "Random seed for sampled noise and baselines (results are reproducible)",
    minimum=0,
    maximum=2**31 - 1,
    label="Random seed",
    role="seed",
)
N_STEPS = Param("n_steps", "int", 50, "Number of steps of the path integral", minimum=1, maximum=1000, label="Steps")
IG_METHOD = Param(
    "method",
    "enum",
    "gausslegendre",
    "Integral approximation",
    choices=("gausslegendre", "riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid"),
    label="Integration rule",
)
NT_TYPE = Param(
    "nt_type",
    "enum",
    "smoothgrad",
    "How the noisy samples are combined",
    choices=("smoothgrad", "smoothgrad_sq", "vargrad"),
    label="Noise tunnel type",
)
NT_SAMPLES = Param("nt_samples", "int", 10, "Noisy samples per example", minimum=1, maximum=200, label="Noisy samples")
STDEVS = Param(
    "stdevs",
    "float",
    0.15,
    "Standard deviation of the gaussian noise (in model input units)",
    minimum=0.0,
    maximum=10.0,
    label="Noise std-dev",
)
ABS = Param("abs", "bool", True, "Absolute value of the gradients", label="Absolute gradients")
LAYER = Param(
    "layer", "layer", "", "Convolution layer to attribute (empty: the last Conv2d of the model)", label="Layer"
)
INTERPOLATE = Param(
    "interpolate_mode",
    "enum",
    "bilinear",
    "How the layer map is upsampled to the image",
    choices=("bilinear", "nearest", "bicubic", "area"),
    label="Upsampling",
)
PERTURBATIONS = Param(
    "perturbations_per_eval",
    "int",
    16,
    "Perturbed inputs per forward pass",
    minimum=1,
    maximum=512,
    label="Perturbations per pass",
)
WINDOW = Param(
    "window",
    "shape",
    None,
    "Occlusion window [height, width] (null: 1/8 of the image side)",
    minimum=1,
    maximum=4096,
    length=2,
    nullable=True,
    label="Window",
)
STRIDE = Param(
    "stride",
    "shape",
    None,
    "Occlusion stride [height, width] (null: half the window)",
    minimum=1,
    maximum=4096,
    length=2,
    nullable=True,
    label="Stride",
)
PATCH = Param(
    "patch",
    "int",
    None,
    "Side of the square patches ablated together (null: 1/8 of the image side)",
    minimum=1,
    maximum=4096,
    nullable=True,
    label="Patch size",
)
N_BASELINES = Param(
    "n_baselines", "int", 8, "Baselines drawn for the distribution", minimum=2, maximum=64, label="Baselines drawn"
)
