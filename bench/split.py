"""Where a page's time goes, cell after cell in one process.

``python -m bench`` reports each page over the faster raw captum call. When a cell misses only
inside the long benchmark process, this splits the page of that cell, run after the cells named
before it, into: the same raw captum call on the main thread and on the engine's compute thread,
the whole page (HTTP and JSON included), the engine's run (prediction, attribution, drawing) and
its captum call. The server's own part is the page less the engine's run.

    python -m bench.split --model resnet18 --steps Occlusion,IntegratedGradients,Occlusion --size 4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch

from .cases import Case, build_cases
from .models import MODELS, build_model
from .pages import PageBench, _timed

COLUMNS = ("raw_main", "raw_compute_thread", "page", "engine_run", "attribute")


class _Stopwatch:
    """Adds up the time of every call of one engine's bound method (set on that engine only)."""

    def __init__(self, engine: Any, name: str) -> None:
        self.total = 0.0
        inner = getattr(engine, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.total += time.perf_counter() - t0

        setattr(engine, name, timed)


def split_cell(bench: PageBench, case: Case, size: int, rounds: int) -> dict[str, dict[str, float]]:
    """Min and median seconds of each column over ``rounds`` fresh pages of ``size`` examples."""
    bm = bench.bm
    engine = bench.vis.engines[0]
    run_watch, attr_watch = _Stopwatch(engine, "run"), _Stopwatch(engine, "attribute")
    try:
        x, zeros = bm.model_inputs(size), bm.baseline_zeros(size)
        with torch.no_grad():
            targets = bm.model(x).argmax(dim=1)
        bench.client.page(bench.body(case, size, bench.fresh_page(size)))  # warm: call sizes, caches
        rows: list[list[float]] = []
        for _ in range(rounds):
            raw_main = _timed(lambda: case.raw(x, zeros, targets))
            raw_thread = _timed(lambda: engine.compute.run(case.raw, x, zeros, targets))
            run_watch.total = attr_watch.total = 0.0
            body = bench.body(case, size, bench.fresh_page(size))
            page = _timed(lambda: bench.client.page_bytes(body))
            rows.append([raw_main, raw_thread, page, run_watch.total, attr_watch.total])
    finally:
        for name in ("run", "attribute"):  # the class's methods again
            engine.__dict__.pop(name, None)
    cols = list(zip(*rows))
    return {name: {"min": min(c), "median": statistics.median(c)} for name, c in zip(COLUMNS, cols)}


def format_row(label: str, cell: dict[str, dict[str, float]]) -> str:
    parts = [f"{name} {cell[name]['min'] * 1e3:.1f}/{cell[name]['median'] * 1e3:.1f}" for name in COLUMNS]
    server = (cell["page"]["min"] - cell["engine_run"]["min"]) * 1e3
    ratio = cell["page"]["min"] / min(cell["raw_main"]["min"], cell["raw_compute_thread"]["min"])
    return f"{label:24s} " + "  ".join(parts) + f"  server {server:.1f}  page/raw {ratio:.2f}x"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.split", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="resnet18", choices=sorted(MODELS))
    ap.add_argument(
        "--steps",
        default="Occlusion,IntegratedGradients,Occlusion",
        help="methods in the order they run, each its first argument set",
    )
    ap.add_argument("--size", type=int, default=4, help="examples per page")
    ap.add_argument("--rounds", type=int, default=5, help="pages per step")
    a = ap.parse_args(argv)
    if a.size < 1 or a.rounds < 1:
        ap.error("--size and --rounds must be positive")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    bm = build_model(a.model)
    steps = [s for s in a.steps.split(",") if s]
    try:
        cases = {c.method: c for c in reversed(build_cases(bm, tuple(dict.fromkeys(steps))))}
    except ValueError as exc:
        print(f"python -m bench.split: {exc}", file=sys.stderr)
        return 2
    bench = PageBench(bm)
    try:
        print(f"{a.model}, pages of {a.size}, {a.rounds} rounds; ms as min/median", flush=True)
        for step in steps:
            print(format_row(step, split_cell(bench, cases[step], a.size, a.rounds)), flush=True)
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
