"""How many examples go to one captum call: measured per model and method, not guessed.

The engine's rule (rows per forward pass within ``internal_batch_size`` and a byte bound) is
where it starts: it keeps memory bounded and was the fastest rule on resnet18. It is not the
fastest everywhere: captum's per-call work (Gauss-Legendre nodes, hooks, argument checks)
costs a tiny model more than its passes, so on captum's CIFAR example net at 32x32 one call for
a page of 4 beat one call per example. So each (method and arguments, input shape) tries the
rule and its multiples of two, up to the page, on its first pages (each on two of them, in turn;
a larger size only while the last doubling paid), keeps the best time per example of each,
and from then on uses the fastest. Nothing is remembered across processes; one visualizer's
engines each hold their own (no global state).

Results whose bits must not depend on timing (precompute: the local and the Ray executor must
store the same bytes, and a batch's make-up can change a float's last bit) use the rule alone,
inside :meth:`CallSizes.static`.

:class:`CallPolicy` is the engine's side: the static rule, the rows of one forward pass, the
memory bound on a calibrated call, what one example costs at its own size, and the calls a
batch is split into.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..dataset import ExampleBatch
from ..errors import ValidationError
from ..limits import MAX_EVALS_PER_EXAMPLE

if TYPE_CHECKING:
    from ..methods import MethodSpec

# Model-input bytes (float32) one captum call may expand to, over all its rows: beyond this,
# activations too large for the allocator to keep cost page faults on every call.
CALL_INPUT_BYTES = 16 * 2**20
CALL_GRADIENT_BYTES = 64 * 2**20  # a calibrated call's rows x passes x input bytes, at most
# Model-input bytes of one forward pass that batches rows itself (Integrated Gradients' steps, the
# noise tunnel's samples): at 224x224 that is 6 rows. Measured on one CPU thread, 50-step Integrated
# Gradients of one example took 950 ms with 64 rows per pass on mobilenet_v3_small and 500 ms with 6;
# 11 s and 2.9 s on efficientnet_b0: larger passes' activations are mapped afresh (page faults) on
# every pass.
PASS_INPUT_BYTES = 4 * 2**20

TRIES = 2  # batches per candidate before it is judged (its best call counts: noise only adds)
MAX_FACTOR = 16  # candidates go up to 16x the rule (and never past the byte bound)


@dataclass
class Calibration:
    candidates: list[int]
    best_per_example: dict[int, float] = field(default_factory=dict)  # size -> seconds per example
    batches: dict[int, int] = field(default_factory=dict)  # size -> batches handed that size while exploring
    chosen: int | None = None


class CallSizes:
    """Per key: the examples per call to use now (exploring first, then the fastest)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[Hashable, Calibration] = {}
        self._static = 0  # > 0: inside static(), the rule alone

    @contextlib.contextmanager
    def static(self) -> Iterator[None]:
        """Within: the static rule for every batch (deterministic batches, whatever was measured)."""
        with self._lock:
            self._static += 1
        try:
            yield
        finally:
            with self._lock:
                self._static -= 1

    def choose(self, key: Hashable, rule: int, cap: int, n: int) -> int:
        """Examples per call for a batch of ``n`` (``rule``: the engine's static rule; ``cap``: the most
        that memory allows)."""
        rule = max(1, rule)
        if n <= rule:
            return rule  # the whole batch is one call either way
        with self._lock:
            if self._static:
                return rule
            cal = self._by_key.get(key)
            if cal is None:
                sizes, size = [], rule
                while size <= max(rule, min(cap, rule * MAX_FACTOR)):
                    sizes.append(size)
                    size *= 2
                cal = self._by_key[key] = Calibration(sizes)
            if cal.chosen is not None:
                return cal.chosen
            active, settled = _active(cal)
            waiting = [size for size in active if size <= n and cal.batches.get(size, 0) < TRIES]
            if waiting:
                # Round robin over the batches, least tried first: a model's first batch is slow
                # (cnn32, Integrated Gradients: 15.8 ms per example against 10.3 warm), and when it
                # held every try of one size, that size lost to slower ones for good.
                size = min(waiting, key=lambda s: (cal.batches.get(s, 0), s))
                cal.batches[size] = cal.batches.get(size, 0) + 1
                return size
            measured = {
                size: cal.best_per_example[size] for size in active if size <= n and size in cal.best_per_example
            }
            if not measured:
                return rule
            best = min(measured, key=measured.__getitem__)
            if settled:
                cal.chosen = best
            return best  # else a larger candidate waits for a larger batch

    def record(self, key: Hashable, size: int, examples: int, seconds: float) -> None:
        """One call of ``size`` examples per call took ``seconds`` for ``examples`` (a last, smaller
        call of a batch says less about its size and is not counted)."""
        if examples != size or examples <= 0:
            return
        with self._lock:
            cal = self._by_key.get(key)
            if cal is None or cal.chosen is not None or size not in cal.candidates:
                return
            per = seconds / examples
            cal.best_per_example[size] = min(per, cal.best_per_example.get(size, per))

    def describe(self) -> dict[str, dict[str, object]]:
        """What was measured and chosen (for debugging and the benchmark's notes)."""
        with self._lock:
            return {
                str(k): {
                    "chosen": c.chosen,
                    "ms_per_example": {s: round(t * 1000, 2) for s, t in c.best_per_example.items()},
                }
                for k, c in self._by_key.items()
            }


def _active(cal: Calibration) -> tuple[list[int], bool]:
    """The candidates explored so far, and whether exploring is over.

    Sizes are tried upwards two at a time: the next doubling is tried only once every size
    so far is measured and the largest of them was the fastest. A larger call that did not pay
    ends it, so that a model whose rule is right pays for one slower size, not for all: the
    benchmark's mobilenet_v3_small Occlusion pages (4 examples at 224x224) took 1.87x captum's
    best while two and four examples per call were both tried.
    """
    cands = cal.candidates
    for k in range(2, len(cands) + 1):
        active = cands[:k]
        if any(cal.batches.get(s, 0) < TRIES or s not in cal.best_per_example for s in active):
            return active, False
        best = cal.best_per_example
        if best[active[-1]] > min(best[s] for s in active[:-1]):
            return active, True  # the last doubling did not pay
    return list(cands), all(cal.batches.get(s, 0) >= TRIES and s in cal.best_per_example for s in cands)


def row_bytes(inputs: Sequence[torch.Tensor]) -> int:
    """Bytes of one example's model inputs, counted as float32 (what the batching bounds measure)."""
    return 4 * sum(int(x[0].numel()) for x in inputs if x.dim() > 0 and x.shape[0] > 0)


@dataclass
class CallPolicy:
    """How one engine splits work into captum calls and forward passes (its model's image inputs
    and ``internal_batch_size`` fixed), with what :class:`CallSizes` measured."""

    internal_batch_size: int
    image_inputs: tuple[int, ...]
    sizes: CallSizes = field(default_factory=CallSizes)

    def image_hw(self, inputs: Sequence[torch.Tensor]) -> tuple[int, int]:
        """(H, W) of the first image input of a batch ((1, 1) when there is none)."""
        return next(
            (
                (int(x.shape[-2]), int(x.shape[-1]))
                for i, x in enumerate(inputs)
                if i in self.image_inputs and x.dim() >= 3
            ),
            (1, 1),
        )

    def cost_problem(self, spec: MethodSpec, params: dict[str, Any], inputs: Sequence[torch.Tensor]) -> str | None:
        """Why these arguments cannot run on these examples at their own size (None when they can).

        The request was checked against the dataset's first image; a dataset mixing sizes has
        examples where the same arguments cost more, or where a window does not fit."""
        if not self.image_inputs:
            return None
        h, w = self.image_hw(inputs)
        try:
            evals = int(spec.cost(params, (h, w)))
        except ValidationError as exc:
            return str(exc)
        if evals > MAX_EVALS_PER_EXAMPLE:
            return (
                f"arguments: {spec.name} would cost {evals} forward passes per example at {h}x{w} "
                f"(limit {MAX_EVALS_PER_EXAMPLE})"
            )
        return None

    def rows_per_pass(self, inputs: Sequence[torch.Tensor]) -> int:
        """Rows of one forward pass for the methods that batch their own passes: at most
        ``internal_batch_size``, and at most ``PASS_INPUT_BYTES`` of model inputs."""
        return max(1, min(self.internal_batch_size, PASS_INPUT_BYTES // max(1, row_bytes(inputs))))

    def examples_per_call(self, spec: MethodSpec, params: dict[str, Any], inputs: Sequence[torch.Tensor]) -> int:
        """How many examples one captum call attributes: as many as keep the rows of each of its
        forward passes (rows per example x examples) within ``internal_batch_size``. An
        example adds ``n_steps`` rows to Integrated Gradients' passes, but only
        ``perturbations_per_eval`` to Occlusion's (whatever its window count).

        Beyond that a bigger call is no faster, and on a CPU slower: measured with 64 small
        images, Integrated Gradients (50 steps) took 1.5x as long in one call as in one call per
        example, because captum keeps every step's gradients of the whole call before summing.
        The bound also caps memory for methods that have no batch size of their own. Large
        inputs are bounded by bytes too (``CALL_INPUT_BYTES``): with resnet18 at 224x224,
        Integrated Gradients (16 steps) on 4 examples in one call (64 rows, 38 MB of inputs)
        took 11.4 s, 3.1 s of it in a million page faults for its activations; one example
        per call (16 rows) took 9.0 s.

        A randomized method's draws for one example depend on the batch it runs in, so it runs
        one example per call: each result then depends only on the example and the seed, and
        a page, a re-attribution and a cache hit all show the same map (captum called on that
        example alone after seeding gives it too).
        """
        if spec.randomized:
            return 1
        hw = self.image_hw(inputs)
        try:
            evals = int((spec.rows or spec.cost)(params, hw))
        except Exception:  # an estimate that cannot be made: batch as before
            evals = 1
        rows = max(1, min(self.internal_batch_size, CALL_INPUT_BYTES // max(1, row_bytes(inputs))))
        return max(1, rows // max(1, evals))

    def call_size(
        self, spec: MethodSpec, params: dict[str, Any], key: str, inputs: Sequence[torch.Tensor], n: int
    ) -> int:
        """Examples per captum call for a batch of ``n`` (``key``: the method and its arguments,
        ``arguments_key``): the static rule (:meth:`examples_per_call`) to start with, then what
        :class:`CallSizes` measured fastest for them and this input shape, within a memory bound
        (captum keeps every row's gradients of a call: at most ``CALL_GRADIENT_BYTES`` of them)."""
        rule = self.examples_per_call(spec, params, inputs)
        if spec.randomized or n <= rule:
            return rule
        hw = self.image_hw(inputs)
        try:
            evals = max(1, int((spec.rows or spec.cost)(params, hw)))
        except Exception:
            return rule
        cap = max(rule, CALL_GRADIENT_BYTES // max(1, evals * row_bytes(inputs)))
        return self.sizes.choose((key, _shapes(inputs)), rule, cap, n)

    def calls(
        self,
        spec: MethodSpec,
        params: dict[str, Any],
        key: str,
        batch: ExampleBatch,
        inputs: tuple[torch.Tensor, ...],
    ) -> Iterator[tuple[slice, ExampleBatch, tuple[torch.Tensor, ...]]]:
        """The captum calls for a batch whose model inputs are ``inputs``: (its rows, those
        examples, their model inputs, views of ``inputs``). Each call's time is recorded (after
        the consumer's work on it: the captum call) for :meth:`call_size`."""
        n = len(batch)
        chunk = self.call_size(spec, params, key, batch.inputs, n)
        shapes = (key, _shapes(batch.inputs))
        for start in range(0, n, chunk):
            rows = slice(start, min(start + chunk, n))
            began = time.perf_counter()
            if rows == slice(0, n):
                yield rows, batch, inputs
            else:
                yield rows, batch.select(rows), tuple(x[rows] for x in inputs)
            if not spec.randomized:
                self.sizes.record(shapes, chunk, rows.stop - rows.start, time.perf_counter() - began)


def _shapes(inputs: Sequence[torch.Tensor]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(x.shape[1:]) for x in inputs)
