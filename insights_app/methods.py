"""The attribution method registry: one entry per method, with a typed, bounded schema.

Each :class:`MethodSpec` says which captum class runs, which parameters a user may set
(type, default, bounds, help) and how to call captum with a batch of examples. Adding a
method means adding one entry to :func:`build_registry`; the server, the page and the
validation read everything from here.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from captum.attr import (
    Deconvolution,
    DeepLift,
    DeepLiftShap,
    FeatureAblation,
    GradientShap,
    GuidedBackprop,
    GuidedGradCam,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
    ShapleyValueSampling,
)

# Upper bound on forward passes one example may cost, so no request can run for hours.
MAX_EVALS_PER_EXAMPLE = 20_000
BASELINE_TYPES = ("zeros", "uniform", "gaussian", "blur", "feature")
DISTRIBUTION_BASELINES = ("zeros", "uniform", "gaussian", "feature")


class ValidationError(ValueError):
    """A request parameter that is missing, mistyped or out of bounds; names the field."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class ParamSpec:
    """One user-settable parameter: JSON type, default, bounds and help text."""

    name: str
    type: str  # int | float | bool | enum | shape | layer
    default: Any
    help: str
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: Tuple[str, ...] = ()
    length: Optional[int] = None  # for shapes
    nullable: bool = False  # None means "derive from the input"

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"name": self.name, "type": self.type, "default": self.default, "help": self.help}
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
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and (not math.isfinite(value) or not value.is_integer())
            ):
                raise ValidationError(where, "must be an integer")
            return self._bounded(int(value), where)
        if self.type == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not math.isfinite(value)
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
            return tuple(ParamSpec(self.name, "int", None, "", self.minimum, self.maximum).validate(v, prefix) for v in value)
        if self.type == "layer":
            if not isinstance(value, str) or len(value) > 300:
                raise ValidationError(where, "must be a module name such as 'layer4.1.conv2' (empty: automatic)")
            return value
        raise AssertionError(f"unknown parameter type {self.type}")

    def _bounded(self, value: float, where: str) -> Any:
        if self.minimum is not None and value < self.minimum:
            raise ValidationError(where, f"must be at least {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise ValidationError(where, f"must be at most {self.maximum:g}")
        return value


@dataclass
class AttributionContext:
    """Everything a method needs for one captum call over a batch of examples."""

    model: torch.nn.Module
    forward: Callable[..., torch.Tensor]  # model followed by nothing: raw outputs (logits)
    inputs: Tuple[torch.Tensor, ...]  # transformed inputs, batch first
    make_baselines: Callable[[], Tuple[torch.Tensor, ...]]  # per-example baselines, same shapes as inputs
    baseline_distribution: Callable[[int], Tuple[torch.Tensor, ...]]  # n -> (n, ...) per input
    targets: torch.Tensor  # (B,) class indices
    additional_forward_args: Any
    params: Dict[str, Any]
    image_inputs: Tuple[int, ...]  # indices of inputs that are images (C, H, W)
    internal_batch_size: int
    resolve_layer: Callable[[str], torch.nn.Module]

    @functools.cached_property
    def baselines(self) -> Tuple[torch.Tensor, ...]:
        """Built on first use: methods without per-example baselines never pay for them."""
        return self.make_baselines()


@dataclass(frozen=True)
class MethodSpec:
    """A registered attribution method."""

    name: str
    label: str
    captum_class: str
    help: str
    params: Tuple[ParamSpec, ...]
    run: Callable[[AttributionContext], Tuple[torch.Tensor, ...]]
    # Forward passes per example for the given parameters and image (height, width).
    cost: Callable[[Mapping[str, Any], Tuple[int, int]], int] = lambda p, hw: 1
    randomized: bool = False
    # Rows one example adds to each of captum's forward passes, when not ``cost`` (the
    # perturbation methods evaluate ``perturbations_per_eval`` perturbations per pass).
    rows: Optional[Callable[[Mapping[str, Any], Tuple[int, int]], int]] = None
    # Whether captum's first forward pass is on the unchanged inputs, so that the page's
    # prediction pass can serve as that pass: "grad" (it is differentiated), "eval" (it is
    # the reference score), or "" (no such pass).
    first_forward: str = ""
    # Whether captum draws from numpy's global generator too (Gradient SHAP does), so that it
    # must be seeded as well as torch's.
    numpy_rng: bool = False

    def param(self, name: str) -> ParamSpec:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def defaults(self) -> Dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def validate(self, arguments: Any, image_hw: Tuple[int, int] = (224, 224)) -> Dict[str, Any]:
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
                "arguments", f"{self.name} would cost {evals} forward passes per example (limit {MAX_EVALS_PER_EXAMPLE})"
            )
        return out

    def to_json(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "captum_class": self.captum_class,
            "help": self.help,
            "params": [p.to_json() for p in self.params],
            "defaults": self.defaults(),
        }


# ---------------------------------------------------------------- parameter helpers

def _baseline_param(choices: Sequence[str] = BASELINE_TYPES) -> ParamSpec:
    return ParamSpec(
        "baseline", "enum", "zeros",
        "Reference input: zeros, uniform noise, gaussian noise, a blurred copy of the input, "
        "or the feature's own baseline_transforms",
        choices=tuple(choices),
    )


def _seed_param() -> ParamSpec:
    return ParamSpec("seed", "int", 0, "Random seed for sampled noise and baselines (results are reproducible)",
                     minimum=0, maximum=2**31 - 1)


N_STEPS = ParamSpec("n_steps", "int", 50, "Number of steps of the path integral", minimum=1, maximum=1000)
IG_METHOD = ParamSpec(
    "method", "enum", "gausslegendre", "Integral approximation",
    choices=("gausslegendre", "riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid"),
)
NT_TYPE = ParamSpec("nt_type", "enum", "smoothgrad", "How the noisy samples are combined",
                    choices=("smoothgrad", "smoothgrad_sq", "vargrad"))
NT_SAMPLES = ParamSpec("nt_samples", "int", 10, "Noisy samples per example", minimum=1, maximum=200)
STDEVS = ParamSpec("stdevs", "float", 0.15, "Standard deviation of the gaussian noise (in model input units)",
                   minimum=0.0, maximum=10.0)
ABS = ParamSpec("abs", "bool", True, "Absolute value of the gradients")
LAYER = ParamSpec("layer", "layer", "", "Convolution layer to attribute (empty: the last Conv2d of the model)")
PERTURBATIONS = ParamSpec("perturbations_per_eval", "int", 16, "Perturbed inputs per forward pass",
                          minimum=1, maximum=512)
WINDOW = ParamSpec("window", "shape", None, "Occlusion window [height, width] (null: 1/8 of the image side)",
                   minimum=1, maximum=4096, length=2, nullable=True)
STRIDE = ParamSpec("stride", "shape", None, "Occlusion stride [height, width] (null: half the window)",
                   minimum=1, maximum=4096, length=2, nullable=True)
PATCH = ParamSpec("patch", "int", None, "Side of the square patches ablated together (null: 1/8 of the image side)",
                  minimum=1, maximum=4096, nullable=True)


# ---------------------------------------------------------------- shared pieces

def _image_hw(ctx: AttributionContext, i: int) -> Tuple[int, int]:
    shape = ctx.inputs[i].shape
    return int(shape[-2]), int(shape[-1])


def default_side(h: int, w: int) -> int:
    """Window/patch side used when the user gives none: 1/8 of the shorter side."""
    return max(1, math.ceil(min(h, w) / 8))


def _check_fits(name: str, value: Tuple[int, int], hw: Tuple[int, int]) -> None:
    if value[0] > hw[0] or value[1] > hw[1]:
        raise ValidationError(f"arguments.{name}", f"{list(value)} is larger than the image ({hw[0]}x{hw[1]})")


def _check_stride(stride: Tuple[int, int], window: Tuple[int, int]) -> None:
    """Captum asserts stride <= window; say so as a 400 naming the field instead."""
    if stride[0] > window[0] or stride[1] > window[1]:
        raise ValidationError("arguments.stride", f"{list(stride)} must not be larger than the window {list(window)}")


def occlusion_shapes(ctx: AttributionContext) -> Tuple[Tuple[Tuple[int, ...], ...], Tuple[Tuple[int, ...], ...]]:
    """Per-input sliding window and stride shapes (without the batch dimension)."""
    windows, strides = [], []
    for i, x in enumerate(ctx.inputs):
        per_example = tuple(x.shape[1:])
        if i in ctx.image_inputs and len(per_example) == 3:
            hw = _image_hw(ctx, i)
            side = default_side(*hw)
            window = ctx.params["window"] or (side, side)
            _check_fits("window", window, hw)
            stride = ctx.params["stride"] or (max(1, window[0] // 2), max(1, window[1] // 2))
            _check_stride(stride, window)
            windows.append((per_example[0],) + tuple(window))
            strides.append((per_example[0],) + tuple(stride))
        else:
            windows.append(tuple(1 for _ in per_example))
            strides.append(tuple(1 for _ in per_example))
    return tuple(windows), tuple(strides)


def patch_feature_mask(ctx: AttributionContext) -> Tuple[torch.Tensor, ...]:
    """Feature masks grouping image pixels into square patches; other inputs per element.

    Ids are offset across inputs so that no two inputs share a feature.
    """
    masks: List[torch.Tensor] = []
    offset = 0
    for i, x in enumerate(ctx.inputs):
        per_example = tuple(x.shape[1:])
        if i in ctx.image_inputs and len(per_example) == 3:
            h, w = _image_hw(ctx, i)
            side = ctx.params["patch"] or default_side(h, w)
            _check_fits("patch", (side, side), (h, w))
            cols = math.ceil(w / side)
            rows_idx = torch.arange(h, device=x.device) // side
            cols_idx = torch.arange(w, device=x.device) // side
            mask = rows_idx[:, None] * cols + cols_idx[None, :]
            mask = mask.reshape(1, 1, h, w)
            count = int(mask.max()) + 1
        else:
            count = int(torch.tensor(per_example).prod()) if per_example else 1
            mask = torch.arange(count, device=x.device).reshape((1,) + per_example)
        masks.append(mask + offset)
        offset += count
    return tuple(masks)


def _interpolate_layer(ctx: AttributionContext, attr: torch.Tensor, mode: str) -> Tuple[torch.Tensor, ...]:
    """Place a layer attribution on the first image input, upsampled to its size."""
    if not ctx.image_inputs:
        raise ValidationError("method", "layer methods need an image feature")
    first = ctx.image_inputs[0]
    if attr.dim() != 4:
        name = ctx.params.get("layer") or "the chosen layer"
        raise ValidationError("arguments.layer", f"{name} has no spatial output (got shape {tuple(attr.shape)}); "
                                                 "pick a convolution layer")
    up = LayerAttribution.interpolate(attr, _image_hw(ctx, first), interpolate_mode=mode)
    out = []
    for i, x in enumerate(ctx.inputs):
        out.append(up if i == first else torch.zeros_like(x, dtype=up.dtype))
    return tuple(out)


def _ig_kwargs(ctx: AttributionContext, batch_scale: int = 1) -> Dict[str, Any]:
    return {
        "n_steps": ctx.params["n_steps"],
        "method": ctx.params["method"],
        "internal_batch_size": max(ctx.internal_batch_size // batch_scale, len(ctx.targets)),
    }


# ---------------------------------------------------------------- runners

def _run_ig(ctx: AttributionContext) -> Tuple[torch.Tensor, ...]:
    return IntegratedGradients(ctx.forward).attribute(
        ctx.inputs, baselines=ctx.baselines, target=ctx.targets,
        additional_forward_args=ctx.additional_forward_args, **_ig_kwargs(ctx),
    )


def _nt_kwargs(ctx: AttributionContext) -> Dict[str, Any]:
    return {
        "nt_type": ctx.params["nt_type"],
        "nt_samples": ctx.params["nt_samples"],
        "stdevs": ctx.params["stdevs"],
        "nt_samples_batch_size": max(1, min(ctx.params["nt_samples"], ctx.internal_batch_size // max(1, len(ctx.targets)))),
    }


def _run_nt_ig(ctx: AttributionContext) -> Tuple[torch.Tensor, ...]:
    return NoiseTunnel(IntegratedGradients(ctx.forward)).attribute(
        ctx.inputs, baselines=ctx.baselines, target=ctx.targets,
        additional_forward_args=ctx.additional_forward_args,
        n_steps=ctx.params["n_steps"], method=ctx.params["method"], **_nt_kwargs(ctx),
    )


def _run_nt_saliency(ctx: AttributionContext) -> Tuple[torch.Tensor, ...]:
    return NoiseTunnel(Saliency(ctx.forward)).attribute(
        ctx.inputs, target=ctx.targets, additional_forward_args=ctx.additional_forward_args,
        abs=ctx.params["abs"], **_nt_kwargs(ctx),
    )


def _run_gradient_shap(ctx: AttributionContext) -> Tuple[torch.Tensor, ...]:
    return GradientShap(ctx.forward).attribute(
        ctx.inputs, baselines=ctx.baseline_distribution(ctx.params["n_baselines"]), target=ctx.targets,
        additional_forward_args=ctx.additional_forward_args,
        n_samples=ctx.params["n_samples"], stdevs=ctx.params["stdevs"],
    )


def _run_deeplift(ctx: AttributionContext) -> Tuple[torch.Tensor, ...]:
    return DeepLift(ctx.model).attribute(
        ctx.inputs, baselines=ctx.baselines, target=ctx.targets,
        additional_forward_args=ctx.additional_forward_args,
    )


def _run_deeplift_shap(ctx: AttributionContext) -> Tuple[torch.Tensor, ...]:
    return DeepLiftShap(ctx.model).attribute(
        ctx.inputs, baselines=ctx.baseline_distribution(ctx.params["n_baselines"]), target=ctx.targets,
        additional_forward_args=ctx.additional_forward_args,
    )


def _run_saliency(ctx: AttributionContext) -> Tuple[torch.Tensor, ...]:
    return Saliency(ctx.forward).attribute(
        ctx.inputs, target=ctx.targets, abs=ctx.params["abs"],
        additional_forward_args=ctx.additional_forward_args,
    )


def _simple(cls: type, use_model: bool = False) -> Callable[[AttributionContext], Tuple[torch.Tensor, ...]]:
    def run(ctx: AttributionContext) -> Tuple[torch.Tensor, ...]:
        return cls(ctx.model if use_model else ctx.forward).attribute(
            ctx.inputs, target=ctx.targets, additional_forward_args=ctx.additional_forward_args,
        )
    return run


def _run_guided_gradcam(ctx: AttributionContext) -> Tuple[torch.Tensor, ...]:
    layer = ctx.resolve_layer(ctx.params["layer"])
    out = GuidedGradCam(ctx.model, layer).attribute(
        ctx.inputs, target=ctx.targets, additional_forward_args=ctx.additional_forward_args,
        interpolate_mode=ctx.params["interpolate_mode"],
    )
    if any(t.numel() == 0 for t in (out if isinstance(out, tuple) else (out,))):
        # Captum returns an empty tensor when the layer's output has no H x W to upsample.
        raise ValidationError("arguments.layer", "GuidedGradCam needs a layer with a spatial (H x W) output, "
                                                 "such as a convolution")
    return out


def _run_layer_gradcam(ctx: AttributionContext) -> Tuple[torch.Tensor, ...]:
    layer = ctx.resolve_layer(ctx.params["layer"])
    attr = LayerGradCam(ctx.forward, layer).attribute(
        ctx.inputs, target=ctx.targets, additional_forward_args=ctx.additional_forward_args,
        relu_attributions=ctx.params["relu_attributions"],
    )
    return _interpolate_layer(ctx, attr, ctx.params["interpolate_mode"])


def _run_occlusion(ctx: AttributionContext) -> Tuple[torch.Tensor, ...]:
    windows, strides = occlusion_shapes(ctx)
    return Occlusion(ctx.forward).attribute(
        ctx.inputs, sliding_window_shapes=windows, strides=strides, baselines=ctx.baselines,
        target=ctx.targets, additional_forward_args=ctx.additional_forward_args,
        perturbations_per_eval=ctx.params["perturbations_per_eval"],
    )


def _run_feature_ablation(ctx: AttributionContext) -> Tuple[torch.Tensor, ...]:
    return FeatureAblation(ctx.forward).attribute(
        ctx.inputs, baselines=ctx.baselines, target=ctx.targets,
        additional_forward_args=ctx.additional_forward_args, feature_mask=patch_feature_mask(ctx),
        perturbations_per_eval=ctx.params["perturbations_per_eval"],
    )


def _run_shapley(ctx: AttributionContext) -> Tuple[torch.Tensor, ...]:
    return ShapleyValueSampling(ctx.forward).attribute(
        ctx.inputs, baselines=ctx.baselines, target=ctx.targets,
        additional_forward_args=ctx.additional_forward_args, feature_mask=patch_feature_mask(ctx),
        n_samples=ctx.params["n_samples"], perturbations_per_eval=ctx.params["perturbations_per_eval"],
    )


INTERPOLATE = ParamSpec("interpolate_mode", "enum", "bilinear", "How the layer map is upsampled to the image",
                        choices=("bilinear", "nearest", "bicubic", "area"))


def build_registry() -> Dict[str, MethodSpec]:
    """A fresh registry (a plain dict: each visualizer may add its own methods)."""
    gshap_samples = ParamSpec("n_samples", "int", 20, "Random samples per example", minimum=1, maximum=500)
    n_baselines = ParamSpec("n_baselines", "int", 8, "Baselines drawn for the distribution", minimum=2, maximum=64)
    shap_samples = ParamSpec("n_samples", "int", 5, "Feature permutations sampled per example", minimum=1, maximum=100)
    specs = [
        MethodSpec("IntegratedGradients", "Integrated Gradients", "IntegratedGradients",
                   "Integrates gradients along the straight path from the baseline to the input.",
                   (N_STEPS, IG_METHOD, _baseline_param()), _run_ig, cost=lambda p, hw: p["n_steps"]),
        MethodSpec("NoiseTunnel(IntegratedGradients)", "NoiseTunnel over Integrated Gradients", "NoiseTunnel",
                   "Integrated Gradients averaged over noisy copies of the input (SmoothGrad family).",
                   (NT_TYPE, NT_SAMPLES, STDEVS, ParamSpec("n_steps", "int", 20, N_STEPS.help, minimum=1, maximum=1000),
                    IG_METHOD, _baseline_param(), _seed_param()),
                   _run_nt_ig, cost=lambda p, hw: p["nt_samples"] * p["n_steps"], randomized=True),
        MethodSpec("NoiseTunnel(Saliency)", "SmoothGrad (NoiseTunnel over Saliency)", "NoiseTunnel",
                   "Gradients averaged over noisy copies of the input.",
                   (NT_TYPE, NT_SAMPLES, STDEVS, ABS, _seed_param()),
                   _run_nt_saliency, cost=lambda p, hw: p["nt_samples"], randomized=True),
        MethodSpec("GradientShap", "Gradient SHAP", "GradientShap",
                   "Expected gradients between random points on paths from baselines drawn from a distribution.",
                   (gshap_samples, ParamSpec("stdevs", "float", 0.0, STDEVS.help, minimum=0.0, maximum=10.0),
                    n_baselines, _baseline_param(DISTRIBUTION_BASELINES), _seed_param()),
                   _run_gradient_shap, cost=lambda p, hw: p["n_samples"], randomized=True, numpy_rng=True),
        MethodSpec("DeepLift", "DeepLift", "DeepLift",
                   "Backpropagates the difference from the baseline with the rescale rule.",
                   (_baseline_param(),), _run_deeplift),
        MethodSpec("DeepLiftShap", "DeepLift SHAP", "DeepLiftShap",
                   "DeepLift averaged over a distribution of baselines.",
                   (n_baselines, _baseline_param(DISTRIBUTION_BASELINES), _seed_param()),
                   _run_deeplift_shap, cost=lambda p, hw: p["n_baselines"], randomized=True),
        MethodSpec("Saliency", "Saliency", "Saliency", "Gradient of the target score with respect to the input.",
                   (ABS,), _run_saliency, first_forward="grad"),
        MethodSpec("InputXGradient", "Input x Gradient", "InputXGradient", "The input multiplied by its gradient.",
                   (), _simple(InputXGradient), first_forward="grad"),
        MethodSpec("Deconvolution", "Deconvolution", "Deconvolution",
                   "Gradients with ReLU applied to the backward signal.", (), _simple(Deconvolution, use_model=True)),
        MethodSpec("GuidedBackprop", "Guided Backprop", "GuidedBackprop",
                   "Gradients where only positive signals pass ReLUs backwards.", (), _simple(GuidedBackprop, use_model=True)),
        MethodSpec("GuidedGradCam", "Guided GradCAM", "GuidedGradCam",
                   "Guided Backprop multiplied by the upsampled GradCAM map of a convolution layer.",
                   (LAYER, ParamSpec("interpolate_mode", "enum", "nearest", INTERPOLATE.help, choices=INTERPOLATE.choices)),
                   _run_guided_gradcam),
        MethodSpec("LayerGradCam", "GradCAM", "LayerGradCam",
                   "Class activation map of a convolution layer, upsampled to the image.",
                   (LAYER, ParamSpec("relu_attributions", "bool", True, "Keep only positive evidence"), INTERPOLATE),
                   _run_layer_gradcam),
        MethodSpec("Occlusion", "Occlusion", "Occlusion",
                   "Change in the target score when a sliding window is replaced by the baseline.",
                   (WINDOW, STRIDE, PERTURBATIONS, _baseline_param(("zeros", "uniform", "gaussian", "blur", "feature"))),
                   _run_occlusion, cost=_occlusion_cost, first_forward="eval",
                   rows=lambda p, hw: min(p["perturbations_per_eval"], _occlusion_cost(p, hw))),
        MethodSpec("FeatureAblation", "Feature Ablation", "FeatureAblation",
                   "Change in the target score when each square patch is replaced by the baseline.",
                   (PATCH, PERTURBATIONS, _baseline_param()), _run_feature_ablation,
                   cost=_patch_cost, first_forward="eval",
                   rows=lambda p, hw: min(p["perturbations_per_eval"], _patch_cost(p, hw))),
        MethodSpec("ShapleyValueSampling", "Shapley Value Sampling", "ShapleyValueSampling",
                   "Shapley values of square patches estimated from sampled permutations.",
                   (PATCH, shap_samples, PERTURBATIONS, _baseline_param(), _seed_param()), _run_shapley,
                   cost=lambda p, hw: p["n_samples"] * _patch_cost(p, hw), randomized=True),
    ]
    return {s.name: s for s in specs}


def _occlusion_cost(p: Mapping[str, Any], hw: Tuple[int, int]) -> int:
    side = default_side(*hw)
    window = p.get("window") or (side, side)
    stride = p.get("stride") or (max(1, window[0] // 2), max(1, window[1] // 2))
    _check_fits("window", window, hw)  # checked here too so that a bad shape is refused before any work
    _check_stride(stride, window)
    rows = max(1, math.ceil((hw[0] - window[0]) / stride[0]) + 1)
    cols = max(1, math.ceil((hw[1] - window[1]) / stride[1]) + 1)
    return rows * cols


def _patch_cost(p: Mapping[str, Any], hw: Tuple[int, int]) -> int:
    side = p.get("patch") or default_side(*hw)
    _check_fits("patch", (side, side), hw)
    return math.ceil(hw[0] / side) * math.ceil(hw[1] / side)
