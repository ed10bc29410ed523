"""Reference inputs for the methods that compare an input with a baseline.

Baselines are made in display space (what the dataset yields) and then passed through the
feature's ``input_transforms``, as captum.insights did. Random baselines are seeded per
example, so an example's baseline never depends on the other examples of its batch.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Hashable, Sequence

import torch

from ..errors import ValidationError
from ..features import BaseFeature, ImageFeature, transform_batch

KINDS = ("zeros", "uniform", "gaussian", "blur", "feature")  # one baseline per example
# A set of baselines independent of the examples (the SHAP methods). Not "feature": a feature's
# baseline_transforms make one baseline from each example, which is no distribution to draw from.
DISTRIBUTION_KINDS = ("zeros", "uniform", "gaussian")


def per_example(
    kind: str,
    features: Sequence[BaseFeature],
    inputs: Sequence[torch.Tensor],
    ids: Sequence[Hashable],
    seed: int,
    device: torch.device,
) -> tuple[torch.Tensor, ...]:
    """One baseline per example and feature, as model inputs on ``device``."""
    out = []
    for feature, x in zip(features, inputs):
        if kind == "zeros" or (kind == "feature" and not feature.baseline_transforms) or not x.is_floating_point():
            base = torch.zeros_like(x)  # what every row would be, without a Python loop
        else:
            base = torch.stack([_one(kind, feature, x[j], ids[j], seed) for j in range(x.shape[0])])
        out.append(transform_batch(feature, base).to(device))
    return tuple(out)


def _one(kind: str, feature: BaseFeature, x: torch.Tensor, ex_id: Hashable, seed: int) -> torch.Tensor:
    if kind == "feature":
        if feature.baseline_transforms:
            return feature.baseline_transforms[0](x).to(x.dtype)
        return torch.zeros_like(x)
    if kind == "zeros" or not x.is_floating_point():
        return torch.zeros_like(x)
    if kind == "blur":
        if isinstance(feature, ImageFeature) and x.dim() == 3:
            return blur_image(x)
        return torch.zeros_like(x)
    gen = torch.Generator().manual_seed(example_seed(seed, ex_id))
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        hi = lo + 1.0
    if kind == "uniform":
        return (torch.rand(x.shape, generator=gen) * (hi - lo) + lo).to(x.dtype)
    if kind == "gaussian":
        noise = torch.randn(x.shape, generator=gen) * float(x.float().std()) + float(x.float().mean())
        return noise.clamp(lo, hi).to(x.dtype)
    raise ValidationError("arguments.baseline", f"unknown baseline {kind!r}")


def distribution(
    kind: str,
    features: Sequence[BaseFeature],
    shapes: Sequence[tuple[torch.Size, torch.dtype]],
    n: int,
    seed: int,
    device: torch.device,
) -> tuple[torch.Tensor, ...]:
    """``n`` baselines per feature, independent of the examples (for the SHAP methods)."""
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    for feature, (shape, dtype) in zip(features, shapes):
        size = (n,) + tuple(shape)
        if kind == "zeros" or not dtype.is_floating_point:
            base = torch.zeros(size, dtype=dtype)
        elif kind == "uniform":
            base = torch.rand(size, generator=gen).to(dtype)
        elif kind == "gaussian":
            base = (torch.randn(size, generator=gen) * 0.25 + 0.5).clamp(0, 1).to(dtype)
        else:
            raise ValidationError("arguments.baseline", f"{kind!r} cannot form a baseline distribution")
        out.append(transform_batch(feature, base).to(device))
    return tuple(out)


def example_seed(seed: int, ex_id: Hashable) -> int:
    """A per-example seed: the same example draws the same noise whatever else is in its batch."""
    digest = hashlib.sha1(f"{seed}:{ex_id!r}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


def blur_image(x: torch.Tensor) -> torch.Tensor:
    """A strongly blurred copy of a (C, H, W) image: a baseline without fine structure."""
    from torchvision.transforms.functional import gaussian_blur

    h, w = int(x.shape[-2]), int(x.shape[-1])
    sigma = max(1.0, min(h, w) / 16.0)
    k = int(2 * math.ceil(2 * sigma) + 1)
    limit = min(h, w) if min(h, w) % 2 == 1 else min(h, w) - 1
    k = max(1, min(k, limit))
    return gaussian_blur(x.float()[None], [k, k], [sigma, sigma])[0].to(x.dtype)
