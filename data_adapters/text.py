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
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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

log = logging.getLogger(__name__)
__all__ = [
    "EmbeddingInputModel",
    "TokenCodec",
    "EmbeddedBatches",
    "TextBatches",
    "find_embedding_layer",
    "from_texts",
    "source_from_texts",
    "text_source",
]
LayerArg = None | str | nn.Module
Tokenizer = Callable[[str], Any]
# Tokens kept per text by default: the display-space input is (T, E + 1) floats per example.
MAX_TOKENS = 512


# ---------------------------------------------------------------- the embedding layer


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


# ---------------------------------------------------------------- display space and its feature


class TokenCodec:
    """Token ids <-> the display-space input of a text feature, and the feature's transforms."""

    def __init__(self, vocab: Sequence[str], pad_index: int, pad_embedding: torch.Tensor) -> None:
        self.vocab = [str(v) for v in vocab]
        self.pad_index = int(pad_index)
        self.pad_embedding = pad_embedding.detach().float().cpu().reshape(-1)

    @property
    def dim(self) -> int:
        return int(self.pad_embedding.numel())

    def display(self, embeddings: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """(N, T, E) embeddings and (N, T) ids -> (N, T, E + 1): offsets from the padding embedding, ids last."""
        return torch.cat([embeddings - self.pad_embedding, ids.to(embeddings.dtype)[..., None]], dim=-1)

    def ids(self, x: torch.Tensor) -> torch.Tensor:
        """The token ids a display-space input carries (its last column)."""
        return x[..., -1].round().long()

    def words(self, example: torch.Tensor) -> list[str]:
        """One example's tokens as the vocabulary's strings (the TextFeature's visualization_transform)."""
        n = len(self.vocab)
        return [self.vocab[i] if 0 <= i < n else f"<{i}>" for i in self.ids(example).tolist()]

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        """Display space -> the embedding layer's output (the id column dropped, the padding embedding added)."""
        return x[..., :-1] + self.pad_embedding.to(x.device, x.dtype)

    def pad_baseline(self, x: torch.Tensor) -> torch.Tensor:
        """The same sequence with every token the padding token (its display-space input)."""
        base = torch.zeros_like(x)
        base[..., -1] = float(self.pad_index)
        return base

    def feature(self, name: str = "text") -> TextFeature:
        return TextFeature(
            name,
            baseline_transforms=[PadBaseline(self)],
            input_transforms=[ModelInput(self)],
            visualization_transform=self.words,
        )


class ModelInput:
    """The text feature's input transform (``apply_to_batch``: one call per batch, see ``transform_batch``)."""

    def __init__(self, codec: TokenCodec) -> None:
        self.codec = codec

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.codec.model_input(x)

    def apply_to_batch(self, batch: torch.Tensor) -> torch.Tensor:
        return self.codec.model_input(batch)

    def __repr__(self) -> str:
        return f"ModelInput(embedding dim {self.codec.dim}, pad index {self.codec.pad_index})"


class PadBaseline:
    """The text feature's baseline transform: every token replaced by the padding token."""

    def __init__(self, codec: TokenCodec) -> None:
        self.codec = codec

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.codec.pad_baseline(x)

    def __repr__(self) -> str:
        return f"PadBaseline(pad index {self.codec.pad_index})"


def make_codec(layer: nn.Module, vocab: Sequence[str], pad_index: int) -> TokenCodec:
    if not 0 <= int(pad_index) < max(1, len(vocab)):
        raise AdapterError(f"pad_index {pad_index} is not an index of the vocabulary ({len(vocab)} tokens)")
    pad = embedding_call(layer, torch.tensor([[int(pad_index)]]))[0, 0]
    return TokenCodec(vocab, pad_index, pad)


# ---------------------------------------------------------------- batches


class EmbeddedBatches:
    """Re-iterable Batch view of (token ids (N, T), labels) batches: display-space inputs, the ids as
    ``additional_args``. ``batches`` is re-iterable (each ``iter()`` restarts it)."""

    def __init__(
        self,
        batches: Iterable[tuple[torch.Tensor, list[int | None]]],
        layer: nn.Module,
        codec: TokenCodec,
        n_examples: int | None = None,
    ) -> None:
        self.batches = batches
        self.layer = layer
        self.codec = codec
        self._n = n_examples

    @property
    def n_examples(self) -> int | None:
        return self._n

    def __len__(self) -> int:
        if self._n is None:
            raise TypeError("the number of examples is not known")
        return self._n

    def __iter__(self) -> Iterator[Batch]:
        for ids, labels in self.batches:
            ids = plain(ids).detach().cpu().long()
            emb = embedding_call(self.layer, ids)
            yield Batch(self.codec.display(emb, ids), list(labels), additional_args=ids)


def pad_ids(seqs: Sequence[Sequence[int]], pad_index: int, pad_first: bool = False) -> torch.Tensor:
    """Token id sequences -> one (N, T) tensor padded to the longest (at least one token)."""
    t = max([len(s) for s in seqs] + [1])
    out = torch.full((len(seqs), t), int(pad_index), dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            row = torch.as_tensor(list(s), dtype=torch.long)
            if pad_first:
                out[i, t - len(s) :] = row
            else:
                out[i, : len(s)] = row
    return out


class TextBatches:
    """Texts tokenized lazily, ``batch_size`` at a time, padded: (ids, labels) batches for EmbeddedBatches."""

    def __init__(
        self,
        texts: Sequence[str],
        labels: Sequence[int | None],
        tokenizer: Tokenizer,
        vocab_size: int,
        pad_index: int,
        batch_size: int = 32,
        max_tokens: int | None = MAX_TOKENS,
        pad_first: bool = False,
    ) -> None:
        self.texts, self.labels, self.tokenizer = texts, labels, tokenizer
        self.vocab_size, self.pad_index = int(vocab_size), int(pad_index)
        self.batch_size, self.max_tokens, self.pad_first = int(batch_size), max_tokens, bool(pad_first)

    def tokens(self, text: str) -> list[int]:
        try:
            ids = self.tokenizer(text)
        except Exception as exc:
            raise AdapterError(f"the tokenizer failed on {text[:40]!r}: {type(exc).__name__}: {exc}") from exc
        if isinstance(ids, torch.Tensor):
            ids = ids.reshape(-1).tolist()
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise AdapterError(
                f"the tokenizer gave token id {bad[0]}, outside the vocabulary ({self.vocab_size} tokens)"
            )
        return ids[: self.max_tokens] if self.max_tokens else ids

    def __iter__(self) -> Iterator[tuple[torch.Tensor, list[int | None]]]:
        for start in range(0, len(self.texts), self.batch_size):
            chunk = self.texts[start : start + self.batch_size]
            seqs = [self.tokens(t) for t in chunk]
            yield pad_ids(seqs, self.pad_index, self.pad_first), list(self.labels[start : start + len(chunk)])


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
