"""Rendering alone: microseconds per 224x224 attribution image, per visualization method.

What the server does per image: draw the attribution (colormap lookup, blend) and encode
it as a PNG data URL. For reference, captum's ``visualize_image_attr`` drawing the same
image with a matplotlib figure and saving it as PNG, which is what Captum Insights 0.8
did per image. The photo is scikit-image's astronaut; the attribution is a smooth bump
times pixel noise, which is what gradient maps look like (and is harder to compress than
a smooth map).
"""

from __future__ import annotations

import base64
import io
import time
import timeit
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from insights_app.page.render import VIS_METHODS, encode_png_base64, render_attribution

CASES: tuple[tuple[str, str], ...] = tuple((m, "absolute_value") for m in VIS_METHODS) + (
    ("heat_map", "all"),
    ("blended_heat_map", "all"),
)


@dataclass
class RenderResult:
    method: str
    sign: str
    side: int
    draw_us: float
    encode_us: float
    total_us: float
    png_kb: float
    captum_matplotlib_us: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def sample_inputs(side: int = 224, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(attribution (side, side) float32, photo (side, side, 3) uint8)."""
    try:
        from skimage import data, transform

        photo = (transform.resize(data.astronaut(), (side, side), anti_aliasing=True) * 255).astype(np.uint8)
    except ImportError:  # pragma: no cover - scikit-image is a test dependency
        ramp = np.linspace(0, 255, side, dtype=np.float32)
        photo = np.stack(
            [ramp[None, :].repeat(side, 0), ramp[:, None].repeat(side, 1), np.full((side, side), 128.0, np.float32)],
            axis=2,
        ).astype(np.uint8)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    bump = np.exp(-((yy - 0.45 * side) ** 2 + (xx - 0.55 * side) ** 2) / (2 * (0.18 * side) ** 2))
    attr = (bump * rng.normal(size=(side, side))).astype(np.float32)
    return attr, photo


def _best_us(fn: Callable[[], Any], number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat, timer=time.perf_counter)) / number * 1e6


def captum_matplotlib(attr: np.ndarray, photo: np.ndarray, method: str, sign: str) -> bytes:
    """Captum's own drawing of one image (a matplotlib figure) saved as PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from captum.attr import visualization as viz
    from matplotlib import pyplot as plt

    fig, _ = viz.visualize_image_attr(
        attr[..., None], photo, method=method, sign=sign, use_pyplot=False, fig_size=(2.24, 2.24)
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def run(
    side: int = 224, number: int = 20, repeat: int = 5, captum_repeat: int = 3, log: Callable[[str], None] | None = None
) -> list[RenderResult]:
    attr, photo = sample_inputs(side)
    out = []
    for method, sign in CASES:
        image = render_attribution(attr, photo, method, sign)
        url = encode_png_base64(image)
        decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
        if decoded.shape[:2] != (side, side) or not np.array_equal(decoded.reshape(image.shape), image):
            raise RuntimeError(f"{method}/{sign}: the PNG does not decode to the rendered image")
        draw = _best_us(lambda: render_attribution(attr, photo, method, sign), number, repeat)
        encode = _best_us(lambda: encode_png_base64(image), number, repeat)
        total = _best_us(lambda: encode_png_base64(render_attribution(attr, photo, method, sign)), number, repeat)
        ref = None
        if captum_repeat > 0:
            ref = _best_us(lambda: captum_matplotlib(attr, photo, method, sign), 1, captum_repeat)
        res = RenderResult(method, sign, side, draw, encode, total, len(url) * 3 / 4 / 1024, ref)
        out.append(res)
        if log:
            log(
                f"  {method:17s} {sign:15s} draw {draw:7.0f} us  png {encode:7.0f} us  total {total:7.0f} us"
                + (f"  captum+matplotlib {ref / 1e3:6.1f} ms" if ref else "")
            )
    return out
