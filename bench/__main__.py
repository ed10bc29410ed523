"""``python -m bench``: the server against raw captum, rendering, memory and the dataset pass, in one run.

Prints markdown tables (and the targets met or missed); ``--json`` also writes every
number. ``--quick`` is a short run (a couple of minutes) for checking that it works; the
full run takes about 22 minutes on two CPU cores. See the README's Benchmarks section.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import DEFAULT_METHODS, report

ALL = "all methods"  # every method the model has arguments for (bench/cases.py)
# (page sizes, methods) per model: the default plan. resnet18 pages of 16 and 64 cost minutes per
# method on two CPU cores, so the default run has resnet18 at 16 for Saliency only. The other
# 224x224 models were sized by one forward+backward pass on one example at one thread on two
# shared cores: mobilenet_v3_small 0.05 s, efficientnet_b0 0.2-0.4 s, convnext_tiny 0.8 s, vit_b_16
# 2-3.6 s. Integrated Gradients (50 steps) is 200 of them per page of 4 and a cell makes five to
# seven such calls, so the default keeps what fits in about 20 minutes for the five models after
# cnn32/resnet18: every method at 4 and Saliency at 16 for mobilenet_v3_small and efficientnet_b0;
# Saliency at 4 and 16 and Occlusion at 4 for convnext_tiny; Saliency at 4 and 16 for vit_b_16.
# ``--plan full`` runs every model x method x {4, 16} (for a GPU: --device cuda); --sizes/--methods
# ask for more on any plan, and --max-cell-seconds skips what would not fit.
DEFAULT_PLAN = {
    "cnn32": [((4, 16, 64), ALL)],
    "lenet": [((4, 16), ALL)],
    "resnet18": [((4,), ALL), ((16,), ("Saliency",))],
    "mobilenet_v3_small": [((4,), ALL), ((16,), ("Saliency",))],
    "efficientnet_b0": [((4,), ALL), ((16,), ("Saliency",))],
    "convnext_tiny": [((4,), ("Saliency", "Occlusion")), ((16,), ("Saliency",))],
    "vit_b_16": [((4, 16), ("Saliency",))],
}
FULL_PLAN = {key: [((4, 16, 64) if key == "cnn32" else (4, 16), ALL)] for key in DEFAULT_PLAN}
QUICK_PLAN = {
    "cnn32": [((4, 16), ALL)],
    "lenet": [((4,), ALL)],
    "resnet18": [((4,), ("Saliency",))],
    **{key: [((4,), ("Saliency",))] for key in ("mobilenet_v3_small", "efficientnet_b0", "convnext_tiny", "vit_b_16")},
}
PLANS = {"default": DEFAULT_PLAN, "full": FULL_PLAN}
DEFAULT_MODELS = ["cnn32", "resnet18"]
SECTIONS = ("pages", "render", "memory", "pass", "precompute", "stored")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ints(text: str) -> list[int]:
    try:
        values = [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="a short run: fewer sizes, methods and repeats")
    ap.add_argument(
        "--models",
        type=_csv,
        default=list(DEFAULT_MODELS),
        help=f"default {','.join(DEFAULT_MODELS)}; 'all', or any of {','.join(DEFAULT_PLAN)}",
    )
    ap.add_argument(
        "--methods",
        type=_csv,
        default=None,
        help=f"default: the plan's; any of {','.join(DEFAULT_METHODS)} (the models other than cnn32 and "
        "resnet18 have no NoiseTunnel(Saliency))",
    )
    ap.add_argument(
        "--sizes", type=_ints, default=None, help="page sizes for every model and method (default: the plan's)"
    )
    ap.add_argument(
        "--plan",
        choices=tuple(PLANS),
        default="default",
        help="the pages section's cells: 'default' fits two shared CPU cores (4,16,64 for cnn32, 4,16 "
        "for lenet, 4 for what the 224x224 models can afford and 16 for their Saliency; see "
        "bench/__main__.py); 'full': every model x method x {4,16}, for a GPU (--device cuda) or "
        "a long run",
    )
    ap.add_argument(
        "--max-cell-seconds",
        type=float,
        default=None,
        help="skip a pages cell whose estimated time is over this, and start no round that would "
        "take a cell past it (default: no limit)",
    )
    ap.add_argument(
        "--device",
        default="cpu",
        help="where the pages section's models run (both sides), e.g. cuda; the other sections stay "
        "on the CPU (default cpu)",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed rounds per cell, at least (the best is kept; default 2, 1 for a cell whose captum "
        "call is estimated over 10 s; more while a cell has run for under 8 s, up to 20)",
    )
    ap.add_argument("--sections", type=_csv, default=list(SECTIONS), help=",".join(SECTIONS))
    ap.add_argument("--memory-sizes", type=_ints, default=None, help="folder sizes (default 1000,10000,50000)")
    ap.add_argument("--memory-pages", type=int, default=None, help="pages read in each folder (default 20)")
    ap.add_argument(
        "--memory-sides",
        type=_ints,
        default=None,
        help="image sides the folders are loaded at (the files are 32x32; default 32,224)",
    )
    ap.add_argument(
        "--memory-dir",
        type=Path,
        default=None,
        help="where to generate the folders of the memory and pass sections (default /dev/shm when "
        "present, else the temp dir)",
    )
    ap.add_argument(
        "--pass-sizes",
        type=_ints,
        default=None,
        help="files in the dataset pass's two folders: the small CNN's at 32x32, resnet18's at 224x224 "
        "(default 50000,2000; --quick 5000,200)",
    )
    ap.add_argument(
        "--pass-rounds",
        type=int,
        default=None,
        help="rounds of the dataset pass and the raw loop, alternating (the best is kept; default 4 for "
        "the small CNN, 2 for resnet18; --quick 2)",
    )
    ap.add_argument(
        "--precompute-examples",
        type=int,
        default=None,
        help="generated images the precompute section computes (default 256; --quick 128)",
    )
    ap.add_argument(
        "--precompute-rounds",
        type=int,
        default=None,
        help="rounds of precompute and the plain captum loop, alternating (default 3; --quick 2)",
    )
    ap.add_argument(
        "--precompute-workers",
        type=_ints,
        default=None,
        help="Ray worker counts the precompute section runs, one run each (default 1,2)",
    )
    ap.add_argument(
        "--stored-rounds",
        type=int,
        default=None,
        help="fresh processes per visit mode in the stored section (vis.page and HTTP; default 5, --quick 3)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for both sides (default 1: stable on shared machines; 0: torch's choice)",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write every number to this file")
    a = ap.parse_args(argv)
    unknown = set(a.sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    if a.models == ["all"]:
        a.models = list(DEFAULT_PLAN)
    for m in a.models:
        if m not in DEFAULT_PLAN:
            ap.error(f"unknown model {m!r}: choose from {', '.join(DEFAULT_PLAN)} (or all)")
    if a.max_cell_seconds is not None and a.max_cell_seconds <= 0:
        ap.error("--max-cell-seconds must be positive")
    if a.methods:
        bad = [m for m in a.methods if m not in DEFAULT_METHODS]
        if bad:
            ap.error(f"unknown method(s) {', '.join(bad)}: choose from {', '.join(DEFAULT_METHODS)}")
    if a.repeats is not None and a.repeats < 1:
        ap.error("--repeats must be at least 1")
    if a.pass_rounds is not None and a.pass_rounds < 1:
        ap.error("--pass-rounds must be at least 1")
    if a.precompute_examples is not None and a.precompute_examples < 16:
        ap.error("--precompute-examples must be at least 16")
    if a.precompute_rounds is not None and a.precompute_rounds < 1:
        ap.error("--precompute-rounds must be at least 1")
    if a.stored_rounds is not None and a.stored_rounds < 1:
        ap.error("--stored-rounds must be at least 1")
    if a.pass_sizes is not None and len(a.pass_sizes) != 2:
        ap.error("--pass-sizes takes two sizes: the 32x32 folder's and the 224x224 folder's")
    return a


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def plan_cells(a: argparse.Namespace, key: str) -> list[tuple[str, int]]:
    """(method, page size) cells for model ``key``: the plan's (--quick: the quick one), or
    --sizes x --methods (each defaulting to the plan's) when asked; methods the model has no
    arguments for are left out."""
    from .cases import methods_of

    available = methods_of(key)
    plan = (QUICK_PLAN if a.quick else PLANS[a.plan])[key]
    if a.sizes or a.methods:  # what was asked, for every size and method
        plan = [
            (tuple(a.sizes or sorted({n for sizes, _ in plan for n in sizes})), tuple(a.methods) if a.methods else ALL)
        ]
    cells = [(m, n) for sizes, methods in plan for m in (available if methods == ALL else methods) for n in sizes]
    return [(m, n) for m, n in dict.fromkeys(cells) if m in available]


def run_pages(a: argparse.Namespace) -> list[Any]:
    from .cases import build_cases
    from .models import build_model
    from .pages import Calibration, PageBench, SkippedCell, estimate

    results: list[Any] = []
    default_repeats = 1 if a.quick else 2
    min_seconds = 0.5 if a.quick else 8.0
    for key in a.models:
        cells = plan_cells(a, key)
        if a.methods and len({m for m, _ in cells}) < len(a.methods):
            _log(
                f"  {key}: no arguments for {', '.join(m for m in a.methods if m not in {c for c, _ in cells})} "
                "(left out)"
            )
        if not cells:
            continue
        bm = build_model(key, device=a.device)
        cases: dict[str, list[Any]] = {}
        for case in build_cases(bm, tuple(dict.fromkeys(m for m, _ in cells))):
            cases.setdefault(case.method, []).append(case)
        cal = Calibration.measure(bm)
        _log(
            f"  {key}: one example's forward+backward pass {cal.forward_backward_s * 1e3:.1f} ms, forward pass "
            f"{cal.forward_s * 1e3:.1f} ms"
        )
        bench = PageBench(bm)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # captum: "Input Tensor 0 did not already require gradients"
                for method, size in cells:
                    for case in cases[method][:1] if a.quick else cases[method]:
                        est = estimate(
                            case, bm, size, cal, a.repeats, default_repeats, min_seconds, warm=not bench.is_warm(case)
                        )
                        _log(f"  {key:9s} {method:24s} n={size:<3d} ({case.describe()}): {est.describe()}")
                        if a.max_cell_seconds is not None and est.cell_s > a.max_cell_seconds:
                            _log(
                                f"  {key:9s} {method:24s} n={size:<3d} skipped: over the time budget "
                                f"({est.cell_s:.0f} s > {a.max_cell_seconds:.0f} s)"
                            )
                            results.append(
                                SkippedCell(
                                    key,
                                    method,
                                    case.describe(),
                                    size,
                                    est.passes,
                                    est.backward,
                                    est.call_s,
                                    est.cell_s,
                                    a.max_cell_seconds,
                                )
                            )
                            continue
                        results.append(
                            bench.run(
                                case,
                                size,
                                est.rounds,
                                log=_log,
                                min_seconds=min_seconds,
                                estimate=est,
                                max_seconds=a.max_cell_seconds,
                            )
                        )
        finally:
            bench.close()
    return results


def _workdir(a: argparse.Namespace) -> Path | None:
    """Where generated folders go: --memory-dir, else /dev/shm when present, else the temp dir."""
    if a.memory_dir is None and Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK):
        return Path("/dev/shm")
    return a.memory_dir


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    started = time.perf_counter()
    out: dict[str, Any] = {
        "machine": report.machine(a.device if "pages" in a.sections else "cpu"),
        "command": "python -m bench " + " ".join(argv or sys.argv[1:]),
    }
    pages = render = memory = passes = pre = stored = None
    if "pages" in a.sections:
        _log(f"pages: server vs raw captum ({'quick' if a.quick else a.plan} plan)")
        pages = run_pages(a)
        out["pages"] = [r.to_json() for r in pages]
    if "render" in a.sections:
        from . import rendering

        _log("rendering: one 224x224 image")
        render = rendering.run(
            number=5 if a.quick else 20, repeat=3 if a.quick else 5, captum_repeat=1 if a.quick else 3, log=_log
        )
        out["render"] = [r.to_json() for r in render]
    if "memory" in a.sections:
        from . import memory as mem

        sizes = a.memory_sizes or ([500, 2000] if a.quick else [1000, 10000, 50000])
        pages_n = a.memory_pages or (3 if a.quick else 20)
        workdir = _workdir(a)
        _log(f"memory: paging through folders of {', '.join(map(str, sizes))} images")
        sides = a.memory_sides or ([32] if a.quick else [32, 224])
        memory = mem.run_sizes(sizes, pages_n, 16, threads=a.threads, log=_log, workdir=workdir, sides=sides)
        out["memory"] = [r.to_json() for r in memory]
    if "pass" in a.sections:
        from . import dataset_pass

        cases = [c for c in dataset_pass.default_cases(a.quick, a.pass_sizes, a.pass_rounds) if c[0] in a.models]
        _log(
            "dataset pass: against a raw model(x) loop over the same folder ("
            + ", ".join(f"{model} on {n} files at {side}x{side}" for model, side, n, _ in cases)
            + ")"
        )
        passes = dataset_pass.run_cases(cases, threads=a.threads, log=_log, workdir=_workdir(a)) if cases else []
        out["pass"] = [r.to_json() for r in passes]
    if "precompute" in a.sections:
        from . import precompute as pre_bench

        n = a.precompute_examples or (128 if a.quick else 256)
        workers = a.precompute_workers or [1, 2]
        _log(
            f"precompute: against a plain captum loop over the same {n} images (IntegratedGradients, 16 steps), "
            f"and on Ray with {', '.join(map(str, workers))} workers"
        )
        pre = pre_bench.run(
            n, a.precompute_rounds or (2 if a.quick else 3), workers, threads=a.threads, log=_log, workdir=_workdir(a)
        )
        out["precompute"] = pre.to_json()
    if "stored" in a.sections:
        from . import stored as stored_bench

        rounds = a.stored_rounds or (3 if a.quick else 5)
        _log(
            f"stored: the first visit of a precomputed page of {stored_bench.PAGE_SIZE} {stored_bench.SIDE}x"
            f"{stored_bench.SIDE} examples in a fresh process ({rounds} processes per visit mode)"
        )
        stored = stored_bench.run(rounds, log=_log, workdir=_workdir(a))
        out["stored"] = stored.to_json()
    out["elapsed_s"] = time.perf_counter() - started
    out["targets"] = report.targets(pages, render, memory, passes, pre, stored)
    print(report.markdown(out["machine"], pages, render, memory, out["targets"], out["elapsed_s"], passes, pre, stored))
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
        _log(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
