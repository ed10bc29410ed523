"""What is measured: per model and method, the server's arguments and the raw captum call.

The raw call is written directly against captum, with the arguments the engine passes
for those server arguments (steps, baselines, window shapes, internal batch sizes), so
both sides do the same attribution work. resnet18 uses lighter arguments than the
defaults so that the full run stays within minutes on two CPU cores; lighter work per
example makes the server's fixed overhead weigh more. The other models (``lenet`` and the
224x224 torchvision ones) run four methods with the engine's defaults, and an occlusion
window of an eighth of the side with a stride of one window (4x4 at 32x32, 32x32 at
224x224); which of their cells run by default is ``bench/__main__.py``'s plan.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from captum.attr import GradientShap, IntegratedGradients, NoiseTunnel, Occlusion, Saliency

from . import DEFAULT_METHODS
from .models import BenchModel

__all__ = ["ARGUMENTS", "DEFAULT_METHODS", "Case", "build_cases", "methods_of", "passes_per_example", "raw_call"]
INTERNAL_BATCH_SIZE = 64  # AttributionVisualizer's default

# Server arguments per model and method; a list gives one benchmark row per argument set. The
# small CNN uses the defaults. resnet18 uses lighter ones so that the full run stays within
# minutes on two CPU cores, plus one very light Integrated Gradients row (4 steps), where the
# page's own prediction pass, about a twelfth of the work, shows (see the README).
ARGUMENTS: dict[str, dict[str, list[dict[str, Any]]]] = {
    "cnn32": {
        "IntegratedGradients": [{"n_steps": 50, "method": "gausslegendre", "baseline": "zeros"}],
        "Saliency": [{"abs": True}],
        "Occlusion": [{"window": [4, 4], "stride": [2, 2], "perturbations_per_eval": 16, "baseline": "zeros"}],
        "GradientShap": [{"n_samples": 20, "stdevs": 0.0, "n_baselines": 8, "baseline": "zeros", "seed": 0}],
        "NoiseTunnel(Saliency)": [{"nt_type": "smoothgrad", "nt_samples": 10, "stdevs": 0.15, "abs": True, "seed": 0}],
    },
    "resnet18": {
        "IntegratedGradients": [
            {"n_steps": 16, "method": "gausslegendre", "baseline": "zeros"},
            {"n_steps": 4, "method": "gausslegendre", "baseline": "zeros"},
        ],
        "Saliency": [{"abs": True}],
        "Occlusion": [{"window": [112, 112], "stride": [112, 112], "perturbations_per_eval": 16, "baseline": "zeros"}],
        "GradientShap": [{"n_samples": 8, "stdevs": 0.0, "n_baselines": 8, "baseline": "zeros", "seed": 0}],
        "NoiseTunnel(Saliency)": [{"nt_type": "smoothgrad", "nt_samples": 8, "stdevs": 0.15, "abs": True, "seed": 0}],
    },
}


def _four_methods(window: int) -> dict[str, list[dict[str, Any]]]:
    """IntegratedGradients, Saliency, Occlusion and GradientShap with the engine's defaults
    (insights_app/methods: 50 steps, 16 perturbations per pass, 20 samples over 8 baselines),
    all given explicitly, and an occlusion window and stride of ``window``."""
    return {
        "IntegratedGradients": [{"n_steps": 50, "method": "gausslegendre", "baseline": "zeros"}],
        "Saliency": [{"abs": True}],
        "Occlusion": [
            {"window": [window, window], "stride": [window, window], "perturbations_per_eval": 16, "baseline": "zeros"}
        ],
        "GradientShap": [{"n_samples": 20, "stdevs": 0.0, "n_baselines": 8, "baseline": "zeros", "seed": 0}],
    }


ARGUMENTS["lenet"] = _four_methods(4)
for _key in ("mobilenet_v3_small", "efficientnet_b0", "convnext_tiny", "vit_b_16"):
    ARGUMENTS[_key] = _four_methods(32)


def methods_of(key: str) -> tuple[str, ...]:
    """The methods the benchmark has arguments for on model ``key``, in DEFAULT_METHODS order."""
    return tuple(m for m in DEFAULT_METHODS if m in ARGUMENTS[key])


def passes_per_example(method: str, args: dict[str, Any], side: int) -> tuple[int, bool]:
    """The model passes one example costs this method (over one captum call), and whether
    they are forward+backward passes (True) or forward passes only (Occlusion: one per window,
    plus the unperturbed input)."""
    if method == "IntegratedGradients":
        return int(args["n_steps"]), True
    if method == "Saliency":
        return 1, True
    if method == "GradientShap":
        return int(args["n_samples"]), True
    if method == "NoiseTunnel(Saliency)":
        return int(args["nt_samples"]), True
    if method == "Occlusion":
        (wh, ww), (sh, sw) = args["window"], args["stride"]
        windows = (math.ceil((side - wh) / sh) + 1) * (math.ceil((side - ww) / sw) + 1)
        return windows + 1, False
    raise ValueError(f"no pass count for {method!r}")


RawCall = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Case:
    """One (model, method): the body arguments for the server and the raw captum call."""

    method: str
    arguments: dict[str, Any]
    raw: RawCall  # (inputs, zero baselines, targets) -> attributions, for any batch size

    def passes(self, side: int, n: int) -> tuple[int, bool]:
        """Model passes (rows) one call on ``n`` examples costs, and whether they are
        forward+backward."""
        per, backward = passes_per_example(self.method, self.arguments, side)
        return per * n, backward

    def describe(self) -> str:
        short = {
            "n_steps": "steps",
            "perturbations_per_eval": "ppe",
            "n_samples": "samples",
            "nt_samples": "samples",
            "n_baselines": "baselines",
        }
        keep = ("n_steps", "window", "stride", "n_samples", "nt_samples", "n_baselines")
        parts = []
        for k in keep:
            if k in self.arguments:
                v = self.arguments[k]
                parts.append(f"{short.get(k, k)}={'x'.join(map(str, v)) if isinstance(v, list) else v}")
        return ", ".join(parts) or "defaults"


def raw_call(bm: BenchModel, method: str, args: dict[str, Any]) -> RawCall:
    """The direct captum call for ``method`` with the arguments the engine would use."""
    model = bm.model
    if method == "IntegratedGradients":

        def run(x: torch.Tensor, zeros: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return IntegratedGradients(model).attribute(
                x,
                baselines=zeros,
                target=t,
                n_steps=args["n_steps"],
                method=args["method"],
                internal_batch_size=max(INTERNAL_BATCH_SIZE, len(t)),
            )
    elif method == "Saliency":

        def run(x: torch.Tensor, zeros: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return Saliency(model).attribute(x, target=t, abs=args["abs"])
    elif method == "Occlusion":
        window = (3,) + tuple(args["window"])
        stride = (3,) + tuple(args["stride"])

        def run(x: torch.Tensor, zeros: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return Occlusion(model).attribute(
                x,
                sliding_window_shapes=window,
                strides=stride,
                baselines=zeros,
                target=t,
                perturbations_per_eval=args["perturbations_per_eval"],
            )
    elif method == "GradientShap":
        dist = bm.normalize(torch.zeros((args["n_baselines"], 3, bm.side, bm.side))).to(bm.device)

        def run(x: torch.Tensor, zeros: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return GradientShap(model).attribute(
                x, baselines=dist, target=t, n_samples=args["n_samples"], stdevs=args["stdevs"]
            )
    elif method == "NoiseTunnel(Saliency)":

        def run(x: torch.Tensor, zeros: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            per_call = max(1, min(args["nt_samples"], INTERNAL_BATCH_SIZE // len(t)))
            return NoiseTunnel(Saliency(model)).attribute(
                x,
                target=t,
                nt_type=args["nt_type"],
                nt_samples=args["nt_samples"],
                stdevs=args["stdevs"],
                abs=args["abs"],
                nt_samples_batch_size=per_call,
            )
    else:
        raise ValueError(f"no raw captum call for {method!r}; choose from {', '.join(DEFAULT_METHODS)}")
    return run


def build_cases(bm: BenchModel, methods: tuple[str, ...]) -> list[Case]:
    """One case per method and argument set, in the order of ``methods``."""
    out = []
    for method in methods:
        if method not in ARGUMENTS[bm.key]:
            raise ValueError(f"no arguments for {method!r} on {bm.key}; choose from {', '.join(methods_of(bm.key))}")
        for args in ARGUMENTS[bm.key][method]:
            out.append(Case(method, args, raw_call(bm, method, args)))
    return out
