"""Text classifiers (token ids in, class scores out) -> a Source with per-token attributions.

The app's gradient methods (Integrated Gradients, Saliency, the noise tunnels, DeepLift...)
differentiate the model with respect to its float inputs, and token ids are integers. Captum's
IMDB tutorial solves this with ``LayerIntegratedGradients`` on the embedding layer: the path
integral runs over the embedding layer's *output*, from the padding token's embedding to the
text's. This adapter does the same without special-casing the engine, by making the embedding
output the model's input:

- **The model** the engine sees is :class:`EmbeddingInputModel`: ``forward(embeddings, ids)``
  runs the original model on the token ids with a forward hook on the embedding layer that
  replaces the layer's output by ``embeddings`` (float (N, T, E)): exactly the substitution
  ``LayerIntegratedGradients`` makes. The ids still reach the model, so whatever it derives from
  them (fastai's padding mask, lengths) is unchanged. They travel as the batch's
  ``additional_args``, which captum repeats for every step of a path and every perturbation.
- **The display-space input** (what the dataset yields, one tensor per example of shape
  (T, E + 1)) is the embedding's offset from the padding token's embedding, with the token id in
  the last column (as ``tests/ui_helpers.py``'s mixed batches carry their words). The feature's
  ``input_transforms`` drop the id column and add the padding embedding back, so the model gets
  exactly the embedding layer's output. Because the offset of the padding token is zero, the
  *zeros* baseline every method defaults to **is** the padding-token baseline; the feature also
  declares it (``baseline_transforms``: every token replaced by the padding token), so
  ``baseline="feature"`` gives the same. Integrated Gradients from that baseline equals
  ``LayerIntegratedGradients(model, embedding_layer)`` with an all-padding baseline (the tests
  check it against captum on the original model).
- **The attribution** of a token is the sum over the embedding dimension of the attribution of its
  embedding (``TextFeature.reduce_attribution``); the page shows the tokens (the vocabulary's
  strings, decoded from the id column) coloured by it. Padding positions are shown as the
  vocabulary's padding string; their attribution from the padding baseline is exactly zero (their
  embedding does not move along the path), while gradient-only methods (Saliency) may give them
  a gradient.

Sequences are padded to the longest of their batch (``batch_size`` texts read at a time), at
the end unless ``pad_first``; keep batches of similar lengths (sort the texts) to keep padding
short. The uniform, gaussian and blur baselines are image baselines; for text, use zeros (the
padding token) or the feature's.

The embedding layer is found by itself (the model's first ``nn.Embedding``) or named
(``layer=``); it must be applied to the token ids (an ``nn.EmbeddingBag`` pools the tokens
away, so it has no per-token output to attribute). Computing the display input calls the
layer's ``forward`` directly (no hooks run; no model pass).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from insights_app import AttributionVisualizer, Batch
from insights_app.features import TextFeature
from insights_app.tensors import model_device, plain

from .base import (
    AdapterError,
    ClassesArg,
    ScoreArg,
    Source,
    check_classes,
    prepare_model,
    read_classes,
    score_function,
)
from .text_embedding import EmbeddingInputModel, LayerArg, embedding_call, find_embedding_layer
from .text_tokens import (
    MAX_TOKENS,
    EmbeddedBatches,
    ModelInput,
    PadBaseline,
    TextBatches,
    TokenCodec,
    Tokenizer,
    make_codec,
    pad_ids,
)

log = logging.getLogger(__name__)
__all__ = [
    "MAX_TOKENS",
    "EmbeddedBatches",
    "EmbeddingInputModel",
    "LayerArg",
    "ModelInput",
    "PadBaseline",
    "TextBatches",
    "TokenCodec",
    "Tokenizer",
    "count_text_outputs",
    "embedding_call",
    "find_embedding_layer",
    "from_texts",
    "make_codec",
    "pad_ids",
    "source_from_texts",
    "text_source",
]


def count_text_outputs(model: EmbeddingInputModel, feature: TextFeature, batch: Batch) -> int:
    """Outputs per example of one pass of the wrapped model on the first two examples."""
    x = plain(batch.inputs)[:2]
    ids = batch.additional_args[:2]
    device = model_device(model)
    try:
        with torch.no_grad():
            out = model(feature.transform_input(x).to(device), ids)
    except Exception as exc:
        raise AdapterError(
            f"the model failed on the first texts (token ids of shape {tuple(ids.shape)}): {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(out, torch.Tensor) or out.dim() == 0:
        raise AdapterError("the model must return a tensor with one row of class scores per example")
    return 1 if out.dim() == 1 else int(out[0].numel())


def text_source(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, list[int | None]]],
    vocab: Sequence[str],
    pad_index: int,
    classes: list[str] | None,
    score: Any,
    *,
    layer: LayerArg = None,
    n_examples: int | None = None,
    name: str | None = None,
    feature_name: str = "text",
    loss_func: Any = None,
    sort_by_length: bool = False,
    info: dict | None = None,
    class_hint: str = "",
) -> Source:
    """A Source over a (prepared) model and re-iterable (ids, labels) batches: the parts every text
    adapter shares (the fastai one passes its DataLoader's batches)."""
    layer_name, module = find_embedding_layer(model, layer)
    codec = make_codec(module, vocab, pad_index)
    wrapped = EmbeddingInputModel(model, module, layer_name, pad_index if sort_by_length else None).eval()
    feature = codec.feature(feature_name)
    data = EmbeddedBatches(batches, module, codec, n_examples)
    try:
        batch = next(iter(data))
    except StopIteration:
        raise AdapterError("there is no text to show") from None
    names = check_classes(classes, count_text_outputs(wrapped, feature, batch), class_hint)
    details = {
        "embedding_layer": layer_name,
        "embedding_dim": codec.dim,
        "pad_index": int(pad_index),
        "vocab_size": len(codec.vocab),
    }
    if n_examples is not None:
        details["length"] = n_examples
    details.update(info or {})
    return Source(wrapped, names, score, [feature], data, name=name, info=details, loss_func=loss_func)


# ---------------------------------------------------------------- plain torch models with a tokenizer


def _vocab_list(vocab: Sequence[str] | Mapping[str, int]) -> list[str]:
    if isinstance(vocab, Mapping):
        out = [""] * (max(vocab.values(), default=-1) + 1)
        for word, i in vocab.items():
            out[int(i)] = str(word)
        return out
    if isinstance(vocab, (str, bytes)):
        raise AdapterError("vocab must be a list of tokens (index -> token) or a dict (token -> index)")
    return [str(v) for v in vocab]


def _split_texts(texts: Any, labels: Any, names: list[str] | None) -> tuple[list[str], list[int | None]]:
    items = list(texts)
    if labels is None and items and all(isinstance(t, (tuple, list)) and len(t) == 2 for t in items):
        items, labels = [t[0] for t in items], [t[1] for t in items]
    if not all(isinstance(t, str) for t in items):
        raise AdapterError("texts must be strings (or (text, label) pairs)")
    if labels is None:
        return items, [None] * len(items)
    labels = list(labels.tolist() if isinstance(labels, torch.Tensor) else labels)
    if len(labels) != len(items):
        raise AdapterError(f"{len(items)} texts but {len(labels)} labels")
    index: dict[str, int] = {n: i for i, n in enumerate(names or [])}
    out: list[int | None] = []
    for y in labels:
        if y is None:
            out.append(None)
        elif isinstance(y, str):
            if y not in index:
                raise AdapterError(f"label {y!r} is not one of the classes")
            out.append(index[y])
        else:
            out.append(int(y) if int(y) >= 0 else None)
    return items, out


def source_from_texts(
    texts: Sequence[Any],
    model: nn.Module,
    tokenizer: Tokenizer,
    vocab: Sequence[str] | Mapping[str, int],
    pad_index: int,
    labels: Sequence[Any] | None = None,
    classes: ClassesArg = None,
    *,
    layer: LayerArg = None,
    batch_size: int = 32,
    max_tokens: int | None = MAX_TOKENS,
    pad_first: bool = False,
    score: ScoreArg = "softmax",
    device: str | torch.device | None = None,
    name: str | None = None,
    loss_func: Any = None,
) -> Source:
    """A :class:`Source` over a torch text classifier and texts (see :func:`from_texts`)."""
    if batch_size < 1:
        raise AdapterError("batch_size must be at least 1")
    names = read_classes(classes)
    items, ys = _split_texts(texts, labels, names)
    if not items:
        raise AdapterError("texts is empty")
    words = _vocab_list(vocab)
    model = prepare_model(model, device)
    batches = TextBatches(items, ys, tokenizer, len(words), pad_index, batch_size, max_tokens, pad_first)
    return text_source(
        model,
        batches,
        words,
        pad_index,
        names,
        score_function(score),
        layer=layer,
        n_examples=len(items),
        name=name,
        loss_func=loss_func,
    )


def from_texts(
    texts: Sequence[Any],
    model: nn.Module,
    tokenizer: Tokenizer,
    vocab: Sequence[str] | Mapping[str, int],
    pad_index: int,
    labels: Sequence[Any] | None = None,
    classes: ClassesArg = None,
    *,
    layer: LayerArg = None,
    batch_size: int = 32,
    max_tokens: int | None = MAX_TOKENS,
    pad_first: bool = False,
    score: ScoreArg = "softmax",
    device: str | torch.device | None = None,
    name: str | None = None,
    loss_func: Any = None,
    **visualizer_kwargs: Any,
) -> AttributionVisualizer:
    """A visualizer over a torch text classifier: ``model(ids)`` on (N, T) token ids -> class scores.

    ``texts``: strings (or (text, label) pairs); ``tokenizer``: text -> token ids; ``vocab``: the
    tokens by id (a list, or a dict token -> id); ``pad_index``: the padding token's id (the
    baseline). ``labels``: class indices or class names; ``classes``: names in the model's output
    order. ``layer``: the token embedding layer (a name or the module; default the first
    ``nn.Embedding``). Texts are read ``batch_size`` at a time, cut to ``max_tokens`` and padded to
    the longest of their batch (``pad_first``: on the left). Other keyword arguments go to
    :class:`insights_app.AttributionVisualizer`. See the module docstring for how tokens are
    attributed.
    """
    return source_from_texts(
        texts,
        model,
        tokenizer,
        vocab,
        pad_index,
        labels,
        classes,
        layer=layer,
        batch_size=batch_size,
        max_tokens=max_tokens,
        pad_first=pad_first,
        score=score,
        device=device,
        name=name,
        loss_func=loss_func,
    ).visualizer(**visualizer_kwargs)
