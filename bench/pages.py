"""One page of examples through the HTTP API against direct captum calls, interleaved.

For every (model, method, page size): the best of N raw captum calls on the page's
inputs (the whole page in one call, and one call per example), the best of N
non-streaming pages from the real waitress server, the best of N streaming pages (time to
the first example line and to the last), and a repeated request (a cache hit). Raw and
server measurements alternate so that they share the machine's noise. Every timed page is
a page the server has never seen (see :class:`~bench.models.RepeatingPool`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Set

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

    def to_json(self) -> Dict[str, Any]:
        out = asdict(self)
        out.update(raw_best_s=self.raw_best_s, ratio=self.ratio, cpu_ratio=self.cpu_ratio,
                   ratio_with_forward=self.ratio_with_forward,
                   overhead_per_example_s=self.overhead_per_example_s,
                   stream_ratio=self.stream_ratio,
                   first_fraction=self.first_fraction)
        return out


def _timed(fn: Callable[[], Any], cpu: Optional[List[float]] = None) -> float:
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
        self._warm: Set[str] = set()

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

    def body(self, case: Case, size: int, page: int) -> Dict[str, Any]:
        return {"method": case.method, "arguments": case.arguments, "page": page, "page_size": size}

    def check(self, doc: Dict[str, Any], size: int) -> None:
        examples = doc["examples"]
        if len(examples) != size:
            raise RuntimeError(f"expected {size} examples, got {len(examples)}")
        for ex in examples:
            model = ex["models"][0]
            if model["error"] or not model["attributions"] or not model["attributions"][0].get("image"):
                raise RuntimeError(f"example {ex['id']} has no attribution: {model['error']}")
            if ex["id"] % POOL_SIZE >= size:
                raise RuntimeError("the page does not show the raw call's inputs")

    def timed_page(self, case: Case, size: int, times: Dict[str, List[float]]) -> Dict[str, Any]:
        """Fetch one never-seen page (non-streaming), record its wall and CPU time, check it."""
        body = self.body(case, size, self.fresh_page(size))
        payload = b""

        def fetch() -> None:
            nonlocal payload
            payload = self.client.page_bytes(body)

        times["page"].append(_timed(fetch, times["page_cpu"]))
        self.check(json.loads(payload), size)
        return body

    def run(self, case: Case, size: int, repeats: int, log: Optional[Callable[[str], None]] = None,
            min_seconds: float = 0.0, max_repeats: int = 20) -> PageResult:
        """Measure one cell: at least ``repeats`` rounds, more (up to ``max_repeats``) while the
        cell has run for less than ``min_seconds``, so that cheap cells get more samples."""
        bm = self.bm
        x = bm.model_inputs(size)
        zeros = bm.baseline_zeros(size)
        with torch.no_grad():
            targets = bm.model(x).argmax(dim=1)  # the engine's targets: each example's top prediction

        def raw_batched() -> None:
            case.raw(x, zeros, targets)

        def raw_per_example() -> None:
            for i in range(size):
                case.raw(x[i:i + 1], zeros[i:i + 1], targets[i:i + 1])

        def raw_forward() -> None:
            with torch.no_grad():
                bm.model(x)

        if case.method not in self._warm:
            # Warm up both sides once per method (captum's first call, Flask's first request).
            self._warm.add(case.method)
            self.check(self.client.page(self.body(case, size, self.fresh_page(size))), size)
            raw_batched()
            case.raw(x[:1], zeros[:1], targets[:1])

        times: Dict[str, List[float]] = {k: [] for k in ("batched", "per_example", "forward", "page", "first",
                                                          "total", "raw_cpu", "page_cpu")}
        last_body: Dict[str, Any] = {}
        started = time.perf_counter()
        rounds = 0
        while rounds < repeats or (time.perf_counter() - started < min_seconds and rounds < max_repeats):
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

        hits_before = sum(e.results.hits for e in self.vis.engines)
        hit_times = []
        for _ in range(max(3, rounds)):
            t0 = time.perf_counter()
            payload = self.client.page_bytes(last_body)
            hit_times.append(time.perf_counter() - t0)
            self.check(json.loads(payload), size)
        if sum(e.results.hits for e in self.vis.engines) - hits_before < size:
            raise RuntimeError("the repeated request did not hit the result cache")

        result = PageResult(
            bm.key, case.method, case.describe(), size, rounds,
            min(times["batched"]), min(times["per_example"]), min(times["forward"]), min(times["page"]),
            min(times["first"]), min(times["total"]), min(hit_times), min(times["raw_cpu"]), min(times["page_cpu"]),
        )
        if log:
            log(f"  {bm.key:9s} {case.method:24s} n={size:<3d} raw {result.raw_best_s * 1e3:9.1f} ms  "
                f"page {result.server_page_s * 1e3:9.1f} ms  x{result.ratio:5.2f}  first "
                f"{result.stream_first_s * 1e3:8.1f} ms  hit {result.cache_hit_s * 1e3:7.1f} ms  "
                f"cpu x{result.cpu_ratio:5.2f}  ({rounds} rounds)")
        return result
