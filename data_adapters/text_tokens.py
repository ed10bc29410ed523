"""Token ids <-> a text feature's display-space input, and the batches of padded token ids.

The display-space input of one text is (T, E + 1) floats: each token's embedding offset from the
padding token's embedding, with the token id in the last column (see :mod:`data_adapters.text`).
:class:`TokenCodec` converts both ways and builds the :class:`TextFeature`; :class:`TextBatches`
tokenizes and pads texts a batch at a time; :class:`EmbeddedBatches` turns (ids, labels) batches
into the ``Batch`` objects the app reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from insights_app import Batch
from insights_app.features import TextFeature
from insights_app.tensors import plain

from .base import AdapterError, shown_as_strings
from .text_embedding import embedding_call

__all__ = [
    "MAX_TOKENS",
    "EmbeddedBatches",
    "ModelInput",
    "PadBaseline",
    "TextBatches",
    "TokenCodec",
    "Tokenizer",
    "make_codec",
    "pad_ids",
]
Tokenizer = Callable[[str], Any]
# Tokens kept per text by default: the display-space input is (T, E + 1) floats per example.
MAX_TOKENS = 512


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
            visualization_transform=shown_as_strings(self.words),
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

    @property
    def block_size(self) -> int | None:
        """Texts a batch holds, when the batches can be read by position (a list of texts), else None."""
        size = getattr(self.batches, "block_size", None)
        return size if isinstance(size, int) and self._n is not None else None

    def read_block(self, start: int, stop: int) -> Batch:
        """Texts ``start..stop-1`` at once, padded as their batch is (an
        :class:`insights_app.dataset.IndexedDataset` when :attr:`block_size` is not None)."""
        read = getattr(self.batches, "read_block", None)
        if read is None:
            raise TypeError("these batches cannot be read by position")
        ids, labels = read(start, stop)
        return self._batch(ids, labels)

    def _batch(self, ids: torch.Tensor, labels: Sequence[int | None]) -> Batch:
        ids = plain(ids).detach().cpu().long()
        emb = embedding_call(self.layer, ids)
        return Batch(self.codec.display(emb, ids), list(labels), additional_args=ids)

    def __iter__(self) -> Iterator[Batch]:
        for ids, labels in self.batches:
            yield self._batch(ids, labels)


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

    @property
    def block_size(self) -> int:
        """Texts padded together (a reader by position asks for aligned blocks of it)."""
        return self.batch_size

    def read_block(self, start: int, stop: int) -> tuple[torch.Tensor, list[int | None]]:
        """Texts ``start..stop-1``, tokenized and padded together."""
        seqs = [self.tokens(t) for t in self.texts[start:stop]]
        return pad_ids(seqs, self.pad_index, self.pad_first), list(self.labels[start : start + len(seqs)])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, list[int | None]]]:
        for start in range(0, len(self.texts), self.batch_size):
            yield self.read_block(start, start + self.batch_size)
