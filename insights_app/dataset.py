"""Batches and stable example ids over a user's dataset (an iterable of :class:`Batch`).

Captum Insights pulled batches from a single iterator and could neither go back nor
restart. Here every example gets a stable id (its position in iteration order); a
re-iterable source (list, DataLoader, anything whose ``iter()`` returns a fresh iterator)
is restarted to reach examples that fell out of the cache, and a one-shot generator is
kept in memory up to a bound, beyond which its oldest examples are reported as gone.

A source that knows its length and can be indexed (:class:`IndexedDataset`: an image folder,
a map-style torch Dataset, a fastai DataLoader's items, a list of texts) is never read forward:
any example is read at once, in the block of ``block_size`` positions that holds it (the same
rows its iteration batches together, so a padded text reads the same either way), and its
id is its position in the source.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from .cancel import Cancel, raise_if_cancelled
from .errors import DatasetError
from .tensors import concat_rows, plain, select_rows

log = logging.getLogger(__name__)


class Batch:
    """A batch of examples (captum.insights' ``Batch``).

    ``inputs``: a tensor, or a tuple of tensors (one per feature), batch first, in display
    space (the features' ``input_transforms`` make them model inputs). ``labels``: class
    indices (a list, where None is an unlabeled example, or a tensor, where a negative value
    is), or None. ``additional_args``: extra forward arguments.
    """

    def __init__(
        self,
        inputs: torch.Tensor | tuple[torch.Tensor, ...],
        labels: Any | None = None,
        additional_args: Any | None = None,
    ) -> None:
        self.inputs = inputs
        self.labels = labels
        self.additional_args = additional_args

    def __repr__(self) -> str:
        shapes = [tuple(x.shape) for x in _input_tuple(self.inputs)]
        return f"Batch(inputs={shapes}, labels={'yes' if self.labels is not None else 'no'})"


@dataclass
class Example:
    """One example, batch dimension removed; ``label`` is a class index or None."""

    id: int
    inputs: tuple[torch.Tensor, ...]
    label: int | None
    additional_args: Any
    # The per-row value an ExampleBatch memoized for this example (the store's fingerprint of its
    # inputs): kept here so that the next batch holding it, in this request or a later one, reuses it.
    memo: Any = field(default=None, repr=False, compare=False)


def _input_tuple(inputs: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    if isinstance(inputs, (tuple, list)) and all(isinstance(x, torch.Tensor) for x in inputs) and inputs:
        return tuple(inputs)
    raise DatasetError(f"Batch.inputs must be a tensor or a tuple of tensors, got {type(inputs).__name__}")


def _label(value: Any) -> int | None:
    """A class index, or None for "no label" (None, or a negative value in a label tensor)."""
    if value is None or (isinstance(value, (int, float)) and value < 0):
        return None
    return int(value)


@dataclass
class LabelCheck:
    """Labels held to the model's classes: an index outside ``0..n_classes-1`` is no label, said once.

    Without it a label 5 on a 3-class model shows as a class "5" that the model has not, and one of
    2**32 wraps onto class 0 in the pass's int32 records. One per example store (no global state)."""

    n_classes: int | None = None
    warned: bool = field(default=False, compare=False)

    def __call__(self, value: Any) -> int | None:
        label = _label(value)
        if label is None or self.n_classes is None or label < self.n_classes:
            return label
        if not self.warned:
            self.warned = True
            log.warning(
                "label %d is not one of the model's %d classes (0..%d): examples with such labels are shown unlabeled",
                label,
                self.n_classes,
                self.n_classes - 1,
            )
        return None


def _checked(batch: Any, check: LabelCheck | None = None) -> tuple[tuple[torch.Tensor, ...], int, list[int | None]]:
    """A Batch's inputs (plain CPU tensors), its size and its labels (None: no label), checked."""
    if not isinstance(batch, Batch):
        raise DatasetError(f"the dataset yielded {type(batch).__name__}; it must yield insights_app.Batch")
    inputs = tuple(plain(x.detach()).cpu() for x in _input_tuple(batch.inputs))
    n = int(inputs[0].shape[0]) if inputs[0].dim() > 0 else 0
    if any(x.dim() == 0 or x.shape[0] != n for x in inputs):
        raise DatasetError("all inputs of a Batch must share the batch dimension")
    labels: list[int | None] = [None] * n
    if batch.labels is not None:
        given = batch.labels
        if isinstance(given, torch.Tensor):
            given = plain(given).detach().cpu().reshape(-1).tolist()
        given = list(given)
        if len(given) != n:
            raise DatasetError(f"a Batch has {n} inputs but {len(given)} labels")
        labels = [_label(v) for v in given] if check is None else [check(v) for v in given]
    return inputs, n, labels


def batch_rows(batch: Any, first_id: int, check: LabelCheck | None = None) -> tuple[ExampleBatch, list[int | None]]:
    """A Batch as the model sees it, without splitting it into examples (the dataset pass)."""
    inputs, n, labels = _checked(batch, check)
    return ExampleBatch(list(range(first_id, first_id + n)), inputs, batch.additional_args), labels


def split_batch(batch: Any, first_id: int, check: LabelCheck | None = None) -> list[Example]:
    """A Batch -> its examples with consecutive ids starting at ``first_id``."""
    inputs, n, labels = _checked(batch, check)
    rows = list(zip(*(x.unbind(0) for x in inputs)))  # one call per input, not one index per example
    extra = batch.additional_args
    return [
        Example(first_id + j, rows[j], labels[j], None if extra is None else select_rows(extra, [j], n))
        for j in range(n)
    ]


@dataclass
class ExampleBatch:
    """Examples stacked for the model: one display-space tensor per input, batch first.

    Built once per request chunk (:meth:`stack`); the engine takes sub-batches of it with
    :meth:`select` (views of the same tensors for a slice of rows, copies for a list).
    """

    ids: list[int]
    inputs: tuple[torch.Tensor, ...]
    additional_args: Any = None
    # Per-row values computed once and carried into sub-batches (the store's example fingerprints).
    row_memo: list[Any] | None = field(default=None, repr=False, compare=False)
    # The examples stacked into this batch, when it was built from them: their own memos fill
    # ``row_memo``, and a computed one is handed back to them.
    sources: list[Example] | None = field(default=None, repr=False, compare=False)

    def memo(self, compute: Callable[[ExampleBatch], list[Any]]) -> list[Any]:
        """``compute(self)`` (one value per row), computed on first use; :meth:`select` keeps it, and
        so do the examples it was stacked from (another batch of them reuses it)."""
        if self.row_memo is None and self.sources is not None and all(e.memo is not None for e in self.sources):
            self.row_memo = [e.memo for e in self.sources]
        if self.row_memo is None:
            self.row_memo = compute(self)
            for e, value in zip(self.sources or (), self.row_memo):
                e.memo = value
        return self.row_memo

    @classmethod
    def stack(cls, examples: Sequence[Example]) -> ExampleBatch:
        if not examples:
            return cls([], ())
        inputs = tuple(torch.stack([e.inputs[i] for e in examples]) for i in range(len(examples[0].inputs)))
        extra = examples[0].additional_args
        if extra is not None:
            extra = concat_rows([e.additional_args for e in examples])
        return cls([e.id for e in examples], inputs, extra, sources=list(examples))

    @classmethod
    def groups(cls, examples: Sequence[Example]) -> list[tuple[list[int], ExampleBatch]]:
        """Examples stacked by input shape: (their positions in ``examples``, their batch), in order
        of first appearance. A dataset may mix image sizes; one batch cannot."""
        by_shape: OrderedDict[tuple[Any, ...], list[int]] = OrderedDict()
        for i, ex in enumerate(examples):
            by_shape.setdefault(tuple(tuple(x.shape) for x in ex.inputs), []).append(i)
        return [(index, cls.stack([examples[i] for i in index])) for index in by_shape.values()]

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, rows: slice | Sequence[int]) -> ExampleBatch:
        """The examples at ``rows`` (a slice gives views of the same tensors)."""
        if isinstance(rows, slice):
            index = list(range(len(self.ids)))[rows]
            inputs = tuple(x[rows] for x in self.inputs)
        else:
            index = list(rows)
            if index == list(range(len(self.ids))):
                return self
            inputs = tuple(x[index] for x in self.inputs)
        return ExampleBatch(
            [self.ids[i] for i in index],
            inputs,
            select_rows(self.additional_args, index, len(self.ids)),
            None if self.row_memo is None else [self.row_memo[i] for i in index],
            None if self.sources is None else [self.sources[i] for i in index],
        )


@dataclass
class Block:
    """Positions ``start..`` of an indexed dataset read at once: a Batch of the rows it could read
    (``positions``: the position of each row) and the positions it could not, with why (an
    unreadable image file: the folder skips it, so its id shows nothing)."""

    batch: Batch | None
    positions: list[int]
    missing: dict[int, str] = field(default_factory=dict)


@runtime_checkable
class IndexedDataset(Protocol):
    """A dataset of Batch that knows its length and reads any stretch of it at once.

    ``len()`` counts positions (examples, or files that may turn out unreadable);
    ``read_block(start, stop)`` gives positions ``start..stop-1`` as one :class:`Batch` (every
    row present) or a :class:`Block`; ``block_size`` is the stretch the dataset's iteration
    batches together (readers ask for aligned blocks of it, so an example reads the same either
    way). A dataset that cannot say (an iterable Dataset) has ``block_size`` None.
    """

    block_size: int | None

    def __len__(self) -> int: ...

    def read_block(self, start: int, stop: int) -> Batch | Block: ...


def indexed(dataset: Any) -> IndexedDataset | None:
    """``dataset`` when it can be read by position (see :class:`IndexedDataset`), else None."""
    if not isinstance(dataset, IndexedDataset):
        return None
    size = dataset.block_size
    if not isinstance(size, int) or size < 1:
        return None
    try:
        len(dataset)
    except TypeError:
        return None
    return dataset


def as_block(got: Batch | Block, start: int) -> Block:
    """What ``read_block`` returned, as a Block (a Batch holds every position from ``start`` on)."""
    if isinstance(got, Block):
        return got
    _, n, _ = _checked(got)
    return Block(got, list(range(start, start + n)))


class Unreadable(DatasetError):
    """A position of an indexed dataset that holds nothing to show (an unreadable file): pages skip it."""

    def __init__(self, ex_id: int, why: str) -> None:
        super().__init__(f"example {ex_id} cannot be read: {why}")
        self.ex_id = ex_id


def _example_bytes(ex: Example) -> int:
    return sum(int(x.element_size() * x.nelement()) for x in ex.inputs)


class NotReadYet(LookupError):
    """An example further than one request may read ahead of what has been read so far."""

    def __init__(self, ex_id: int, read_to: int, max_read: int) -> None:
        super().__init__(
            f"example {ex_id} is beyond the {read_to} examples read so far: one request reads at most {max_read} more"
        )
        self.ex_id = ex_id
        self.read_to = read_to
        self.max_read = max_read


class ExampleStore:
    """Random access by id over an iterable of Batch, with a bounded example cache.

    Bounded by count and by bytes: 4096 examples are 48 MB of 32x32 images but 2.4 GB of
    224x224 ones, so the byte bound keeps large images from filling memory. Reading ahead is
    bounded too: one call reads at most ``max_read`` examples beyond the furthest ever read
    (an endless or huge dataset cannot keep a request reading for minutes), and a read holds
    only the source's lock, so examples already in the cache are served meanwhile.
    """

    def __init__(
        self,
        dataset: Iterable[Any],
        max_cached_examples: int = 4096,
        max_cached_bytes: int = 256 * 2**20,
        max_read: int = 1024,
        n_classes: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.labels = LabelCheck(n_classes)  # labels outside the classes are no label
        self.max_cached = max(1, int(max_cached_examples))
        self.max_cached_bytes = max(1, int(max_cached_bytes))
        self.max_read = max(1, int(max_read))
        self._cached_bytes = 0
        self.indexed = indexed(dataset)  # read by position, at once (None: read forward)
        self._iter: Iterator[Any] | None = None
        if self.indexed is None:
            try:
                self._iter = iter(dataset)
            except TypeError as exc:
                raise DatasetError("the dataset must be an iterable of Batch") from exc
        self.reiterable = self.indexed is not None or self._iter is not dataset
        self._next_id = 0
        self._cache: OrderedDict[int, Example] = OrderedDict()
        self._cache_lock = threading.Lock()  # the cache: held for dictionary operations only
        self._read_lock = threading.Lock()  # the source: held while reading from it
        # Known once the end was reached, or at once for an indexed dataset.
        self.length: int | None = None if self.indexed is None else len(self.indexed)
        self.read_to = 0  # examples read so far: the furthest the source has been read
        self._missing: dict[int, str] = {}  # an indexed dataset's positions found unreadable, with why
        self.failure: str | None = None  # a one-shot source that raised: its message, for ever
        self.restarts = 0
        self.errors = 0

    def _advance(self) -> bool:
        """Pull one batch; False at the end of the dataset."""
        if self._iter is None:
            if not self.reiterable:
                return False
            self._iter = iter(self.dataset)
            self._next_id = 0
            self.restarts += 1
        try:
            batch = next(self._iter)
        except StopIteration:
            return self._reached_end()
        except RuntimeError as exc:
            if isinstance(exc.__cause__, StopIteration):
                # A generator doing `while True: next(it)` ends like this (PEP 479): the
                # captum.insights tutorials did exactly that, so it means "the end".
                return self._reached_end()
            return self._fail(exc)
        except Exception as exc:
            return self._fail(exc)
        examples = split_batch(batch, self._next_id, self.labels)
        self._next_id += len(examples)
        self.read_to = max(self.read_to, self._next_id)
        self._keep(examples)
        return True

    def _keep(self, examples: list[Example]) -> None:
        """Cache ``examples`` (just read), evicting the least recently used beyond the bounds."""
        with self._cache_lock:
            for ex in examples:
                old = self._cache.pop(ex.id, None)
                if old is not None:
                    self._cached_bytes -= _example_bytes(old)
                self._cache[ex.id] = ex
                self._cached_bytes += _example_bytes(ex)
            # The byte bound never evicts the batch just read (it is what the caller asked for).
            while len(self._cache) > self.max_cached or (
                self._cached_bytes > self.max_cached_bytes and len(self._cache) > len(examples)
            ):
                _, old = self._cache.popitem(last=False)
                self._cached_bytes -= _example_bytes(old)

    def _read_indexed(self, source: IndexedDataset, ex_id: int) -> Example:
        """(Holding the read lock) the aligned block holding ``ex_id``, read at once and cached."""
        size = source.block_size or 1
        start = ex_id // size * size
        stop = min(start + size, self.length if self.length is not None else start + size)
        try:
            block = as_block(source.read_block(start, stop), start)
        except DatasetError:
            self.errors += 1
            raise
        except Exception as exc:
            self.errors += 1
            raise DatasetError(
                f"the dataset raised {type(exc).__name__} reading examples {start}..{stop - 1}: {exc}"
            ) from exc
        self._missing.update(block.missing)
        examples: list[Example] = []
        if block.batch is not None:
            examples = split_batch(block.batch, 0, self.labels)
            if len(examples) != len(block.positions):
                raise DatasetError(f"the dataset read {len(examples)} examples for {len(block.positions)} positions")
            for ex, position in zip(examples, block.positions):
                ex.id = position
        self.read_to = max(self.read_to, stop)
        self._keep(examples)
        found = next((ex for ex in examples if ex.id == ex_id), None)
        if found is not None:
            return found
        if ex_id in self._missing:
            raise Unreadable(ex_id, self._missing[ex_id])
        raise DatasetError(f"example {ex_id} was not in the block the dataset read")

    def _reached_end(self) -> bool:
        self.length = self._next_id
        self._iter = None
        return False

    def _fail(self, exc: Exception) -> bool:
        self.errors += 1
        self._iter = None
        failed_at = self._next_id
        message = f"the dataset raised {type(exc).__name__} after example {failed_at}: {exc}"
        if self.reiterable:
            # The next access restarts from the beginning rather than reusing a broken iterator.
            self._next_id = 0
        else:
            self.failure = message  # a generator cannot be restarted: what it did not yield never comes
        raise DatasetError(message) from exc

    def _cached(self, ex_id: int) -> Example | None:
        with self._cache_lock:
            ex = self._cache.get(ex_id)
            if ex is not None:
                self._cache.move_to_end(ex_id)
            return ex

    def get(self, ex_id: int, cancel: Cancel | None = None) -> Example:
        """The example with this id; raises IndexError past the end, DatasetError if it cannot be
        read (or is gone), NotReadYet if it is further ahead than one request reads. ``cancel``
        is asked between the batches a read pulls (a restart may re-read many)."""
        if ex_id < 0:
            raise IndexError(ex_id)
        ex = self._cached(ex_id)
        if ex is not None:
            return ex
        with self._read_lock:
            ex = self._cached(ex_id)  # read by another request meanwhile
            if ex is not None:
                return ex
            if self.length is not None and ex_id >= self.length:
                raise IndexError(ex_id)
            if self.indexed is not None:
                if ex_id in self._missing:
                    raise Unreadable(ex_id, self._missing[ex_id])
                raise_if_cancelled(cancel)
                return self._read_indexed(self.indexed, ex_id)
            if self.failure is not None and ex_id >= self._next_id:
                raise DatasetError(self.failure)
            if ex_id >= self.read_to + self.max_read:
                raise NotReadYet(ex_id, self.read_to, self.max_read)
            if ex_id < self._next_id:  # already passed and evicted from the cache
                if not self.reiterable:
                    raise DatasetError(
                        f"example {ex_id} is no longer available: the dataset is a one-shot generator and only "
                        f"{self.max_cached} examples are kept; pass a re-iterable dataset (a list or DataLoader)"
                    )
                self._iter = None  # restart from the beginning
            while True:
                raise_if_cancelled(cancel)
                if self._iter is None and not self.reiterable:
                    raise IndexError(ex_id)
                if not self._advance():
                    raise IndexError(ex_id)
                ex = self._cached(ex_id)
                if ex is not None:
                    return ex
                if self._next_id > ex_id:
                    raise DatasetError(f"example {ex_id} could not be kept in the cache")

    def get_many(self, ids: Sequence[int], cancel: Cancel | None = None) -> list[Example]:
        return [self.get(i, cancel) for i in ids]

    def reachable(self, ex_id: int) -> bool:
        """Whether :meth:`get` may read ``ex_id`` now without :class:`NotReadYet` (an indexed dataset
        reaches every id; a forward reader, those before the bound one request reads to)."""
        if self.indexed is not None or self._cached(ex_id) is not None:
            return True
        return ex_id < self.read_to + self.max_read

    def exists(self, ex_id: int, cancel: Cancel | None = None) -> bool:
        try:
            self.get(ex_id, cancel)
            return True
        except IndexError:
            return False
