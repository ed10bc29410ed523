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
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from . import DEFAULT_METHODS, report

ALL = "all methods"
# (page sizes, methods) per model. resnet18 pages of 16 and 64 cost minutes per method on two
# CPU cores, so the full run has resnet18 at 16 for Saliency only; --sizes/--methods ask for more.
FULL_PLAN = {"cnn32": [((4, 16, 64), ALL)], "resnet18": [((4,), ALL), ((16,), ("Saliency",))]}
QUICK_PLAN = {"cnn32": [((4, 16), ALL)], "resnet18": [((4,), ("Saliency",))]}
SECTIONS = ("pages", "render", "memory", "pass", "precompute")


def _csv(text: str) -> List[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ints(text: str) -> List[int]:
    try:
        values = [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short run: fewer sizes, methods and repeats")
    ap.add_argument("--models", type=_csv, default=["cnn32", "resnet18"], help="cnn32,resnet18")
    ap.add_argument("--methods", type=_csv, default=None, help=f"default: {','.join(DEFAULT_METHODS)}")
    ap.add_argument("--sizes", type=_ints, default=None,
                    help="page sizes for every model and method (default: 4,16,64 for cnn32; 4 for resnet18, "
                         "and 16 with Saliency)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed rounds per cell, at least (the best is kept; default 2, more while a cell has run "
                         "for under 8 s, up to 20)")
    ap.add_argument("--sections", type=_csv, default=list(SECTIONS), help=",".join(SECTIONS))
    ap.add_argument("--memory-sizes", type=_ints, default=None, help="folder sizes (default 1000,10000,50000)")
    ap.add_argument("--memory-pages", type=int, default=None, help="pages read in each folder (default 20)")
    ap.add_argument("--memory-sides", type=_ints, default=None,
                    help="image sides the folders are loaded at (the files are 32x32; default 32,224)")
    ap.add_argument("--memory-dir", type=Path, default=None,
                    help="where to generate the folders of the memory and pass sections (default /dev/shm when "
                         "present, else the temp dir)")
    ap.add_argument("--pass-sizes", type=_ints, default=None,
                    help="files in the dataset pass's two folders: the small CNN's at 32x32, resnet18's at 224x224 "
                         "(default 50000,2000; --quick 5000,200)")
    ap.add_argument("--pass-rounds", type=int, default=None,
                    help="rounds of the dataset pass and the raw loop, alternating (the best is kept; default 4 for "
                         "the small CNN, 2 for resnet18; --quick 2)")
    ap.add_argument("--precompute-examples", type=int, default=None,
                    help="generated images the precompute section computes (default 256; --quick 128)")
    ap.add_argument("--precompute-rounds", type=int, default=None,
                    help="rounds of precompute and the plain captum loop, alternating (default 3; --quick 2)")
    ap.add_argument("--precompute-workers", type=_ints, default=None,
                    help="Ray worker counts the precompute section runs, one run each (default 1,2)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for both sides (default 1: stable on shared machines; 0: torch's choice)")
    ap.add_argument("--json", type=Path, default=None, help="also write every number to this file")
    a = ap.parse_args(argv)
    unknown = set(a.sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    for m in a.models:
        if m not in FULL_PLAN:
            ap.error(f"unknown model {m!r}: choose from {', '.join(FULL_PLAN)}")
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
    if a.pass_sizes is not None and len(a.pass_sizes) != 2:
        ap.error("--pass-sizes takes two sizes: the 32x32 folder's and the 224x224 folder's")
    return a


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_pages(a: argparse.Namespace) -> List[Any]:
    from .cases import build_cases
    from .models import build_model
    from .pages import PageBench

    results = []
    repeats = a.repeats or (1 if a.quick else 2)
    for key in a.models:
        plan = (QUICK_PLAN if a.quick else FULL_PLAN)[key]
        if a.sizes or a.methods:  # what was asked, for every size and method
            plan = [(tuple(a.sizes or sorted({n for sizes, _ in plan for n in sizes})),
                     tuple(a.methods) if a.methods else ALL)]
        cells = [(m, n) for sizes, methods in plan
                 for m in (DEFAULT_METHODS if methods == ALL else methods) for n in sizes]
        bm = build_model(key)
        cases: Dict[str, List[Any]] = {}
        for case in build_cases(bm, tuple(dict.fromkeys(m for m, _ in cells))):
            cases.setdefault(case.method, []).append(case)
        bench = PageBench(bm)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # captum: "Input Tensor 0 did not already require gradients"
                for method, size in cells:
                    for case in cases[method][:1] if a.quick else cases[method]:
                        results.append(bench.run(case, size, repeats, log=_log,
                                                 min_seconds=0.5 if a.quick else 8.0))
        finally:
            bench.close()
    return results


def _workdir(a: argparse.Namespace) -> Optional[Path]:
    """Where generated folders go: --memory-dir, else /dev/shm when present, else the temp dir."""
    if a.memory_dir is None and Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK):
        return Path("/dev/shm")
    return a.memory_dir


def main(argv: Optional[Sequence[str]] = None) -> int:
    a = parse_args(argv)
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    started = time.perf_counter()
    out: Dict[str, Any] = {"machine": report.machine(), "command": "python -m bench " + " ".join(argv or sys.argv[1:])}
    pages = render = memory = passes = pre = None
    if "pages" in a.sections:
        _log("pages: server vs raw captum")
        pages = run_pages(a)
        out["pages"] = [r.to_json() for r in pages]
    if "render" in a.sections:
        from . import rendering

        _log("rendering: one 224x224 image")
        render = rendering.run(number=5 if a.quick else 20, repeat=3 if a.quick else 5,
                               captum_repeat=1 if a.quick else 3, log=_log)
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
        _log("dataset pass: against a raw model(x) loop over the same folder (" + ", ".join(
            f"{model} on {n} files at {side}x{side}" for model, side, n, _ in cases) + ")")
        passes = dataset_pass.run_cases(cases, threads=a.threads, log=_log, workdir=_workdir(a)) if cases else []
        out["pass"] = [r.to_json() for r in passes]
    if "precompute" in a.sections:
        from . import precompute as pre_bench

        n = a.precompute_examples or (128 if a.quick else 256)
        workers = a.precompute_workers or [1, 2]
        _log(f"precompute: against a plain captum loop over the same {n} images (IntegratedGradients, 16 steps), "
             f"and on Ray with {', '.join(map(str, workers))} workers")
        pre = pre_bench.run(n, a.precompute_rounds or (2 if a.quick else 3), workers, threads=a.threads, log=_log,
                            workdir=_workdir(a))
        out["precompute"] = pre.to_json()
    out["elapsed_s"] = time.perf_counter() - started
    out["targets"] = report.targets(pages, render, memory, passes, pre)
    print(report.markdown(out["machine"], pages, render, memory, out["targets"], out["elapsed_s"], passes, pre))
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
        _log(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
