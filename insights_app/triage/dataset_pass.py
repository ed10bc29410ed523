"""The dataset pass: every model's prediction of every example, once, for triage.

A thread of its own reads the dataset in the batches it comes in (a fresh iteration, so the
pages' reader is left alone) and hands each batch to every model's compute thread: one job
per batch, so a page request waits behind one batch at most, never behind the pass. What it
keeps per example is in :mod:`.records`. It can be cancelled (it stops after the batch in
hand) and started again: it resumes where it stopped, from the same iterator when it has
one, else from a fresh one that skips what is done. A dataset that raises halfway fails the
pass with where and why, and what was read stays; a one-shot generator cannot be read twice,
so the pass covers the examples the pages have read and says so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..dataset import Batch, ExampleBatch, ExampleStore, as_block, batch_rows
from ..engine import fingerprints
from ..errors import Busy, ComputationError, DatasetError
from .losses import LossChoice, LossFn, choose_loss
from .records import KEEP_TOP, ModelRows, PassRecords, Snapshot, empty_rows, join_rows
from .stored_rows import loss_key, restored_choice, rows_with_store

log = logging.getLogger(__name__)

PASS_MAX_ROWS = 512  # rows per forward pass: a dataset's larger batches are split
DEFAULT_PASS_LIMIT = 1_000_000  # examples covered at most (AttributionVisualizer's max_pass_examples)
BUSY_RETRY_S = 0.05  # a model's compute thread refusing more work (pages waiting): try again after this


@dataclass
class PassProgress:
    """Where the pass stands (what the page's progress bar and the progress events say)."""

    state: str  # "idle" (never started), "running", "paused" (cancelled), "done", "failed"
    done: int  # examples covered
    total: int | None  # examples the pass will cover, when known
    rate: float | None  # examples per second over the current run
    eta_s: float | None  # seconds left, when the total and the rate are known
    message: str = ""  # why it failed, or what it could not cover
    complete: bool = False  # every example up to the limit (or the end) is covered
    limit: int = DEFAULT_PASS_LIMIT
    failed_examples: int = 0  # examples some model failed on

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "rate": None if self.rate is None else round(self.rate, 1),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "message": self.message,
            "complete": self.complete,
            "limit": self.limit,
            "failed_examples": self.failed_examples,
        }


@dataclass
class Hole:
    """A position of an indexed dataset that holds nothing (an unreadable file): a failed row."""

    why: str


Batches = Iterator[tuple[ExampleBatch | Hole, list[int | None]]]


def known_size(dataset: Any) -> int | None:
    """The number of examples of a dataset without reading it, when that is cheap to know."""
    n_examples = getattr(dataset, "n_examples", None)  # the adapters' datasets say it
    if isinstance(n_examples, int):
        return n_examples
    inner = getattr(dataset, "dataset", None)  # a torch DataLoader (its len() counts batches)
    if inner is not None:
        try:
            return int(len(inner))
        except TypeError:
            return None
    if isinstance(dataset, (list, tuple)) and all(isinstance(b, Batch) for b in dataset):
        total = 0
        for b in dataset:
            first = b.inputs if isinstance(b.inputs, torch.Tensor) else b.inputs[0]
            total += int(first.shape[0]) if first.dim() else 0
        return total
    return None


class DatasetPass:
    """One visualizer's dataset pass over all its models (start, cancel, progress, records)."""

    def __init__(
        self,
        engines: Sequence[Any],
        store: ExampleStore,
        n_classes: int,
        loss_funcs: Sequence[LossFn | None],
        limit: int = DEFAULT_PASS_LIMIT,
    ) -> None:
        self.engines = list(engines)
        self.store = store
        self.limit = max(1, int(limit))
        self.loss_funcs = list(loss_funcs)
        self.losses: list[LossChoice | None] = [None] * len(self.engines)
        self.records = PassRecords(len(self.engines), min(KEEP_TOP, max(1, n_classes)))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._finished = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._iter: Batches | None = None
        self._state = "idle"
        self._message = ""
        self._complete = False
        self._run_started = 0.0
        self._run_first = 0  # examples done when this run started (the rate counts this run only)

    # ------------------------------------------------------------ control
    def start(self) -> PassProgress:
        """Start the pass, or resume it; a running or complete pass is left as it is."""
        with self._lock:
            if self._state == "running" or self._complete:
                return self._progress()
            self._stop.clear()
            self._state = "running"
            self._message = ""
            self._run_started = time.monotonic()
            self._run_first = self.records.n
            self._thread = threading.Thread(target=self._run, name="insights-app dataset pass", daemon=True)
            self._thread.start()
            return self._progress()

    def start_if_idle(self) -> PassProgress:
        """Start the pass if it never ran (what reading it implies); a paused, failed or finished one
        stays as the user left it."""
        with self._lock:
            idle = self._state == "idle"
        return self.start() if idle else self.progress()

    def cancel(self) -> PassProgress:
        """Stop after the batch in hand; :meth:`start` resumes from there."""
        self._stop.set()
        with self._lock:
            return self._progress()

    def wait(self, timeout: float | None = None) -> PassProgress:
        """Wait until the pass is not running (or ``timeout`` seconds), then its progress."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._finished:
            while self._state == "running":
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._finished.wait(timeout=0.5 if left is None else min(0.5, left))
            return self._progress()

    def halt(self, timeout: float = 5.0) -> bool:
        """Cancel, and wait up to ``timeout`` seconds for the thread to stop (the visualizer is
        stopping: torch must not compute when the interpreter exits). Whether it stopped."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return True

    # ------------------------------------------------------------ reading
    def progress(self) -> PassProgress:
        with self._lock:
            return self._progress()

    def snapshot(self) -> Snapshot:
        return self.records.snapshot()

    def _total(self) -> int | None:
        if self._complete:
            return self.records.n
        size = self.store.length if self.store.length is not None else known_size(self.store.dataset)
        if not self.store.reiterable:
            size = self.store.read_to if size is None else min(size, self.store.read_to)
        return None if size is None else min(size, self.limit)

    def _progress(self) -> PassProgress:
        done = self.records.n
        total = self._total()
        rate = eta = None
        if self._state == "running":
            elapsed = time.monotonic() - self._run_started
            if elapsed > 0.2 and done > self._run_first:
                rate = (done - self._run_first) / elapsed
                if total is not None:
                    eta = max(0.0, (total - done) / rate)
        failed = 0
        if self.records.n:
            failed = int(self.records.snapshot().failed.any(axis=0).sum())
        return PassProgress(self._state, done, total, rate, eta, self._message, self._complete, self.limit, failed)

    # ------------------------------------------------------------ the thread
    def _finish(self, state: str, message: str = "", complete: bool = False) -> None:
        with self._finished:
            self._state = state
            self._message = message
            self._complete = complete
            self._finished.notify_all()

    def _run(self) -> None:
        try:
            if self._iter is None:
                if self.store.indexed is not None:  # read by position: the ids the pages give
                    self._iter = self._indexed_batches(self.records.n)
                else:
                    self._iter = self._batches(self.records.n) if self.store.reiterable else self._read_batches()
            while True:
                if self._stop.is_set():
                    self._finish("paused", "Cancelled: press Start to resume where it stopped.")
                    return
                if self.records.n >= self.limit:
                    self._finish(
                        "done", f"Stopped at the limit of {self.limit} examples (max_pass_examples).", complete=True
                    )
                    return
                try:
                    batch, labels = next(self._iter)
                except StopIteration:
                    self._iter = None
                    self._finish("done", self._end_note(), complete=self.store.reiterable)
                    return
                if isinstance(batch, Hole):
                    self.records.append(np.full(1, -1, np.int32), [self._hole_rows(batch.why) for _ in self.engines])
                    continue
                keep = self.limit - self.records.n
                if len(batch) > keep:
                    batch, labels = batch.select(slice(0, keep)), labels[:keep]
                label_t = torch.tensor([-1 if lab is None else lab for lab in labels], dtype=torch.long)
                rows = [self._model_rows(m, batch, label_t) for m in range(len(self.engines))]
                if rows and any(r is None for r in rows):  # stopped while waiting for a busy model
                    continue
                self.records.append(label_t.numpy().astype(np.int32), rows)  # type: ignore[arg-type]
        except DatasetError as exc:
            self._iter = None
            self._finish("failed", f"{exc} (the {self.records.n} examples before it are kept; Start tries again)")
        except Exception as exc:  # a bug, or something no layer below turned into a message
            log.exception("the dataset pass failed")
            self._iter = None
            self._finish("failed", f"the dataset pass failed: {type(exc).__name__}: {exc}")

    def _end_note(self) -> str:
        if self.store.reiterable:
            return ""
        return (
            f"The dataset is a one-shot generator, so the pass covers only the {self.records.n} examples read "
            "so far (paging forward reads more; Start covers them). Pass a list or a DataLoader to cover "
            "the whole dataset."
        )

    def _batches(self, skip: int) -> Batches:
        """The dataset's batches from a fresh iteration, split to PASS_MAX_ROWS, from example ``skip`` on."""
        position = 0
        iterator = iter(self.store.dataset)
        while True:
            try:
                raw = next(iterator)
            except StopIteration:
                return
            except RuntimeError as exc:
                if isinstance(exc.__cause__, StopIteration):  # a generator ending by PEP 479 (see dataset.py)
                    return
                raise DatasetError(f"the dataset raised {type(exc).__name__} after example {position}: {exc}") from exc
            except Exception as exc:
                raise DatasetError(f"the dataset raised {type(exc).__name__} after example {position}: {exc}") from exc
            batch, labels = batch_rows(raw, position, self.store.labels)
            n = len(batch)
            start = max(0, skip - position)
            position += n
            for i in range(start, n, PASS_MAX_ROWS):
                yield batch.select(slice(i, i + PASS_MAX_ROWS)), labels[i : i + PASS_MAX_ROWS]

    def _indexed_batches(self, skip: int) -> Batches:
        """An indexed dataset's blocks from position ``skip`` on, read by position (so that each
        example's id is the one the pages give it), an unreadable position as a :class:`Hole`."""
        source = self.store.indexed
        assert source is not None
        total, size = len(source), source.block_size or 1
        start = skip // size * size
        while start < total:
            stop = min(start + size, total)
            try:
                block = as_block(source.read_block(start, stop), start)
            except DatasetError:
                raise
            except Exception as exc:
                raise DatasetError(
                    f"the dataset raised {type(exc).__name__} reading examples {start}..{stop - 1}: {exc}"
                ) from exc
            rows, labels = batch_rows(block.batch, 0, self.store.labels) if block.batch is not None else (None, [])
            row_of = {position: j for j, position in enumerate(block.positions)}
            position = max(start, skip)
            while position < stop:
                j = row_of.get(position)
                if rows is None or j is None:
                    yield Hole(block.missing.get(position, "the dataset did not read it")), [None]
                    position += 1
                    continue
                n = 1
                while position + n < stop and n < PASS_MAX_ROWS and row_of.get(position + n) == j + n:
                    n += 1
                part = rows.select(slice(j, j + n))
                part.ids = list(range(position, position + n))
                yield part, labels[j : j + n]
                position += n
            start = stop

    def _hole_rows(self, why: str) -> ModelRows:
        rows = empty_rows(1, self.records.k)
        rows.failed[0] = True
        rows.errors[0] = why
        return rows

    def _read_batches(self) -> Batches:
        """A one-shot generator: the examples the pages' reader has read, as far as it keeps them."""
        ex_id = self.records.n
        while ex_id < self.store.read_to:
            ids = range(ex_id, min(self.store.read_to, ex_id + 64))
            try:
                examples = [self.store.get(i) for i in ids]
            except (DatasetError, IndexError, LookupError) as exc:
                raise DatasetError(f"the pass cannot read example {ex_id} again: {exc}") from exc
            for index, group in ExampleBatch.groups(examples):
                yield group, [examples[i].label for i in index]
            ex_id += len(examples)

    def _model_rows(self, m: int, batch: ExampleBatch, labels: torch.Tensor) -> ModelRows | None:
        """Model ``m``'s rows of ``batch``: from the store where it has them, else computed (and stored)."""
        model_store = self.engines[m].store
        if model_store is None:
            return self._computed_rows(m, batch, labels)
        key = loss_key(self.loss_funcs[m])
        if self.losses[m] is None:
            known = model_store.pass_loss(key)
            if known is not None:
                self.losses[m] = restored_choice(known[0], known[1], self.loss_funcs[m])
        before = self.losses[m]

        def compute(missing: list[int]) -> ModelRows | None:
            return self._computed_rows(m, batch.select(missing), labels[missing])

        rows = rows_with_store(model_store, key, batch, labels, self.records.k, fingerprints, compute)
        choice = self.losses[m]
        if choice is not None and choice is not before:
            model_store.save_pass_loss(key, choice.name, choice.note)
        return rows

    def _computed_rows(self, m: int, batch: ExampleBatch, labels: torch.Tensor) -> ModelRows | None:
        """Model ``m``'s rows of ``batch`` on its compute thread; the examples it fails on are flagged."""
        engine = self.engines[m]
        while True:
            try:
                return engine.compute.run(self._rows, m, batch, labels)
            except Busy:  # pages are waiting for this model: they go first
                if self._stop.wait(BUSY_RETRY_S):
                    return None
            except ComputationError as exc:
                if len(batch) == 1:
                    rows = empty_rows(1, self.records.k)
                    rows.failed[0] = True
                    rows.errors[0] = str(exc)
                    return rows
                parts = [self._computed_rows(m, batch.select([j]), labels[j : j + 1]) for j in range(len(batch))]
                if any(p is None for p in parts):
                    return None
                return join_rows(parts)  # type: ignore[arg-type]

    def _rows(self, m: int, batch: ExampleBatch, labels: torch.Tensor) -> ModelRows:
        """(On the compute thread) one forward pass, then what the records keep of it."""
        engine = self.engines[m]
        raw, scores = engine.outputs(batch)
        n, width = scores.shape
        k = min(self.records.k, width)
        finite = torch.isfinite(scores).all(dim=1)
        all_finite = bool(finite.all())  # the usual case: no masking (measured: 0.37 ms of 12 per batch of 32)
        values, classes = torch.topk(scores if all_finite else torch.where(finite[:, None], scores, 0.0), k, dim=1)
        label_scores = scores.gather(1, labels.clamp(0, width - 1)[:, None])[:, 0]
        valid = (labels >= 0) & (labels < width)
        if not all_finite or not bool(valid.all()):
            label_scores = torch.where(valid & finite, label_scores, torch.full_like(label_scores, float("nan")))
        losses = self._losses(m, raw, labels, n)
        if not all_finite:
            losses = torch.where(finite, losses, torch.full_like(losses, float("nan")))
        failed = (~finite).numpy()
        errors = {
            int(j): f"prediction failed for {engine.name}: the model's output for this example is not finite "
            "(NaN or infinity)"
            for j in np.flatnonzero(failed)
        }
        return ModelRows(
            classes.numpy().astype(np.int32),
            values.numpy().astype(np.float32),
            label_scores.numpy().astype(np.float32),
            losses.numpy().astype(np.float32),
            failed,
            errors,
        )

    def _losses(self, m: int, raw: torch.Tensor, labels: torch.Tensor, n: int) -> torch.Tensor:
        """Model ``m``'s loss of each example (NaN where there is none); the loss is chosen on the first batch."""
        nan = torch.full((n,), float("nan"))
        choice = self.losses[m]
        if choice is None:  # chosen on the batch's finite rows; a batch without one leaves it to the next
            choice = self.losses[m] = choose_loss(self.engines[m].score_func, self.loss_funcs[m], raw.cpu())
            if choice is None:
                return nan
        labeled = labels >= 0
        count = int(labeled.sum())
        if choice.fn is None or not count:
            return nan
        every = count == n
        rows = labeled.to(raw.device)
        try:  # the labeled rows only: a user's loss need not know our "no label" (-1)
            with torch.no_grad():
                out = (
                    choice.fn(raw, labels.to(raw.device))
                    if every
                    else choice.fn(raw[rows], labels.to(raw.device)[rows])
                )
            out = torch.as_tensor(out).detach().float().cpu()
        except Exception as exc:
            self.losses[m] = LossChoice(None, "", f"No loss: the loss function raised {type(exc).__name__}: {exc}")
            return nan
        if out.shape != (count,):
            self.losses[m] = LossChoice(
                None,
                "",
                f"No loss: the loss function returned shape {tuple(out.shape)} for "
                f"{count} examples; it must return one loss per example (reduction "
                "'none')",
            )
            return nan
        if every:
            return out
        nan[labeled] = out
        return nan
