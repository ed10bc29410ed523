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

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

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
