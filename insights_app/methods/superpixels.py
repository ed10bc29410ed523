"""Superpixels: scikit-image SLIC segments of each image as the feature mask of the perturbation methods.

Square patches cut objects in arbitrary places; superpixels follow the image's edges, so a
perturbation method (LIME, Kernel SHAP, Feature Ablation, Shapley Value Sampling) switches
whole parts of an object on and off. Each example is segmented on its own image as the
dataset yields it (what the user sees), not on the normalized model input. Inputs that are
not images get one feature per element, as with patches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import ValidationError
from .params import Param
from .regions import patch_cost, patch_feature_mask
from .spec import AttributionContext

N_SEGMENTS = Param(
    "n_segments",
    "int",
    50,
    "Approximate number of SLIC superpixels per image",
    minimum=2,
    maximum=2000,
    label="Superpixels",
)
COMPACTNESS = Param(
    "compactness",
    "float",
    10.0,
    "SLIC compactness: larger values give squarer superpixels, smaller ones follow colour edges "
    "(grayscale images are segmented on intensity scaled to 0-100, Lab lightness' range)",
    minimum=0.001,
    maximum=1000.0,
    label="Compactness",
)
MASK = Param(
    "mask",
    "enum",
    "patches",
    "Features perturbed together: square patches of the image, or SLIC superpixels (the superpixel parameters apply)",
    choices=("patches", "superpixels"),
    label="Feature mask",
)


def superpixel_count(p: Mapping[str, Any], hw: tuple[int, int]) -> int:
    """Features per image (an estimate: SLIC gives about ``n_segments``, never more than the pixels)."""
    return max(1, min(int(p["n_segments"]), hw[0] * hw[1]))


def feature_count(p: Mapping[str, Any], hw: tuple[int, int]) -> int:
    """Features per image of a method offering both masks (``mask``)."""
    if p.get("mask") == "superpixels":
        return superpixel_count(p, hw)
    return patch_cost(p, hw)


def feature_masks(ctx: AttributionContext) -> tuple[torch.Tensor, ...]:
    """The mask the ``mask`` argument asks for (square patches when there is none)."""
    if ctx.params.get("mask", "patches") == "superpixels":
        return superpixel_feature_mask(ctx)
    return patch_feature_mask(ctx)


def slic_segments(image: torch.Tensor, n_segments: int, compactness: float) -> np.ndarray:
    """SLIC labels (H, W), from 0, of one (C, H, W) image in display space.

    Values outside [0, 1] (0-255 images, or already normalized ones) are rescaled to [0, 1]
    first; three channels are segmented in Lab colour (scikit-image's default), one channel
    on its intensity times 100 so that a compactness suits both. An image SLIC leaves in one
    piece gets a grid of about ``n_segments`` squares instead.
    """
    from skimage.segmentation import slic

    x = image.detach().to("cpu", torch.float64)
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        x = (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)
    arr = x.permute(1, 2, 0).numpy()
    if arr.shape[-1] == 1:
        labels = slic(
            arr[..., 0] * 100.0, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=None
        )
    else:
        labels = slic(arr, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1)
    labels = np.asarray(labels, dtype=np.int64)
    if n_segments > 1 and labels.max() < 1:
        labels = grid_segments(labels.shape, n_segments)
    return labels


def grid_segments(hw: tuple[int, ...], n_segments: int) -> np.ndarray:
    """About ``n_segments`` squares: for an image SLIC leaves in one piece (pure noise, where its
    connectivity step merges every fragment), so that there are features to perturb."""
    h, w = int(hw[0]), int(hw[1])
    side = max(1, math.ceil(math.sqrt(h * w / n_segments)))
    cols = math.ceil(w / side)
    return (np.arange(h)[:, None] // side) * cols + np.arange(w)[None, :] // side


def superpixel_feature_mask(ctx: AttributionContext) -> tuple[torch.Tensor, ...]:
    """Per-example feature masks (B, 1, H, W) of SLIC superpixels for image inputs; other inputs
    one feature per element (1, ...). Ids are offset across inputs so that no two share one."""
    n_segments, compactness = int(ctx.params["n_segments"]), float(ctx.params["compactness"])
    masks: list[torch.Tensor] = []
    offset = 0
    for i, x in enumerate(ctx.inputs):
        per_example = tuple(x.shape[1:])
        shown = ctx.display_inputs[i] if i < len(ctx.display_inputs) else x
        if i in ctx.image_inputs and len(per_example) == 3:
            h, w = int(x.shape[-2]), int(x.shape[-1])
            rows = []
            for j in range(x.shape[0]):
                image = shown[j] if shown.dim() == 4 else x[j]
                labels = torch.from_numpy(slic_segments(image, n_segments, compactness))
                if tuple(labels.shape) != (h, w):  # the input transforms resized the image
                    labels = torch.nn.functional.interpolate(labels[None, None].double(), size=(h, w), mode="nearest")[
                        0, 0
                    ].long()
                    labels = torch.unique(labels, return_inverse=True)[1]  # ids from 0, none skipped
                rows.append(labels.reshape(1, 1, h, w))
            mask = torch.cat(rows).to(x.device)
            count = int(mask.max()) + 1
        else:
            count = math.prod(per_example) if per_example else 1
            mask = torch.arange(count, device=x.device).reshape((1,) + per_example)
        masks.append(mask + offset)
        offset += count
    if not masks:
        raise ValidationError("method", "no inputs to segment")
    return tuple(masks)
