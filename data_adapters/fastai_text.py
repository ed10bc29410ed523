"""fastai text classifiers (``text_classifier_learner``, ``TextDataLoaders``) -> a Source with per-token attributions.

``data_adapters.fastai.from_learner`` sends a learner here when its model is a fastai text
model (it holds a ``SentenceEncoder``). The token ids come from the learner's own DataLoader,
iterated as fastai iterates it (the validation set sorted by length, padded as fastai pads a
batch: ``pad_input_chunk``), so the model sees exactly the batches ``Learner.get_preds`` feeds it.
Example ids follow that order: ``source.info["order"][i]`` is the dataset index of example ``i``.

How tokens are attributed is :mod:`data_adapters.text`'s design: the model becomes
``EmbeddingInputModel(model, encoder_dp)``, whose input is the output of AWD_LSTM's embedding
(``encoder_dp``, the ``EmbeddingDropout`` that the LSTM actually calls: hooking the
``nn.Embedding`` inside it would never fire), with the padding token's embedding as the zero
baseline. ``SentenceEncoder`` feeds its LSTM ``bptt`` tokens at a time, and only the rows still
running; the wrapper hands each call its slice, and sorts the rows of every pass by length as
fastai's DataLoaders do (``SentenceEncoder`` assumes it). Tokens are shown as the vocabulary's
strings (``xxbos``, ``xxmaj`` and ``xxpad`` included: one per attributed token).

The score function and the per-example loss come from the learner's ``loss_func``, as for image
learners. fastai's text modules are imported only on this path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from insights_app.tensors import plain

from .base import AdapterError, Source, prepare_model, read_classes
from .fastai_common import activation, choose_dl, label_list, ordered_dl, unreduced, vocab_names
from .text import text_source

log = logging.getLogger(__name__)
__all__ = ["is_text_model", "source_from_text_learner"]


def is_text_model(model: Any) -> bool:
    """Whether a model is a fastai text model (it holds a ``SentenceEncoder``); cheap, imports nothing."""
    if not isinstance(model, nn.Module):
        return False
    return any(type(m).__name__ == "SentenceEncoder" for m in model.modules())


def _encoder(model: nn.Module) -> Any:
    return next((m for m in model.modules() if type(m).__name__ == "SentenceEncoder"), None)


def embedding_layer(model: nn.Module) -> nn.Module:
    """The layer the LSTM calls on the token ids: AWD_LSTM's ``encoder_dp`` (else the first nn.Embedding)."""
    for m in model.modules():
        if type(m).__name__ == "EmbeddingDropout":
            return m
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            return m
    raise AdapterError("the text model has no embedding layer")


def pad_index(model: nn.Module, vocab: list[str]) -> int:
    encoder = _encoder(model)
    if encoder is not None and getattr(encoder, "pad_idx", None) is not None:
        return int(encoder.pad_idx)
    return vocab.index("xxpad") if "xxpad" in vocab else 1


def _input_vocab(dls: Any) -> list[str]:
    try:
        vocab = dls.vocab
    except Exception:
        vocab = None
    if vocab is None:
        raise AdapterError("the DataLoaders have no vocabulary (dls.vocab)")
    items = list(vocab)
    if items and (isinstance(items[0], (list, tuple)) or type(items[0]).__name__ == "L"):
        items = list(items[0])  # (text vocab, class vocab)
    return [str(v) for v in items]


class FastaiTokenBatches:
    """Re-iterable (token ids, labels) batches of a fastai text DataLoader, in its own order."""

    def __init__(self, dl: Any) -> None:
        self.dl = dl

    def __len__(self) -> int:
        return len(self.dl.dataset)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, list[int | None]]]:
        for b in self.dl:
            b = tuple(b) if isinstance(b, (tuple, list)) else (b,)
            x = plain(b[0])
            if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.is_floating_point():
                shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise AdapterError(f"the learner's inputs are {shape}, not token ids (N, T)")
            n = int(x.shape[0])
            yield x.detach().cpu().long(), (label_list(b[1], n) if len(b) > 1 else [None] * n)


def _text_dl(dls: Any, dl: Any, items: Any, with_labels: bool | None) -> Any:
    if items is None:
        return choose_dl(dls, dl, None, None)
    if dl is not None:
        raise AdapterError("give dl or items, not both")
    if isinstance(items, str):
        items = [items]
    is_frame = type(items).__name__ == "DataFrame"
    if not is_frame:
        items = list(items)
        if not items or not all(isinstance(t, str) for t in items):
            raise AdapterError("items for a text learner: a list of texts (or a DataFrame like the training one)")
        if with_labels:
            raise AdapterError("with_labels=True needs a DataFrame with the label column; a list of texts has none")
    try:
        return dls.test_dl(items, with_labels=bool(with_labels) and is_frame)
    except Exception as exc:
        raise AdapterError(f"fastai could not build a DataLoader over the texts: {type(exc).__name__}: {exc}") from exc


def _display_dl(dl: Any, bs: int | None) -> Any:
    """``dl`` in order, every example, in this process (stable example ids)."""
    return ordered_dl(dl, bs)


def source_from_text_learner(
    dls: Any,
    model: Any,
    loss_func: Any,
    dl: Any = None,
    items: Any = None,
    with_labels: bool | None = None,
    classes: Any = None,
    device: Any = None,
    bs: int | None = None,
    name: str | None = None,
) -> Source:
    """A :class:`Source` over a fastai text classifier and its DataLoaders (what ``from_learner`` builds)."""
    chosen = _text_dl(dls, dl, items, with_labels)
    shown = _display_dl(chosen, bs)
    try:
        order = [int(i) for i in shown.get_idxs()]
    except Exception:
        order = list(range(len(shown.dataset)))
    vocab = _input_vocab(dls)
    names = read_classes(classes) if classes is not None else vocab_names(dls)
    model = prepare_model(model, device)
    score = activation(loss_func)
    info = {"multi_label": score.kind == "sigmoid", "order": order}
    return text_source(
        model,
        FastaiTokenBatches(shown),
        vocab,
        pad_index(model, vocab),
        names,
        score,
        layer=embedding_layer(model),
        n_examples=len(shown.dataset),
        name=name,
        loss_func=unreduced(loss_func),
        sort_by_length=True,
        info=info,
        class_hint="classes come from dls.vocab",
    )
