"""fastai's ``TabularModel`` from its embeddings on, and the two features that feed it.

How a tabular learner is shown and attributed is :mod:`data_adapters.fastai_tabular`'s design:
the categorical feature's input transform (:class:`EmbedCodes`) looks the codes up in the
learner's own embedding tables, the continuous feature's (:class:`Standardize`) re-applies
fastai's ``Normalize``, and :class:`EmbeddedTabularModel` runs the rest of ``TabularModel.forward``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, cast

import numpy as np
import torch

from insights_app.features import GeneralFeature

from .base import AdapterError, shown_as_strings

__all__ = [
    "NA",
    "CategoricalFeature",
    "ContinuousFeature",
    "EmbedCodes",
    "EmbeddedTabularModel",
    "Standardize",
    "TabularParts",
]
NA = "#na#"


class TabularParts(Protocol):
    """What :class:`EmbeddedTabularModel` reads of fastai's ``TabularModel`` (checked by name when wrapped).

    torch types a module's dynamic attributes as ``Tensor | Module``; this says what they are.
    """

    embeds: Sequence[torch.nn.Embedding]  # an nn.ModuleList of fastai's Embedding (an nn.Embedding)
    emb_drop: torch.nn.Module
    bn_cont: torch.nn.Module | None
    layers: torch.nn.Module
    n_emb: int
    n_cont: int


class EmbeddedTabularModel(torch.nn.Module):
    """fastai's ``TabularModel`` from its embeddings on: ``forward(embedded_cats, conts)``.

    ``embedded_cats`` is the concatenation of every categorical column's embedding (what
    ``TabularModel.forward`` builds from the codes); the rest is that forward, line for line.
    Only the inputs the model has are passed (no categorical columns: ``forward(conts)``).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        missing = [a for a in ("embeds", "emb_drop", "bn_cont", "layers", "n_emb", "n_cont") if not hasattr(model, a)]
        if missing:
            raise AdapterError(
                f"the tabular learner's model is a {type(model).__name__}, not fastai's TabularModel "
                f"(it has no {', '.join(missing)}); this adapter shows TabularModel learners"
            )
        self.tabular = model
        parts = self.parts
        self.has_cats = int(parts.n_emb) != 0
        self.has_conts = int(parts.n_cont) != 0
        self.layers = _unshared(parts.layers)

    @property
    def parts(self) -> TabularParts:
        """The wrapped ``TabularModel``, typed by what is read of it (its attributes were checked)."""
        return cast(TabularParts, self.tabular)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        m = self.parts
        rest = list(inputs)
        x = m.emb_drop(rest.pop(0)) if self.has_cats else None
        if self.has_conts:
            x_cont = rest.pop(0)
            if m.bn_cont is not None:
                x_cont = m.bn_cont(x_cont)
            x = torch.cat([x, x_cont], 1) if x is not None else x_cont
        return self.layers(x)


def _unshared(layers: torch.nn.Module) -> torch.nn.Module:
    """``layers`` with each use of a shared parameterless module (fastai's one ``ReLU(inplace=True)``
    for every block) replaced by a copy of its own, not in place; every other module is the model's
    own (the same parameters). DeepLift needs each module used once; the outputs are unchanged."""
    import copy

    blocks = list(layers.children())
    if not isinstance(layers, torch.nn.Sequential) or not all(isinstance(b, torch.nn.Sequential) for b in blocks):
        return layers
    seen: dict[int, int] = {}
    for b in blocks:
        for c in b.children():
            seen[id(c)] = seen.get(id(c), 0) + 1

    def own(c: torch.nn.Module) -> torch.nn.Module:
        if seen[id(c)] < 2 or any(True for _ in c.parameters()):
            return c
        c = copy.deepcopy(c)
        if hasattr(c, "inplace"):
            c.inplace = False  # type: ignore[assignment]  # torch types dynamic attributes Tensor | Module
        return c

    return torch.nn.Sequential(*[torch.nn.Sequential(*[own(c) for c in b.children()]) for b in blocks])


class EmbedCodes:
    """Category codes (N, columns) -> their embeddings, concatenated (N, sum of embedding sizes).

    The learner's own embedding tables, detached (the model input is a plain float tensor that
    captum differentiates); codes out of range (a baseline, a hand-made row) are clipped.
    """

    def __init__(self, embeds: Sequence[torch.nn.Embedding]) -> None:
        self.embeds = list(embeds)
        self.sizes = [int(e.embedding_dim) for e in self.embeds]

    def apply_to_batch(self, codes: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            parts = []
            for j, e in enumerate(self.embeds):
                w = e.weight.detach()
                c = codes[:, j].round().long().clamp(0, int(w.shape[0]) - 1).to(w.device)
                parts.append(torch.nn.functional.embedding(c, w))
            return torch.cat(parts, 1)

    def __call__(self, example: torch.Tensor) -> torch.Tensor:
        return self.apply_to_batch(example[None])[0]


class Standardize:
    """fastai's tabular ``Normalize`` on raw continuous values: ``(x - mean) / std`` per column."""

    def __init__(self, means: Sequence[float], stds: Sequence[float]) -> None:
        self.mean = torch.tensor(list(means), dtype=torch.float32)
        self.std = torch.tensor(list(stds), dtype=torch.float32)

    def apply_to_batch(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device, x.dtype)) / self.std.to(x.device, x.dtype)

    def __call__(self, example: torch.Tensor) -> torch.Tensor:
        return self.apply_to_batch(example)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std.to(x.device, x.dtype) + self.mean.to(x.device, x.dtype)


class ContinuousFeature(GeneralFeature):
    """The continuous columns: raw values shown, normalized values fed to the model."""

    def __init__(self, name: str, columns: Sequence[str], normalize: Standardize | None) -> None:
        super().__init__(name, columns)
        self.normalize = normalize
        self.input_transforms = [normalize] if normalize is not None else []
        if normalize is not None:  # the "feature" baseline: the training means (normalized 0)
            self.baseline_transforms = [lambda x: normalize.mean.to(x.device, x.dtype).expand_as(x).clone()]


class CategoricalFeature(GeneralFeature):
    """The categorical columns: codes shown as category names, embeddings fed to the model.

    One attribution per column: the attribution of the column's embedding dimensions, summed.
    """

    def __init__(self, name: str, columns: Sequence[str], vocabs: Sequence[Sequence[str]], embed: EmbedCodes) -> None:
        super().__init__(name, columns)
        self.vocabs = [[str(v) for v in vocab] for vocab in vocabs]
        self.embed = embed
        self.input_transforms = [embed]
        self.visualization_transform = shown_as_strings(self.names)

    def names(self, codes: torch.Tensor) -> list[str]:
        """One example's codes -> its category names (an unknown code is shown as ``#na#``)."""
        out = []
        for j, c in enumerate(codes.flatten().tolist()):
            vocab = self.vocabs[j]
            k = int(c) if isinstance(c, (int, float)) and math.isfinite(c) else 0
            out.append(vocab[k] if 0 <= k < len(vocab) else NA)
        return out

    def transform_input(self, batch: torch.Tensor) -> torch.Tensor:
        return self.embed.apply_to_batch(batch)

    def reduce_attribution(self, attribution: torch.Tensor) -> np.ndarray:
        a = attribution.detach().float().cpu().flatten()
        if a.numel() == len(self.categories):  # already per column (a method attributing the codes)
            return a.numpy()
        if a.numel() != sum(self.embed.sizes):
            raise ValueError(
                f"feature {self.name!r}: an attribution of {a.numel()} values for embeddings of "
                f"{sum(self.embed.sizes)} values"
            )
        return torch.stack([part.sum() for part in torch.split(a, self.embed.sizes)]).numpy()

    def describe(self) -> dict:
        return dict(super().describe(), vocabs={c: v for c, v in zip(self.categories, self.vocabs)})
