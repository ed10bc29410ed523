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
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field

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
