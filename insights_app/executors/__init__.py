"""Executors of a precompute run: who runs the engines over the dataset's chunks.

``local`` (:mod:`.local`) runs every chunk through the visualizer's own engines, on each
model's compute thread; ``ray`` (:mod:`.ray_executor`, the optional ``ray`` extra) sends the
chunks that miss something in the store to Ray actors and writes what they send back. Both
walk the dataset in the same chunks, run the same ``Engine.run`` calls on them and fill the
same :class:`~insights_app.precompute.PrecomputeSummary`; this module holds what they share
(the validated run, reading a chunk, the progress and the failures). Ray is imported only by
``ray_executor``, and that module only when ``executor="ray"`` is asked for.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import DatasetError
from ..protocols import VisualizerLike

if TYPE_CHECKING:  # at run time, only the executors import torch (preflight imports ray_address, torch-free)
    from ..dataset import Example
    from ..precompute import PrecomputeSummary

EXECUTORS = ("local", "ray")
CHUNK = 16  # examples per engine call (the engine splits it into captum calls as it measures best)
PROGRESS_EVERY = CHUNK * 16  # examples between two plain progress lines (no terminal)
MAX_FAILURES_KEPT = 5


@dataclass
class Run:
    """One precompute run, validated: what to compute, and where its progress goes.

    ``specs`` are (MethodSpec, validated arguments) pairs, in the order given; ``summary`` is
    the run's :class:`~insights_app.precompute.PrecomputeSummary`, which the executor fills
    (``examples`` and ``failed``; the caller adds the counts read from the store).
    """

    vis: VisualizerLike
    specs: list[tuple[Any, dict[str, Any]]]
    targets: str
    limit: int | None
    summary: PrecomputeSummary
    bar: Any = None  # a tqdm bar, or None: plain lines through report (when progress is on)
    progress: bool = True
    report: Callable[[str], None] = print

    def chunk_size(self, first: int) -> int:
        return CHUNK if self.limit is None else max(0, min(CHUNK, self.limit - first))

    def read_chunk(self, first: int) -> list[Example]:
        """The examples ``first``, ``first + 1``, ... of the chunk starting there (fewer at the end).
        Unreadable positions of an indexed dataset (a file that does not decode) are passed over,
        so the next chunk starts after the last example's id."""
        from ..dataset import Unreadable  # here: importing this package stays torch-free (see above)

        n = self.chunk_size(first)
        out: list[Example] = []
        i = first
        while len(out) < n:
            try:
                out.append(self.vis.store.get(i))
            except IndexError:
                break
            except Unreadable:
                pass
            except DatasetError:
                raise
            i += 1
        return out

    def wanted_targets(self, chunk: Sequence[Example]) -> list[int | None]:
        """The class each example is asked to be attributed to (None: its top prediction)."""
        return [ex.label if self.targets == "label" else None for ex in chunk]

    def failure(self, example_id: Any, model: str, method: str, error: str) -> None:
        """One example that a model or method failed on (the first few messages are kept)."""
        self.summary.failed += 1
        if len(self.summary.failures) < MAX_FAILURES_KEPT:
            self.summary.failures.append(f"example {example_id}, {model}, {method}: {error}")

    def advance(self, n: int) -> None:
        """``n`` more examples done: the summary's count, the bar, or a line every few hundred."""
        before = self.summary.examples
        self.summary.examples = before + n
        if self.bar is not None:
            self.bar.update(n)
        elif self.progress and self.summary.examples // PROGRESS_EVERY > before // PROGRESS_EVERY:
            self.report(f"{self.summary.examples // PROGRESS_EVERY * PROGRESS_EVERY} examples done")


def progress_bar(vis: VisualizerLike, limit: int | None, progress: bool) -> Any:
    """tqdm on a terminal; None otherwise (plain progress lines then)."""
    if not progress or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    from ..triage.dataset_pass import known_size

    total = known_size(vis.store.dataset)
    if limit is not None:
        total = limit if total is None else min(total, limit)
    return tqdm(total=total, unit="ex", desc="precompute")


__all__ = ["CHUNK", "EXECUTORS", "Run", "progress_bar"]
