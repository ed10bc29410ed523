"""Attribution maps -> PNG images without matplotlib figures.

Captum's ``visualize_image_attr`` builds a matplotlib figure per image, which costs tens
of milliseconds. We reproduce its pixel semantics (methods, signs, ``outlier_perc``,
default colormaps) with a 256-entry colormap lookup table and encode PNG with numpy and zlib.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Sequence
from functools import cache

import numpy as np
import torch
from PIL import Image

from ..errors import RenderError
from ..limits import MAX_DISPLAY_SIDE
from .jsonwire import Verbatim

VIS_METHODS = ("heat_map", "blended_heat_map", "masked_image", "alpha_scaling", "original_image")
SIGNS = ("all", "positive", "negative", "absolute_value")
# Methods that scale or mask the image by the map's magnitude: they need a single sign.
SINGLE_SIGN_METHODS = ("masked_image", "alpha_scaling")
ALPHA_OVERLAY = 0.5


def sign_problem(method: str, sign: str) -> str | None:
    """Why ``sign`` cannot be drawn with ``method`` (None when it can)."""
    if method in SINGLE_SIGN_METHODS and sign == "all":
        return f"{method} needs sign positive, negative or absolute_value"
    return None


# Colour maps per palette and sign. "colorblind" (the default) reads the same under the common
# forms of colour blindness: a blue-white-orange diverging map for signed maps, one hue per
# single sign. "captum" is captum's visualize_image_attr (red-white-green, Greens, Reds, Blues).
PALETTES = ("colorblind", "captum")
_DIVERGING_BLUE_ORANGE = ["#08519c", "#4a98c9", "#c6dbef", "#ffffff", "#fdd0a2", "#f3701b", "#a63603"]
_COLORMAPS = {
    "captum": {"all": ["red", "white", "green"], "positive": "Greens", "negative": "Reds", "absolute_value": "Blues"},
    "colorblind": {
        "all": _DIVERGING_BLUE_ORANGE,
        "positive": "Oranges",
        "negative": "Blues",
        "absolute_value": "Purples",
    },
}


@cache
def colormap_lut(sign: str, palette: str = "captum") -> np.ndarray:
    """(256, 3) uint8 table of a palette's colormap for a sign (read-only)."""
    from matplotlib import colormaps
    from matplotlib.colors import LinearSegmentedColormap

    if palette not in _COLORMAPS:
        raise RenderError(f"palette must be one of {', '.join(PALETTES)}")
    spec = _COLORMAPS[palette][sign]
    cmap = (
        LinearSegmentedColormap.from_list(f"{palette}-{sign}", spec) if isinstance(spec, list) else colormaps[str(spec)]
    )
    lut = (cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def warm_up(palette: str = "colorblind") -> None:
    """Build a palette's colour tables and draw and encode one tiny map, so that the first page in
    a process does not pay for them (measured: the tables, through matplotlib's colormaps, about
    1.5 ms of a stored page of 64 maps' first visit; the first calls of the drawing and PNG code
    about as much again)."""
    for sign in SIGNS:
        colormap_lut(sign, palette)
    image = np.zeros((2, 2, 3), np.uint8)
    for sign in ("all", "absolute_value"):
        encode_png_base64(render_attribution(np.eye(2, dtype=np.float32), image, sign=sign, palette=palette))
    encode_png_base64(to_display_image(np.zeros((3, 2, 2), np.float32)))


def colormap_stops(sign: str, palette: str, n: int = 9) -> list:
    """``n`` evenly spaced colours of a colormap as "#rrggbb" (the page draws its legends with them)."""
    lut = colormap_lut(sign, palette)
    return ["#{:02x}{:02x}{:02x}".format(*tuple(int(c) for c in lut[round(i * 255 / (n - 1))])) for i in range(n)]


def cumulative_sum_threshold(values: np.ndarray, percentile: float) -> float:
    """The value below which ``percentile`` % of the total mass of ``values`` lies."""
    flat = np.sort(values, axis=None)
    cums = np.cumsum(flat)
    idx = int(np.searchsorted(cums, cums[-1] * 0.01 * percentile, side="left"))
    return float(flat[min(idx, flat.size - 1)])


def _check_scaling(sign: str, outlier_perc: float) -> None:
    if sign not in SIGNS:
        raise RenderError(f"sign must be one of {', '.join(SIGNS)}")
    if not 0.0 <= outlier_perc <= 100.0:
        raise RenderError("outlier_perc must be between 0 and 100")


def _selected(a: np.ndarray, sign: str) -> np.ndarray:
    """The magnitudes a sign draws: |a|, the positive part, or the negative part's magnitude."""
    if sign == "positive":
        return np.where(a > 0, a, 0.0).astype(np.float32)
    if sign == "negative":
        return np.where(a < 0, -a, 0.0).astype(np.float32)
    return np.abs(a)


def attribution_scale(maps: Sequence[np.ndarray], sign: str, outlier_perc: float = 2.0) -> float:
    """The magnitude drawn at full colour for some maps together (captum's cumulative-sum rule:
    ``100 - outlier_perc`` % of the drawn mass lies below it); 0.0 when nothing is drawn."""
    _check_scaling(sign, outlier_perc)
    parts = [_selected(np.asarray(m, dtype=np.float32), sign).ravel() for m in maps if np.size(m)]
    if not parts:
        return 0.0
    threshold = cumulative_sum_threshold(np.concatenate(parts) if len(parts) > 1 else parts[0], 100.0 - outlier_perc)
    return threshold if np.isfinite(threshold) and threshold > 0.0 else 0.0


def normalize_attribution(
    attr2d: np.ndarray, sign: str, outlier_perc: float = 2.0, scale: float | None = None
) -> np.ndarray:
    """Signed 2-D attribution -> values in [-1, 1] (captum's ``_normalize_attr`` semantics).

    ``scale`` is the magnitude drawn at full colour (a shared one, for maps to compare); by
    default the map's own (:func:`attribution_scale`). Returns zeros when nothing survives the
    sign selection (captum asserts instead).
    """
    _check_scaling(sign, outlier_perc)
    a = np.asarray(attr2d, dtype=np.float32)
    threshold = attribution_scale([a], sign, outlier_perc) if scale is None else float(scale)
    if sign == "positive":
        a = np.where(a > 0, a, 0.0).astype(np.float32)
    elif sign == "negative":
        a = np.where(a < 0, a, 0.0).astype(np.float32)
        threshold = -threshold
    elif sign == "absolute_value":
        a = np.abs(a)
    if threshold == 0.0 or not np.isfinite(threshold):
        return np.zeros_like(a)
    return np.clip(a / np.float32(threshold), -1.0, 1.0)


def scale_range(sign: str, scale: float) -> dict[str, float]:
    """The attribution values at the two ends of a sign's colour bar, for a legend."""
    low = {"all": -scale, "negative": -scale}.get(sign, 0.0)
    high = 0.0 if sign == "negative" else scale
    return {"low": float(low), "high": float(high)}


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
    if not arr.size:
        return arr.astype(np.uint8)
    peak = float(arr.max())
    if peak != peak:  # NaN somewhere: the careful path (NaN shows as 0)
        if float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
        return np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    # No NaN: clipping alone maps +-inf to 255 / 0, as nan_to_num then clip would.
    arr = arr * np.float32(255.0) if peak <= 1.0 else arr.astype(np.float32)
    return np.clip(arr, 0, 255, out=arr).astype(np.uint8)


def _resize_to(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == shape:
        return image
    mode_img = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
    resized = np.asarray(mode_img.resize((shape[1], shape[0]), Image.Resampling.BILINEAR))
    return resized[..., None] if resized.ndim == 2 else resized


def display_shape(h: int, w: int, max_side: int = MAX_DISPLAY_SIDE) -> tuple[int, int]:
    """(h, w) scaled to fit ``max_side`` with its aspect ratio; unchanged when it fits."""
    if max(h, w) <= max_side:
        return h, w
    scale = max_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def shrink_image(image: np.ndarray, max_side: int = MAX_DISPLAY_SIDE) -> np.ndarray:
    """A (H, W, C) uint8 display image resized (antialiased) to fit ``max_side``."""
    return _resize_to(image, display_shape(image.shape[0], image.shape[1], max_side))


def shrink_map(attr2d: np.ndarray, max_side: int = MAX_DISPLAY_SIDE) -> np.ndarray:
    """A 2-D attribution map box-averaged down to fit ``max_side`` (sign and mass kept per area)."""
    h, w = attr2d.shape
    shape = display_shape(h, w, max_side)
    if shape == (h, w):
        return attr2d
    small = Image.fromarray(np.ascontiguousarray(attr2d, dtype=np.float32)).resize(
        (shape[1], shape[0]), Image.Resampling.BOX
    )
    return np.asarray(small, dtype=np.float32)


def render_attribution(
    attr2d: np.ndarray,
    original: np.ndarray | None,
    method: str = "blended_heat_map",
    sign: str = "absolute_value",
    outlier_perc: float = 2.0,
    norm: np.ndarray | None = None,
    palette: str = "captum",
) -> np.ndarray:
    """Draw one attribution map as captum's visualize_image_attr would, as a uint8 array.

    ``original`` is the (H, W, C) uint8 display image; ``norm`` may pass an already
    normalized map (from :func:`normalize_attribution`) to skip the sort; ``palette`` picks
    the colours of the heat maps (``PALETTES``; "captum" is captum's own).
    """
    if method not in VIS_METHODS:
        raise RenderError(f"visualization method must be one of {', '.join(VIS_METHODS)}")
    if method == "original_image":
        if original is None:
            raise RenderError("original_image needs the input image")
        return original
    problem = sign_problem(method, sign)
    if problem:
        raise RenderError(f"{problem}, not 'all'")
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
        heat = np.take(colormap_lut(sign, palette), idx, axis=0)  # take: several times faster than lut[idx]
        if method == "heat_map":
            return heat
        assert original is not None  # checked above: every other method needs the image
        # Gray = mean of the channels rescaled to 0..255; the channel sum rescales the same way.
        rgb = original[..., :3]
        gray = rgb[..., 0].astype(np.float32)
        for c in range(1, rgb.shape[2]):
            gray += rgb[..., c]
        lo, hi = float(gray.min()), float(gray.max())
        scale = (1.0 - ALPHA_OVERLAY) * 255.0 / (hi - lo) if hi > lo else 0.0
        under = (gray - np.float32(lo)) * np.float32(scale) + np.float32(0.5)
        blended = heat.astype(np.float32)
        blended *= np.float32(ALPHA_OVERLAY)
        blended += under[..., None]
        return blended.astype(np.uint8)
    assert original is not None  # checked above: every other method needs the image
    if method == "masked_image":
        masked = original[..., :3].astype(np.float32) * norm[..., None]
        return np.clip(masked, 0, 255).astype(np.uint8)
    # alpha_scaling: the image with attribution as its alpha channel.
    alpha = np.clip(norm * 255.0, 0, 255).astype(np.uint8)[..., None]
    rgb = original[..., :3] if original.shape[2] >= 3 else np.repeat(original[..., :1], 3, axis=2)
    return np.concatenate([rgb, alpha], axis=2)


PNG_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}
# Images up to this many bytes (a 32x32 RGB image is 3 KB) are stored without compression:
# deflating a noisy 3 KB image took 20-45 us and saved under 10 % of it.
STORED_PNG_BYTES = 4096
# Larger images are sampled first (their first rows, about this many bytes) and stored
# uncompressed when deflate would save less than this fraction of them.
DEFLATE_SAMPLE_BYTES = 12288
DEFLATE_MIN_SAVING = 0.15  # channels -> PNG colour type (gray, gray+alpha, RGB, RGBA)


def _png_chunk(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(payload, zlib.crc32(tag)))


def _worth_deflating(filtered: np.ndarray) -> bool:
    """Whether deflate shrinks a sample of the filtered rows by at least ``DEFLATE_MIN_SAVING``.

    On noise-like images (random test data, textured photos under a noisy map) deflate
    saved 6 % of a 224x224 image's bytes for 1.8 ms; the sample costs a tenth of that.
    """
    rows = max(1, -(-DEFLATE_SAMPLE_BYTES // filtered.shape[1]))
    if rows * 2 > filtered.shape[0]:
        return True  # a small image: the sample would be most of the work
    sample = filtered[:rows]
    z = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    return len(z.compress(sample.data)) + len(z.flush()) <= (1.0 - DEFLATE_MIN_SAVING) * sample.nbytes


def encode_png(image: np.ndarray, compress_level: int = 1) -> bytes:
    """uint8 (H, W, C) -> PNG bytes; C=1 is written as grayscale.

    Written here rather than by Pillow: Pillow tries every PNG filter on every row, which
    costs several times the compression. One 'Up' filter for all rows (a vectorized
    subtraction) and zlib's run-length strategy give nearly the same size in a fraction
    of the time (a 224x224 heat map in about 2 ms instead of 10). Thumbnails, and images
    whose first rows barely compress (noise-like texture), are stored uncompressed.
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in PNG_COLOR_TYPES or 0 in arr.shape:
        buf = io.BytesIO()  # anything unusual: let Pillow decide (or refuse) as before
        Image.fromarray(np.ascontiguousarray(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)).save(
            buf, format="PNG", compress_level=compress_level
        )
        return buf.getvalue()
    h, w, c = arr.shape
    rows = arr.reshape(h, w * c)
    filtered = np.empty((h, w * c + 1), np.uint8)
    filtered[:, 0] = 2  # filter type 'Up': each byte minus the byte above it (mod 256)
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    if filtered.nbytes <= STORED_PNG_BYTES or not _worth_deflating(filtered):
        compress_level = 0  # deflating would cost more time than the bytes it saves are worth
    z = zlib.compressobj(compress_level, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    data = z.compress(filtered.data) + z.flush()
    header = struct.pack(">IIBBBBB", w, h, 8, PNG_COLOR_TYPES[c], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def encode_png_base64(image: np.ndarray) -> str:
    """uint8 image -> a ``data:image/png;base64,...`` URL for JSON and <img src> (Verbatim: base64
    needs no JSON escaping)."""
    return Verbatim("data:image/png;base64," + base64.b64encode(encode_png(image)).decode("ascii"))
