"""Peak memory while paging through generated image folders of growing size.

Each folder size runs in its own child process (``python -m bench.memory --child ...``)
so that peaks do not mix: the child builds a visualizer with
``data_adapters.from_folder``, pages through the first pages of the folder, then jumps
to its last page (which makes the dataset read every file once), and reports its
resident memory after each phase and its peak (VmHWM). Memory that does not grow
with the folder size is the target.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

N_CLASSES = 10
SIDE = 32
DISTINCT_FILES = 256  # distinct PNG contents, written round-robin (the content does not matter here)


@dataclass
class MemoryResult:
    files: int
    pages: int
    page_size: int
    rss_built_mb: float  # after imports, model and visualizer: the baseline
    rss_paged_mb: float  # after the first pages
    rss_last_mb: float  # after jumping to the last page (every file read once)
    peak_mb: float  # the child's peak resident memory (VmHWM)
    paging_s: float
    last_page_s: float
    adapter: str
    side: int = SIDE  # the images' side as the model sees them

    @property
    def growth_mb(self) -> float:
        return self.peak_mb - self.rss_built_mb

    def to_json(self) -> dict[str, Any]:
        return dict(asdict(self), growth_mb=self.growth_mb)


def _png_blobs(n: int, side: int, seed: int = 0) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    blobs = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, format="PNG")
        blobs.append(buf.getvalue())
    return blobs


def generate_folder(root: Path, n: int, source: Path | None = None, side: int = SIDE) -> Path:
    """``n`` tiny PNGs in ``root/c<k>/`` sub-folders (labels from sub-folders).

    With ``source`` (a larger generated folder), its first ``n`` files are hard-linked
    instead of written again.
    """
    root.mkdir(parents=True, exist_ok=True)
    for k in range(N_CLASSES):
        (root / f"c{k}").mkdir(exist_ok=True)
    blobs = None if source is not None else _png_blobs(min(DISTINCT_FILES, n), side)
    for i in range(n):
        rel = Path(f"c{i % N_CLASSES}") / f"{i:06d}.png"
        if source is not None:
            try:
                os.link(source / rel, root / rel)
                continue
            except OSError:
                blobs = blobs or _png_blobs(min(DISTINCT_FILES, n), side)
        assert blobs is not None
        (root / rel).write_bytes(blobs[i % len(blobs)])
    return root


def _proc_status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (Linux) in MB, or None where there is none."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _rss_mb() -> float:
    rss = _proc_status_mb("VmRSS")
    if rss is None:
        import psutil

        rss = psutil.Process().memory_info().rss / 2**20
    return rss


def _peak_mb() -> float:
    """This process's peak resident memory.

    VmHWM where there is one: ``ru_maxrss`` survives exec on Linux, so a child started by
    a large parent would report the parent's peak.
    """
    peak = _proc_status_mb("VmHWM")
    if peak is None:
        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    return peak


def child(folder: Path, pages: int, page_size: int, method: str, threads: int, side: int = SIDE) -> dict[str, Any]:
    """Runs in the child process: build, page, jump to the end, report."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from insights_app.testing import CNN32

    from .models import MEAN, STD

    torch.manual_seed(0)
    model = CNN32(N_CLASSES).eval()
    from data_adapters import from_folder

    if side != SIDE:  # the files are small; the adapter resizes them to `side`, the model pools back
        model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(SIDE), model).eval()
    vis = from_folder(folder, model, size=side, mean=MEAN, std=STD)
    adapter = "data_adapters.from_folder"
    files = len(vis.store.dataset)
    body = {"method": method, "page_size": page_size}
    vis.page(dict(body, page=0))  # first request: lazy imports, allocator warm-up
    rss_built = _rss_mb()
    t0 = time.perf_counter()
    for p in range(pages):
        doc = vis.page(dict(body, page=p))
        if len(doc["examples"]) != page_size:
            raise SystemExit(f"page {p} has {len(doc['examples'])} examples")
    paging_s = time.perf_counter() - t0
    rss_paged = _rss_mb()
    last = (files - 1) // page_size
    t0 = time.perf_counter()
    doc = vis.page(dict(body, page=last))
    last_s = time.perf_counter() - t0
    if not doc["examples"] or doc["examples"][-1]["id"] != files - 1:
        raise SystemExit(f"the last page does not end with example {files - 1}")
    return asdict(
        MemoryResult(
            files, pages, page_size, rss_built, rss_paged, _rss_mb(), _peak_mb(), paging_s, last_s, adapter, side
        )
    )


def run_sizes(
    sizes: Sequence[int],
    pages: int,
    page_size: int,
    method: str = "Saliency",
    threads: int = 0,
    log: Callable[[str], None] | None = None,
    workdir: Path | None = None,
    sides: Sequence[int] = (SIDE,),
) -> list[MemoryResult]:
    """Generate the folders (largest first, the others hard-linked), measure each in a child,
    once per image side (the files are 32x32; the adapter resizes them to the side)."""
    base = Path(tempfile.mkdtemp(prefix="insights-bench-", dir=workdir))
    results = []
    try:
        ordered = sorted(set(sizes), reverse=True)
        t0 = time.perf_counter()
        largest = generate_folder(base / f"n{ordered[0]}", ordered[0])
        for n in ordered[1:]:
            generate_folder(base / f"n{n}", n, source=largest)
        if log:
            log(f"  generated {', '.join(str(n) for n in ordered)} files in {time.perf_counter() - t0:.1f} s")
        for side, n in [(side, n) for side in sides for n in sorted(set(sizes))]:
            cmd = [
                sys.executable,
                "-m",
                "bench.memory",
                "--child",
                str(base / f"n{n}"),
                "--pages",
                str(pages),
                "--page-size",
                str(page_size),
                "--method",
                method,
                "--threads",
                str(threads),
                "--side",
                str(side),
            ]
            env = dict(os.environ)
            root = str(Path(__file__).resolve().parent.parent)
            env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
            if proc.returncode != 0:
                raise RuntimeError(f"memory child for {n} files failed: {proc.stderr.strip()[-2000:]}")
            res = MemoryResult(**json.loads(proc.stdout.strip().splitlines()[-1]))
            results.append(res)
            if log:
                log(
                    f"  {n:>7d} files at {side}x{side}: peak {res.peak_mb:7.1f} MB (+{res.growth_mb:6.1f} over the first page), "
                    f"last page {res.last_page_s:5.1f} s"
                )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--child", type=Path, required=True, help="the folder to page through (internal use)")
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--page-size", type=int, default=16)
    ap.add_argument("--method", default="Saliency")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--side", type=int, default=SIDE)
    a = ap.parse_args(argv)
    print(json.dumps(child(a.child, a.pages, a.page_size, a.method, a.threads, a.side)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
