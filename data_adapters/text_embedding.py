"""The token embedding layer and the model wrapper that makes its output the model's input.

What ``LayerIntegratedGradients`` does inside its call, made a module: :class:`EmbeddingInputModel`
runs the original model on the token ids with the embedding layer's output replaced by the
embeddings it is given, so every gradient method of the app differentiates with respect to them
(the design is in :mod:`data_adapters.text`).
"""

from __future__ import annotations

import threading
from typing import Any

import torch
from torch import nn

from insights_app.tensors import model_device, plain

from .base import AdapterError

__all__ = ["EmbeddingInputModel", "LayerArg", "embedding_call", "find_embedding_layer"]
LayerArg = None | str | nn.Module


def find_embedding_layer(model: nn.Module, layer: LayerArg = None) -> tuple[str, nn.Module]:
    """(name, module) of the layer whose output is attributed: ``layer`` (a name or a module of the
    model), else the model's first ``nn.Embedding``."""
    named = list(model.named_modules())
    if isinstance(layer, nn.Module):
        for name, m in named:
            if m is layer:
                return name, m
        raise AdapterError("layer is not a module of the model")
    if isinstance(layer, str):
        modules = dict(named)
        if layer not in modules:
            raise AdapterError(f"the model has no layer named {layer!r}")
        return layer, modules[layer]
    if layer is not None:
        raise AdapterError(f"layer must be a module name or a module, not {type(layer).__name__}")
    for name, m in named:
        if isinstance(m, nn.Embedding):
            return name, m
    if any(isinstance(m, nn.EmbeddingBag) for _, m in named):
        raise AdapterError(
            "the model embeds its tokens with an nn.EmbeddingBag, which pools them: there is no "
            "per-token output to attribute; use nn.Embedding (and pool after it)"
        )
    raise AdapterError("the model has no nn.Embedding layer; name the token embedding layer with layer=")


def embedding_call(layer: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The layer's output for ``ids`` (no grad), calling its ``forward`` directly: hooks other code
    may have on the layer (the model wrapper's, captum's) never run here."""
    device = model_device(layer)
    with torch.no_grad():
        out = plain(layer.forward(ids.to(device)))
    if (
        not isinstance(out, torch.Tensor)
        or not out.is_floating_point()
        or out.dim() != ids.dim() + 1
        or tuple(out.shape[: ids.dim()]) != tuple(ids.shape)
    ):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise AdapterError(
            f"the embedding layer gives {shape} for token ids of shape {tuple(ids.shape)}; it must "
            "give one float vector per token"
        )
    return out.detach().float().cpu()


def _has_rnn(model: nn.Module) -> bool:
    return any(isinstance(m, nn.RNNBase) for m in model.modules())


class EmbeddingInputModel(nn.Module):
    """``model(ids)`` with its embedding layer's output replaced: ``forward(embeddings, ids)``.

    What ``LayerIntegratedGradients`` does inside its call, made the model: a forward hook on the
    layer returns ``embeddings`` in place of the layer's output, so the rest of the model runs on
    them (and gradients flow back to them) while the ids still give the model its mask and
    lengths. A model that calls the layer several times per pass on consecutive slices of the
    sequence (fastai's ``SentenceEncoder`` does, ``bptt`` tokens and the rows still running at a
    time) gets the matching slice each time.

    ``sort_by_length`` (the padding index): fastai's ``SentenceEncoder`` expects the rows of a
    batch in decreasing length (its data loaders sort them); rows are put in that order for the
    pass and the outputs put back, so an example's scores never depend on its batch's order.
    """

    _layer: nn.Module  # set with object.__setattr__: a module of ``model``, not registered twice

    def __init__(
        self, model: nn.Module, layer: nn.Module, layer_name: str = "", sort_by_length: int | None = None
    ) -> None:
        super().__init__()
        self.model = model
        object.__setattr__(self, "_layer", layer)  # a module of ``model``: not registered twice
        self.layer_name = layer_name
        self.sort_by_length = sort_by_length
        self._lock = threading.RLock()

    @property
    def layer(self) -> nn.Module:
        return self._layer

    def forward(self, embeddings: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        ids = plain(ids).to(embeddings.device)
        if ids.dim() != 2 or embeddings.dim() != 3 or tuple(ids.shape) != tuple(embeddings.shape[:2]):
            raise ValueError(f"embeddings {tuple(embeddings.shape)} do not match token ids {tuple(ids.shape)}")
        order = None
        if self.sort_by_length is not None and ids.shape[0] > 1:
            lengths = (ids != self.sort_by_length).sum(dim=1)
            order = torch.sort(lengths, descending=True, stable=True).indices
            if bool((order == torch.arange(len(order), device=order.device)).all()):
                order = None
            else:
                ids, embeddings = ids[order], embeddings[order]
        consumed = [0]
        thread = threading.get_ident()

        def replace(module: nn.Module, args: Any, out: Any) -> Any:
            if threading.get_ident() != thread:  # someone else's call of the layer: leave it alone
                return None
            out = plain(out)
            rows, t = int(out.shape[0]), int(out.shape[1])
            start = consumed[0]
            part = embeddings[:rows, start : start + t]
            if tuple(part.shape) != tuple(out.shape):
                raise ValueError(
                    f"the embedding layer gave {tuple(out.shape)} at token {start}; the embeddings "
                    f"given are {tuple(embeddings.shape)}"
                )
            consumed[0] = start + t
            return part.to(out.dtype)

        rnn_on_gpu = embeddings.is_cuda and _has_rnn(self.model)
        with self._lock:
            handle = self._layer.register_forward_hook(replace)
            try:
                # cuDNN's RNN backward refuses models in eval mode; torch's own kernels do not.
                with torch.backends.cudnn.flags(enabled=not rnn_on_gpu):
                    out = self.model(ids)
            finally:
                handle.remove()
        if consumed[0] == 0:
            raise ValueError(f"the model never called its embedding layer {self.layer_name or ''!s} on the ids")
        if isinstance(out, (tuple, list)):
            out = out[0]
        out = plain(out)
        if order is not None:
            out = out[torch.argsort(order)]
        return out
