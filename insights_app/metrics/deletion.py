"""Deletion and insertion: does removing what the map ranks highest change the model's mind?

Locations (pixels, or ``patch`` x ``patch`` squares of a large image, or the features of a
vector input) are ordered by the map (the channel-summed attribution, largest first, ties
in reading order). In ``steps`` equal fractions they are replaced by the method's baseline
(deletion, starting from the input) or revealed (insertion, starting from the baseline); the
curve is the target class's score after each step, from 0 % to 100 %, and its area is the
trapezoid mean. A faithful map gives a low deletion area (the score falls fast) and a high
insertion area (it rises fast). Every variant of a batch goes through the model in batched
forward passes of at most ``rows`` rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .spec import MetricContext, MetricSpec, Number, Setting, Value, finite

# inputs (one tensor per feature, rows first) -> (rows, classes) scores
Scores = Callable[..., torch.Tensor]


def location_scores(
    maps: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor], patch: int
) -> tuple[torch.Tensor, list[tuple[tuple[int, ...], int]]]:
    """Each example's score per location over every input (n, L), and per input the shape of its
    location grid and the patch side (to expand a location mask back to the input)."""
    scores, grids = [], []
    for m, x in zip(maps, inputs):
        m = m.float()
        if x.dim() == 4:  # an image (n, C, H, W): its map is (n, h, w)
            h, w = x.shape[2:]
            if m.shape[1:] != (h, w):
                m = F.interpolate(m[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
            p = max(1, int(patch))
            if p > 1:
                m = F.avg_pool2d(m[:, None], p, stride=p, ceil_mode=True)[:, 0] * (p * p)
            grids.append((tuple(m.shape[1:]), p))
            scores.append(m.reshape(m.shape[0], -1))
        else:
            grids.append((tuple(x.shape[1:]), 1))
            scores.append(m.reshape(m.shape[0], -1))
    return torch.cat(scores, dim=1), grids


def expand(
    mask: torch.Tensor, inputs: Sequence[torch.Tensor], grids: Sequence[tuple[tuple[int, ...], int]]
) -> list[torch.Tensor]:
    """A location mask (rows, L) -> one boolean mask per input, broadcastable to it."""
    out, at = [], 0
    for x, (grid, p) in zip(inputs, grids):
        size = int(np.prod(grid))
        part = mask[:, at : at + size]
        at += size
        if x.dim() == 4:
            part = part.reshape(part.shape[0], *grid)
            if p > 1:
                part = part.repeat_interleave(p, dim=1).repeat_interleave(p, dim=2)[:, : x.shape[2], : x.shape[3]]
            out.append(part[:, None])
        else:
            out.append(part.reshape(part.shape[0], *x.shape[1:]))
    return out


def curves(
    scores: Scores,
    inputs: tuple[torch.Tensor, ...],
    maps: Sequence[torch.Tensor],
    baselines: tuple[torch.Tensor, ...],
    targets: torch.Tensor,
    steps: int = 20,
    patch: int = 1,
    rows: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """The deletion and insertion curves, (n, steps + 1) each, of ``n`` examples."""
    n = int(inputs[0].shape[0])
    ranking, grids = location_scores(maps, inputs, patch)
    locations = ranking.shape[1]
    order = torch.argsort(ranking, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(locations).expand(n, -1).contiguous())
    counts = [int(round(s * locations / steps)) for s in range(steps + 1)]
    out = {}
    for kind in ("deletion", "insertion"):
        values = torch.empty(n, steps + 1)
        cells = [(i, s) for i in range(n) for s in range(steps + 1)]
        for start in range(0, len(cells), max(1, rows)):
            part = cells[start : start + rows]
            ex = torch.tensor([i for i, _ in part])
            k = torch.tensor([counts[s] for _, s in part])
            taken = rank[ex] < k[:, None]  # the top-k locations of each row's example
            masks = expand(taken.to(inputs[0].device), [x[:1] for x in inputs], grids)
            variants = []
            for x, b, m in zip(inputs, baselines, masks):
                xs, bs = x[ex], b[ex]
                variants.append(torch.where(m, bs, xs) if kind == "deletion" else torch.where(m, xs, bs))
            with torch.no_grad():
                s = scores(*variants)
            values[ex, torch.tensor([st for _, st in part])] = (
                s.float().cpu().gather(1, targets[ex].cpu()[:, None])[:, 0]
            )
        out[kind] = values.numpy()
    return out["deletion"], out["insertion"]


def area(curve: np.ndarray) -> float:
    """The trapezoid mean of a curve sampled at equal fractions from 0 to 1."""
    c = np.asarray(curve, dtype=np.float64)
    return float((c[1:] + c[:-1]).sum() / (2 * (len(c) - 1))) if len(c) > 1 else float(c[0])


def patch_for(patch: int, hw: tuple[int, int]) -> int:
    """The side of an image's locations: the ``patch`` setting, or for 0: 1 pixel up to 64 px, then
    about 56 squares a side."""
    if patch:
        return patch
    side = max(hw)
    return 1 if side <= 64 else max(1, round(side / 56))


def compute_curves(ctx: MetricContext, names: Sequence[str]) -> list[dict[str, Value]]:
    """Deletion and insertion of each example of ``ctx`` (both curves are made in the same passes)."""
    ctx.check()
    engine, inputs = ctx.engine, ctx.inputs
    hw = next(((int(x.shape[2]), int(x.shape[3])) for x in inputs if x.dim() == 4), (1, 1))
    map_t = [torch.from_numpy(np.stack([np.asarray(m[f]) for m in ctx.maps])) for f in range(len(inputs))]
    # Rows per pass as for attributions (Engine.rows_per_pass): mobilenet_v3_small's curves of 4
    # examples at 224x224 took 1.14 s in 64-row passes (400 k page faults) and 0.61 s in 6-row ones.
    deletion, insertion = curves(
        ctx.scores(),
        inputs,
        map_t,
        ctx.baselines(),
        ctx.targets,
        ctx.options.integer("steps"),
        patch_for(ctx.options.integer("patch"), hw),
        engine.rows_per_pass(inputs),
    )
    out: list[dict[str, Value]] = []
    for j in range(len(ctx.batch)):
        values: dict[str, Value] = {}
        for name, c in (("deletion", deletion[j]), ("insertion", insertion[j])):
            if name in names:
                values[name] = {"area": finite(area(c)), "curve": [finite(v) for v in c]}
        out.append(values)
    return out


def _curve_passes(values: Mapping[str, Number], method_cost: int) -> int:
    return int(values["steps"]) + 1


STEPS = Setting(
    "steps", 20, 2, 100, "deletion / insertion: the equal fractions the locations are removed or revealed in"
)
PATCH = Setting(
    "patch",
    0,
    0,
    64,
    "deletion / insertion: the side of the squares an image's locations are (0: 1 pixel up to "
    "64 px, then about 56 squares a side)",
)

DELETION = MetricSpec(
    name="deletion",
    label="deletion area",
    short="del",
    help="How fast the target's score falls when the map's most attributed pixels are removed",
    settings=(STEPS, PATCH),
    compute=compute_curves,
    lower_is_better=True,
    cost=_curve_passes,
    fast=True,
    curve="removed, largest attribution first",
)
INSERTION = MetricSpec(
    name="insertion",
    label="insertion area",
    short="ins",
    help="How fast the target's score rises when the map's most attributed pixels are revealed",
    settings=(STEPS, PATCH),
    compute=compute_curves,
    lower_is_better=False,
    cost=_curve_passes,
    fast=True,
    curve="revealed on the baseline",
)
