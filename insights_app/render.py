"""Attribution maps -> PNG images without matplotlib figures.

Captum's ``visualize_image_attr`` builds a matplotlib figure per image, which costs tens
of milliseconds. We reproduce its pixel semantics (methods, signs, ``outlier_perc``,
default colormaps) with a 256-entry colormap lookup table and encode with Pillow.
"""

from __future__ import annotations

import base64
import io
from functools import lru_cache
from typing import Optional, Tuple

import numpy as np
import torch
from PIL import Image

VIS_METHODS = ("heat_map", "blended_heat_map", "masked_image", "alpha_scaling", "original_image")
SIGNS = ("all", "positive", "negative", "absolute_value")
ALPHA_OVERLAY = 0.5


class RenderError(ValueError):
    """A render option that cannot be honoured (e.g. masked_image with sign 'all')."""


@lru_cache(maxsize=None)
def colormap_lut(sign: str) -> np.ndarray:
    """(256, 3) uint8 table of captum's default colormap for a sign (read-only)."""
    from matplotlib import colormaps
    from matplotlib.colors import LinearSegmentedColormap

    if sign == "all":
        cmap = LinearSegmentedColormap.from_list("RdWhGn", ["red", "white", "green"])
    else:
        cmap = colormaps[{"positive": "Greens", "negative": "Reds", "absolute_value": "Blues"}[sign]]
    lut = (cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def cumulative_sum_threshold(values: np.ndarray, percentile: float) -> float:
    """The value below which ``percentile`` % of the total mass of ``values`` lies."""
    flat = np.sort(values, axis=None)
    cums = np.cumsum(flat)
    idx = int(np.searchsorted(cums, cums[-1] * 0.01 * percentile, side="left"))
    return float(flat[min(idx, flat.size - 1)])


def normalize_attribution(attr2d: np.ndarray, sign: str, outlier_perc: float = 2.0) -> np.ndarray:
    """Signed 2-D attribution -> values in [-1, 1] (captum's ``_normalize_attr`` semantics).

    Returns zeros when nothing survives the sign selection (captum asserts instead).
    """
    if sign not in SIGNS:
        raise RenderError(f"sign must be one of {', '.join(SIGNS)}")
    if not 0.0 <= outlier_perc <= 100.0:
        raise RenderError("outlier_perc must be between 0 and 100")
    a = np.asarray(attr2d, dtype=np.float32)
    if sign == "all":
        threshold = cumulative_sum_threshold(np.abs(a), 100.0 - outlier_perc)
    elif sign == "positive":
        a = np.where(a > 0, a, 0.0).astype(np.float32)
        threshold = cumulative_sum_threshold(a, 100.0 - outlier_perc)
    elif sign == "negative":
        a = np.where(a < 0, a, 0.0).astype(np.float32)
        threshold = -cumulative_sum_threshold(np.abs(a), 100.0 - outlier_perc)
    else:
        a = np.abs(a)
        threshold = cumulative_sum_threshold(a, 100.0 - outlier_perc)
    if threshold == 0.0 or not np.isfinite(threshold):
        return np.zeros_like(a)
    return np.clip(a / np.float32(threshold), -1.0, 1.0)


def to_display_image(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """(C, H, W) or (H, W) tensor in 0..1 (or 0..255) -> (H, W, C) uint8 with C in {1, 3, 4}."""
    arr = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise RenderError(f"an image must be (C, H, W), got shape {arr.shape}")
    if arr.shape[0] not in (1, 3, 4) and arr.shape[-1] in (1, 3, 4):
        arr = np.transpose(arr, (2, 0, 1))
    arr = np.transpose(arr, (1, 2, 0))
    if arr.shape[2] == 2 or arr.shape[2] > 4:
        arr = arr.mean(axis=2, keepdims=True)
    if arr.size and float(np.nanmax(arr)) <= 1.0:
        arr = arr * 255.0
    return np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)


def _resize_to(image: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == shape:
        return image
    mode_img = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
    resized = np.asarray(mode_img.resize((shape[1], shape[0]), Image.BILINEAR))
    return resized[..., None] if resized.ndim == 2 else resized


def render_attribution(
    attr2d: np.ndarray,
    original: Optional[np.ndarray],
    method: str = "blended_heat_map",
    sign: str = "absolute_value",
    outlier_perc: float = 2.0,
    norm: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Draw one attribution map as captum's visualize_image_attr would, as a uint8 array.

    ``original`` is the (H, W, C) uint8 display image; ``norm`` may pass an already
    normalized map (from :func:`normalize_attribution`) to skip the sort.
    """
    if method not in VIS_METHODS:
        raise RenderError(f"visualization method must be one of {', '.join(VIS_METHODS)}")
    if method == "original_image":
        if original is None:
            raise RenderError("original_image needs the input image")
        return original
    if method in ("masked_image", "alpha_scaling") and sign == "all":
        raise RenderError(f"{method} needs sign positive, negative or absolute_value, not 'all'")
    if norm is None:
        norm = normalize_attribution(attr2d, sign, outlier_perc)
    h, w = norm.shape
    if method in ("blended_heat_map", "masked_image", "alpha_scaling") and original is None:
        raise RenderError(f"{method} needs the input image")
    if original is not None:
        original = _resize_to(original, (h, w))
    if method in ("heat_map", "blended_heat_map"):
        # matplotlib's Colormap maps t in [0, 1] to entry floor(t * 256), capped at 255.
        scaled = (norm + 1.0) * 128.0 if sign == "all" else norm * 256.0
        idx = scaled.astype(np.intp)
        np.clip(idx, 0, 255, out=idx)
        heat = colormap_lut(sign)[idx]
        if method == "heat_map":
            return heat
        gray = original[..., :3].astype(np.float32).mean(axis=2)
        lo, hi = float(gray.min()), float(gray.max())
        gray = (gray - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(gray)
        blended = ALPHA_OVERLAY * heat.astype(np.float32) + (1.0 - ALPHA_OVERLAY) * gray[..., None]
        return (blended + 0.5).astype(np.uint8)
    if method == "masked_image":
        masked = original[..., :3].astype(np.float32) * norm[..., None]
        return np.clip(masked, 0, 255).astype(np.uint8)
    # alpha_scaling: the image with attribution as its alpha channel.
    alpha = np.clip(norm * 255.0, 0, 255).astype(np.uint8)[..., None]
    rgb = original[..., :3] if original.shape[2] >= 3 else np.repeat(original[..., :1], 3, axis=2)
    return np.concatenate([rgb, alpha], axis=2)


def encode_png(image: np.ndarray, compress_level: int = 1) -> bytes:
    """uint8 (H, W, C) -> PNG bytes; C=1 is written as grayscale."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def encode_png_base64(image: np.ndarray) -> str:
    """uint8 image -> a ``data:image/png;base64,...`` URL for JSON and <img src>."""
    return "data:image/png;base64," + base64.b64encode(encode_png(image)).decode("ascii")
