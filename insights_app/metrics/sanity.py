"""The model-randomization sanity check (Adebayo et al., 2018): does the map depend on the model?

The model's layers are re-initialized one after another from the last one down (cascading),
on a copy: the user's model is never touched. After each step the method attributes the same
examples to the same classes on the randomized copy, and each map is compared with the
original one: the Spearman rank correlation and the SSIM of their absolute values. A map that
explains the model must change when the model is destroyed; a method is flagged "insensitive
to the model" when its maps on the fully randomized copy are nearly the original ones: Spearman and SSIM both at least ``INSENSITIVE_AT``. What it shows then is the
input, not what the model learned. Methods that multiply by the input (Integrated Gradients,
Input x Gradient) keep part of the input's rank order on a random model (Spearman 0.8-0.9 on
the digits CNN, as Adebayo et al. report) but not its structure (SSIM 0.4-0.5): they are not
flagged, and the per-step values show how much of the map the model decides.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

if TYPE_CHECKING:
    from ..cancel import Cancel
    from ..dataset import ExampleBatch
    from ..engine import Engine
    from ..methods import MethodSpec

# Measured on the trained digits CNN, fully randomized: an edge map stays at 1.0 / 1.0 (Spearman / SSIM),
# Integrated Gradients reaches 0.78-0.90 / 0.42-0.51, Saliency 0.02-0.19 / 0.04-0.15.
INSENSITIVE_AT = 0.8
MAX_STEPS = 12  # randomization steps at most (a deep model's layers are grouped into this many)


@dataclass
class SanityResult:
    """One example's check: per step, the layers randomized so far and the similarity to the original."""

    steps: list[str] = field(default_factory=list)  # the layers randomized at each step, named (cumulative)
    spearman: list[float | None] = field(default_factory=list)
    ssim: list[float | None] = field(default_factory=list)
    maps: list[list[np.ndarray]] = field(default_factory=list)  # per step, per feature (as the page shows them)

    @property
    def insensitive(self) -> bool:
        if not self.spearman or self.spearman[-1] is None:
            return False
        ssim = self.ssim[-1]
        return self.spearman[-1] >= INSENSITIVE_AT and (ssim is None or ssim >= INSENSITIVE_AT)

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "spearman": self.spearman,
            "ssim": self.ssim,
            "insensitive": self.insensitive,
            "threshold": INSENSITIVE_AT,
        }


def layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The modules that own parameters, in definition order (the cascade walks them backwards)."""
    return [
        (name or type(m).__name__, m)
        for name, m in model.named_modules()
        if any(True for _ in m.parameters(recurse=False))
    ]


def layer_label(name: str, module: torch.nn.Module) -> str:
    """A layer as a user recognises it: its attribute name with its kind ("fc (Linear)"), or, inside an
    ``nn.Sequential`` whose names are bare indices, its kind with where it is ("Linear (layer 13)")."""
    kind = type(module).__name__
    if not name or name == kind:
        return kind
    if all(part.isdigit() for part in name.split(".")):
        return f"{kind} (layer {name})"
    return f"{name} ({kind})"


def cascade(model: torch.nn.Module, seed: int = 0, max_steps: int = MAX_STEPS) -> list[tuple[str, torch.nn.Module]]:
    """Copies of the model with more and more of its layers randomized, last layer first."""
    work = copy.deepcopy(model)
    owned = layers(work)[::-1]
    if not owned:
        return []
    groups = np.array_split(np.arange(len(owned)), min(max_steps, len(owned)))
    out = []
    generator = torch.Generator().manual_seed(seed)
    for group in groups:
        names = []
        for i in group:
            name, module = owned[int(i)]
            names.append(layer_label(name, module))
            with torch.no_grad():
                for p in module.parameters(recurse=False):
                    # Kaiming-uniform-like re-initialization at the original's scale: the layer keeps
                    # its magnitude (so activations stay finite) and loses what it learned.
                    scale = float(p.detach().float().std()) if p.numel() > 1 else 0.1
                    noise = torch.randn(p.shape, generator=generator) * (scale if scale > 0 else 0.1)
                    p.copy_(noise.to(p.device, p.dtype))
        out.append((" + ".join(names), copy.deepcopy(work)))
    return out


def similarity(original: np.ndarray, other: np.ndarray) -> tuple[float | None, float | None]:
    """(Spearman rank correlation, SSIM) of two maps' absolute values."""
    a, b = np.abs(np.asarray(original, np.float64)), np.abs(np.asarray(other, np.float64))
    if a.shape != b.shape or a.size < 2:
        return None, None
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        rho = None
    else:
        rho = float(spearmanr(a.ravel(), b.ravel()).statistic)
    ssim = None
    if a.ndim == 2 and min(a.shape) >= 3:
        na = (a - a.min()) / (np.ptp(a) or 1.0)
        nb = (b - b.min()) / (np.ptp(b) or 1.0)
        window = min(7, min(a.shape) - (1 - min(a.shape) % 2))
        ssim = float(structural_similarity(na, nb, data_range=1.0, win_size=window))
    return (
        None if rho is None or not np.isfinite(rho) else round(rho, 4),
        None if ssim is None or not np.isfinite(ssim) else round(ssim, 4),
    )


def sanity_check(
    engine: Engine,
    spec: MethodSpec,
    params: dict[str, Any],
    batch: ExampleBatch,
    targets: Sequence[int],
    original_maps: Sequence[Sequence[np.ndarray]],
    seed: int = 0,
    max_steps: int = MAX_STEPS,
    cancel: Cancel | None = None,
) -> list[SanityResult]:
    """The check for each example of ``batch`` (its original maps, its target) under ``engine``'s model."""
    from ..engine import CancellableForward, Engine

    results = [SanityResult() for _ in range(len(batch))]
    for name, randomized in cascade(engine.model, seed, max_steps):
        probe = Engine(
            randomized,
            engine.features,
            engine.score_func,
            name=f"{engine.name} ({name} randomized)",
            device=engine.device,
            use_label_for_attr=engine.use_label_for_attr,
            internal_batch_size=engine.internal_batch_size,
        )
        try:
            attrs = probe.attribute(
                spec, params, batch, list(targets), forward=CancellableForward(probe.forward, cancel)
            )
        finally:
            probe.compute.close()
        for j, result in enumerate(results):
            maps = [f.reduce_attribution(a[j]) for f, a in zip(engine.features, attrs)]
            rho, ssim = similarity(original_maps[j][0], maps[0])
            result.steps.append(name)
            result.spearman.append(rho)
            result.ssim.append(ssim)
            result.maps.append(maps)
    return results
