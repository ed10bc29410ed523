"""Image regions for the perturbation methods: occlusion windows, ablation patches, and their cost."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from ..errors import ValidationError
from .spec import AttributionContext


def default_side(h: int, w: int) -> int:
    """Window/patch side used when the user gives none: 1/8 of the shorter side."""
    return max(1, math.ceil(min(h, w) / 8))


def image_hw(x: torch.Tensor) -> tuple[int, int]:
    return int(x.shape[-2]), int(x.shape[-1])


def check_fits(name: str, value: tuple[int, int], hw: tuple[int, int]) -> None:
    if value[0] > hw[0] or value[1] > hw[1]:
        raise ValidationError(f"arguments.{name}", f"{list(value)} is larger than the image ({hw[0]}x{hw[1]})")


def check_stride(stride: tuple[int, int], window: tuple[int, int]) -> None:
    """Captum asserts stride <= window; say so as a 400 naming the field instead."""
    if stride[0] > window[0] or stride[1] > window[1]:
        raise ValidationError("arguments.stride", f"{list(stride)} must not be larger than the window {list(window)}")


def window_and_stride(p: Mapping[str, Any], hw: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """The occlusion window and stride these arguments mean on an image of ``hw`` (checked)."""
    side = default_side(*hw)
    window = p.get("window") or (side, side)
    check_fits("window", window, hw)
    stride = p.get("stride") or (max(1, window[0] // 2), max(1, window[1] // 2))
    check_stride(stride, window)
    return tuple(window), tuple(stride)


def occlusion_cost(p: Mapping[str, Any], hw: tuple[int, int]) -> int:
    """Windows per image: the forward passes one example costs."""
    window, stride = window_and_stride(p, hw)
    rows = max(1, math.ceil((hw[0] - window[0]) / stride[0]) + 1)
    cols = max(1, math.ceil((hw[1] - window[1]) / stride[1]) + 1)
    return rows * cols


def patch_side(p: Mapping[str, Any], hw: tuple[int, int]) -> int:
    side = p.get("patch") or default_side(*hw)
    check_fits("patch", (side, side), hw)
    return side


def patch_cost(p: Mapping[str, Any], hw: tuple[int, int]) -> int:
    """Patches per image: the features a patch-wise method perturbs."""
    side = patch_side(p, hw)
    return math.ceil(hw[0] / side) * math.ceil(hw[1] / side)


def occlusion_shapes(ctx: AttributionContext) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]:
    """Per-input sliding window and stride shapes (without the batch dimension)."""
    windows: list[tuple[int, ...]] = []
    strides: list[tuple[int, ...]] = []
    for i, x in enumerate(ctx.inputs):
        per_example = tuple(x.shape[1:])
        if i in ctx.image_inputs and len(per_example) == 3:
            window, stride = window_and_stride(ctx.params, image_hw(x))
            windows.append((per_example[0],) + window)
            strides.append((per_example[0],) + stride)
        else:
            windows.append(tuple(1 for _ in per_example))
            strides.append(tuple(1 for _ in per_example))
    return tuple(windows), tuple(strides)


def patch_feature_mask(ctx: AttributionContext) -> tuple[torch.Tensor, ...]:
    """Feature masks grouping image pixels into square patches; other inputs per element.

    Ids are offset across inputs so that no two inputs share a feature.
    """
    masks: list[torch.Tensor] = []
    offset = 0
    for i, x in enumerate(ctx.inputs):
        per_example = tuple(x.shape[1:])
        if i in ctx.image_inputs and len(per_example) == 3:
            h, w = image_hw(x)
            side = patch_side(ctx.params, (h, w))
            cols = math.ceil(w / side)
            rows_idx = torch.arange(h, device=x.device) // side
            cols_idx = torch.arange(w, device=x.device) // side
            mask = (rows_idx[:, None] * cols + cols_idx[None, :]).reshape(1, 1, h, w)
            count = int(mask.max()) + 1
        else:
            count = int(torch.tensor(per_example).prod()) if per_example else 1
            mask = torch.arange(count, device=x.device).reshape((1,) + per_example)
        masks.append(mask + offset)
        offset += count
    return tuple(masks)
