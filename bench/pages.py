"""One page of examples through the HTTP API against direct captum calls, interleaved.

For every (model, method, page size): the best of N raw captum calls on the page's
inputs (the whole page in one call, and one call per example), the best of N
non-streaming pages from the real waitress server, the best of N streaming pages (time to
the first example line and to the last), and a repeated request (a cache hit). Raw and
server measurements alternate so that they share the machine's noise. Every timed page is
a page the server has never seen (see :class:`~bench.models.RepeatingPool`).

Before a cell runs, its cost is estimated from the model passes its method makes (a
:class:`Calibration` times one forward+backward and one forward pass of the model on one
example): a cell over the time budget is skipped (a :class:`SkippedCell`), and a cell
whose captum call takes seconds is warmed up on one example and timed over one round
unless more are asked for.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from insights_app import AttributionVisualizer
from insights_app.features import ImageFeature

from .cases import Case
from .client import Client
from .models import POOL_SIZE, BenchModel, RepeatingPool


@dataclass
class PageResult:
    model: str
    method: str
    arguments: str
    page_size: int
    repeats: int
    raw_batched_s: float
    raw_per_example_s: float
    raw_forward_s: float  # one no-grad forward pass on the page: what picking the targets costs
    server_page_s: float
    stream_first_s: float
    stream_total_s: float
    cache_hit_s: float
    # Process CPU time (all threads: the server's and the client's), less sensitive than wall
    # time to other work on a busy machine.
    raw_best_cpu_s: float
    server_page_cpu_s: float
    passes: int = 0  # model passes (rows) one captum call on the page makes
    backward: bool = True  # forward+backward passes (else forward only)
    estimated_call_s: float = 0.0  # what the calibration predicted for one captum call on the page
    # Each round's best server page over its best captum call, the median over the rounds: the two
    # sides of one round ran seconds apart, so a slower or faster spell of a shared machine cancels.
    median_ratio: float = 0.0

    @property
    def raw_best_s(self) -> float:
        return min(self.raw_batched_s, self.raw_per_example_s)

    @property
    def ratio(self) -> float:
        return self.server_page_s / self.raw_best_s

    @property
    def cpu_ratio(self) -> float:
        return self.server_page_cpu_s / self.raw_best_cpu_s

    @property
    def ratio_with_forward(self) -> float:
        """Against raw captum plus the forward pass a user needs to know what to attribute."""
        return self.server_page_s / (self.raw_best_s + self.raw_forward_s)

    @property
    def overhead_per_example_s(self) -> float:
        """What the page costs beyond the best raw call, per example (rendering, JSON, HTTP, ...)."""
        return (self.server_page_s - self.raw_best_s) / self.page_size

    @property
    def stream_ratio(self) -> float:
        return self.stream_total_s / self.raw_best_s

    @property
    def first_fraction(self) -> float:
        return self.stream_first_s / self.stream_total_s

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            raw_best_s=self.raw_best_s,
            ratio=self.ratio,
            cpu_ratio=self.cpu_ratio,
            ratio_with_forward=self.ratio_with_forward,
            overhead_per_example_s=self.overhead_per_example_s,
            stream_ratio=self.stream_ratio,
            first_fraction=self.first_fraction,
        )
        return out


LIGHT_WARMUP_CALL_S = 2.0  # a cell whose call is estimated over this is warmed up on one example
HEAVY_CALL_S = 10.0  # ... and over this, timed over one round unless more are asked for
CALLS_PER_ROUND = 5  # raw batched, page, raw per example, page, streamed page


@dataclass
class Calibration:
    """One forward+backward and one no-grad forward pass of the model on one example."""

    forward_backward_s: float
    forward_s: float

    @classmethod
    def measure(cls, bm: BenchModel, rows: int = 1, repeats: int = 1) -> Calibration:
        """Per example, the best of ``repeats`` passes on ``rows`` examples at once (after one to
        warm up); a model whose pass on one example takes under 50 ms is measured again, five
        times on 16 (one example's pass is then mostly fixed costs)."""
        x = bm.model_inputs(rows)
        fb, fwd = [], []
        for i in range(repeats + 1):  # the first warms the model up
            xg = x.clone().requires_grad_(True)
            t0 = time.perf_counter()
            bm.model(xg)[:, 0].sum().backward()
            bm.sync()
            fb.append(time.perf_counter() - t0)
            if i:
                t0 = time.perf_counter()
                with torch.no_grad():
                    bm.model(x)
                bm.sync()
                fwd.append(time.perf_counter() - t0)
        cal = cls(min(fb[1:]) / rows, min(fwd) / rows)
        if rows == 1 and cal.forward_backward_s < 0.050:
            return cls.measure(bm, 16, 5)
        return cal

    def pass_s(self, backward: bool) -> float:
        return self.forward_backward_s if backward else self.forward_s


@dataclass
class CellEstimate:
    """What one cell is expected to cost: passes per captum call, seconds per call and per cell."""

    passes: int
    backward: bool
    call_s: float
    cell_s: float
    rounds: int
    light_warmup: bool

    def describe(self) -> str:
        kind = "forward+backward" if self.backward else "forward"
        return (
            f"~{self.passes} {kind} passes per call, ~{self.call_s:.1f} s per call, ~{self.cell_s:.0f} s for the "
            f"cell (at least {self.rounds} round{'s' if self.rounds != 1 else ''})"
        )


def estimate(
    case: Case,
    bm: BenchModel,
    size: int,
    cal: Calibration,
    repeats: int | None,
    default_repeats: int,
    min_seconds: float,
    warm: bool,
    max_repeats: int = 20,
) -> CellEstimate:
    """The cost of one cell: ``repeats`` rounds when given, else ``default_repeats`` (one for a
    cell whose call takes over ``HEAVY_CALL_S``), more while under ``min_seconds``; the warm-up
    when ``warm`` (the method's first cell)."""
    passes, backward = case.passes(bm.side, size)
    call_s = passes * cal.pass_s(backward) + size * cal.forward_s  # the page's prediction pass too
    rounds = repeats or (1 if call_s > HEAVY_CALL_S else default_repeats)
    light = call_s > LIGHT_WARMUP_CALL_S
    warm_s = 0.0 if not warm else (2 * call_s / size if light else 2 * call_s + call_s / size)
    round_s = CALLS_PER_ROUND * call_s
    timed_s = max(rounds * round_s, min(min_seconds, max_repeats * round_s))
    return CellEstimate(passes, backward, call_s, warm_s + timed_s, rounds, light)


@dataclass
class SkippedCell:
    """A cell that was not run: its estimate was over the time budget."""

    model: str
    method: str
    arguments: str
    page_size: int
    passes: int
    backward: bool
    estimated_call_s: float
    estimated_cell_s: float
    budget_s: float
    skipped: str = "skipped: over the time budget"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _timed(fn: Callable[[], Any], cpu: list[float] | None = None) -> float:
    """Wall time of ``fn()``; its process CPU time is appended to ``cpu`` when given."""
    c0 = time.process_time()
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(time.process_time() - c0)
    return wall


def softmax(out: torch.Tensor) -> torch.Tensor:
    return torch.softmax(out, dim=1)


def make_visualizer(bm: BenchModel) -> AttributionVisualizer:
    """The visualizer a user would build: raw 0..1 images, Normalize as the input transform."""
    feature = ImageFeature("image", input_transforms=[bm.normalize])
    return AttributionVisualizer(bm.model, list(bm.classes), [feature], RepeatingPool(bm.images), score_func=softmax)


class PageBench:
    """A visualizer served on 127.0.0.1 for one model, and a client for it."""

    def __init__(self, bm: BenchModel) -> None:
        self.bm = bm
        self.vis = make_visualizer(bm)
        self.port = self.vis.serve(port=0, quiet=True)
        self.client = Client(self.port)
        self._next_id = 0
        self._warm: set[str] = set()

    def close(self) -> None:
        self.client.close()
        time.sleep(0.1)  # let waitress finish with the closed connection before its loop stops
        self.vis.stop()

    def fresh_page(self, size: int) -> int:
        """A page index never requested before whose examples are pool images 0..size-1.

        The dataset's own loading (here: slicing a tensor) is done before timing, as raw
        captum is also handed ready inputs.
        """
        step = math.lcm(POOL_SIZE, size)  # a page start that is also a pool start
        start = -(-self._next_id // step) * step
        self._next_id = start + size
        self.vis.store.get(start + size)  # also the one after the page (the server checks it exists)
        return start // size

    def body(self, case: Case, size: int, page: int) -> dict[str, Any]:
        return {"method": case.method, "arguments": case.arguments, "page": page, "page_size": size}

    def check(self, doc: dict[str, Any], size: int) -> None:
        examples = doc["examples"]
        if len(examples) != size:
            raise RuntimeError(f"expected {size} examples, got {len(examples)}")
        for ex in examples:
            model = ex["models"][0]
            if model["error"] or not model["attributions"] or not model["attributions"][0].get("image"):
                raise RuntimeError(f"example {ex['id']} has no attribution: {model['error']}")
            if ex["id"] % POOL_SIZE >= size:
                raise RuntimeError("the page does not show the raw call's inputs")

    def timed_page(self, case: Case, size: int, times: dict[str, list[float]]) -> dict[str, Any]:
        """Fetch one never-seen page (non-streaming), record its wall and CPU time, check it."""
        body = self.body(case, size, self.fresh_page(size))
        payload = b""

        def fetch() -> None:
            nonlocal payload
            payload = self.client.page_bytes(body)

        times["page"].append(_timed(fetch, times["page_cpu"]))
        self.check(json.loads(payload), size)
        return body

    def is_warm(self, case: Case) -> bool:
        return case.method in self._warm

    def run(
        self,
        case: Case,
        size: int,
        repeats: int,
        log: Callable[[str], None] | None = None,
        min_seconds: float = 0.0,
        max_repeats: int = 20,
        estimate: CellEstimate | None = None,
        max_seconds: float | None = None,
    ) -> PageResult:
        """Measure one cell: at least ``repeats`` rounds, more (up to ``max_repeats``) while the
        cell has run for less than ``min_seconds``, so that cheap cells get more samples. No
        round after the first starts once another would take the cell past ``max_seconds``.
        With an ``estimate`` whose call takes seconds, the warm-up is on one example."""
        bm = self.bm
        x = bm.model_inputs(size)
        zeros = bm.baseline_zeros(size)
        with torch.no_grad():
            targets = bm.model(x).argmax(dim=1)  # the engine's targets: each example's top prediction

        def raw_batched() -> None:
            case.raw(x, zeros, targets)
            bm.sync()

        def raw_per_example() -> None:
            for i in range(size):
                case.raw(x[i : i + 1], zeros[i : i + 1], targets[i : i + 1])
            bm.sync()

        def raw_forward() -> None:
            with torch.no_grad():
                bm.model(x)
            bm.sync()

        started = time.perf_counter()
        if case.method not in self._warm:
            # Warm up both sides once per method (captum's first call, Flask's first request); on
            # one example where a call takes seconds (its first-call costs are then noise).
            self._warm.add(case.method)
            warm_size = 1 if estimate is not None and estimate.light_warmup else size
            self.check(self.client.page(self.body(case, warm_size, self.fresh_page(warm_size))), warm_size)
            if warm_size == size:
                raw_batched()
            case.raw(x[:1], zeros[:1], targets[:1])

        times: dict[str, list[float]] = {
            k: [] for k in ("batched", "per_example", "forward", "page", "first", "total", "raw_cpu", "page_cpu")
        }
        last_body: dict[str, Any] = {}
        timing_started = time.perf_counter()
        rounds = 0
        round_s = 0.0
        while rounds < repeats or (time.perf_counter() - timing_started < min_seconds and rounds < max_repeats):
            if rounds and max_seconds is not None and time.perf_counter() - started + round_s > max_seconds:
                break  # another round would take the cell over its time budget
            round_started = time.perf_counter()
            rounds += 1
            # Each round times as many server pages as raw calls (two of each), in alternation, so
            # that neither side gets more chances at a quiet moment of a shared machine.
            times["batched"].append(_timed(raw_batched, times["raw_cpu"]))
            last_body = self.timed_page(case, size, times)
            times["per_example"].append(_timed(raw_per_example, times["raw_cpu"]))
            last_body = self.timed_page(case, size, times)
            times["forward"].append(_timed(raw_forward))
            st = self.client.stream(self.body(case, size, self.fresh_page(size)))
            if st.examples != size:
                raise RuntimeError(f"stream gave {st.examples} examples, expected {size}")
            times["first"].append(st.first_s)
            times["total"].append(st.total_s)
            round_s = time.perf_counter() - round_started

        hits_before = sum(e.results.hits for e in self.vis.engines)
        hit_times = []
        for _ in range(max(3, rounds)):
            t0 = time.perf_counter()
            payload = self.client.page_bytes(last_body)
            hit_times.append(time.perf_counter() - t0)
            self.check(json.loads(payload), size)
        if sum(e.results.hits for e in self.vis.engines) - hits_before < size:
            raise RuntimeError("the repeated request did not hit the result cache")

        round_ratios = [
            min(times["page"][2 * i : 2 * i + 2]) / min(times["batched"][i], times["per_example"][i])
            for i in range(rounds)
        ]
        result = PageResult(
            bm.key,
            case.method,
            case.describe(),
            size,
            rounds,
            min(times["batched"]),
            min(times["per_example"]),
            min(times["forward"]),
            min(times["page"]),
            min(times["first"]),
            min(times["total"]),
            min(hit_times),
            min(times["raw_cpu"]),
            min(times["page_cpu"]),
            *(
                (estimate.passes, estimate.backward, estimate.call_s)
                if estimate
                else case.passes(bm.side, size) + (0.0,)
            ),
            median_ratio=statistics.median(round_ratios),
        )
        if log:
            log(
                f"  {bm.key:9s} {case.method:24s} n={size:<3d} raw {result.raw_best_s * 1e3:9.1f} ms  "
                f"page {result.server_page_s * 1e3:9.1f} ms  x{result.ratio:5.2f} "
                f"(median x{result.median_ratio:4.2f})  "
                f"first {result.stream_first_s * 1e3:8.1f} ms  hit {result.cache_hit_s * 1e3:7.1f} ms  "
                f"cpu x{result.cpu_ratio:5.2f}  ({rounds} rounds)"
            )
        return result
