"""``precompute`` against a plain captum loop over the same examples, and the Ray executor, side by side.

One process, one model (the small CNN on 32x32 images), ``n`` generated images (distinct, so
that the store has no two alike), Integrated Gradients with 16 steps and a zero baseline:

- *plain*: for each batch of 16 (the precompute's chunk), normalize, ``model(x).argmax(1)``
  for the targets (the precompute's prediction pass), ``IntegratedGradients.attribute`` (the
  bench's raw call, :func:`bench.cases.raw_call`, which the smoke tests check computes what the
  engine computes); nothing is kept;
- *local*: ``precompute(vis, ["IntegratedGradients"], ...)`` into a fresh store with a fresh
  visualizer (the predictions, the maps reduced as the page shows them, the store's writes);
- *ray*: the same with ``executor="ray"`` and 1, then 2, workers, on one local Ray instance of
  2 CPUs started before (its start is timed apart); a run's actor start is in its time, and
  also given apart (``startup``), with the rate without it.

Plain and local alternate, round after round, each keeping its best round; the Ray runs are
one round each (an actor start costs seconds). Every store is compared with the local one's
rows: the Ray executor must store the same bytes.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

ARGUMENTS = {"n_steps": 16, "method": "gausslegendre", "baseline": "zeros"}
BATCH = 16  # the precompute's chunk, and the plain loop's batch


@dataclass
class RayRun:
    workers: int
    seconds: float  # the whole run, its actors' start included
    startup_s: float  # of which: starting the actors
    equal: bool  # the store's rows are the local executor's, byte for byte

    def rate(self, n: int) -> float:
        return n / self.seconds

    def compute_rate(self, n: int) -> float:
        return n / max(1e-9, self.seconds - self.startup_s)


@dataclass
class PrecomputeResult:
    examples: int
    rounds: int
    plain_s: list[float]
    local_s: list[float]
    plain_cpu_s: list[float]  # process CPU time (every thread: the engine computes on its own)
    local_cpu_s: list[float]
    stored: int  # maps the local run stored (= examples)
    agree: int  # examples whose stored top-1 is the plain loop's argmax
    threads: int = 1
    ray_start_s: float | None = None  # ray.init, None without Ray
    ray: list[RayRun] = field(default_factory=list)
    note: str = ""
    # Server time of a page of STORED_PAGE examples read from the store by a fresh visualizer (ms, one per page)
    stored_page_ms: list[float] = field(default_factory=list)
    stored_page_forwards: int = 0  # forward passes those pages ran (0: every map came from the store)

    @property
    def plain_rate(self) -> float:
        return self.examples / min(self.plain_s)

    @property
    def local_rate(self) -> float:
        return self.examples / min(self.local_s)

    @property
    def ratio(self) -> float:
        """plain time / precompute time (1.0: as fast as the plain loop; the target is at least 0.95)."""
        return min(self.plain_s) / min(self.local_s)

    @property
    def cpu_ratio(self) -> float:
        """The same in process CPU time (less sensitive to other jobs on a shared machine)."""
        return min(self.plain_cpu_s) / min(self.local_cpu_s)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(plain_rate=self.plain_rate, local_rate=self.local_rate, ratio=self.ratio, cpu_ratio=self.cpu_ratio)
        for r, j in zip(self.ray, out["ray"]):
            j.update(
                rate=r.rate(self.examples),
                compute_rate=r.compute_rate(self.examples),
                ratio_to_local=r.rate(self.examples) / self.local_rate,
            )
        return out


def images(n: int, side: int = 32, seed: int = 7) -> torch.Tensor:
    """``n`` distinct random images in 0..1 (display space)."""
    return torch.rand((n, 3, side, side), generator=torch.Generator().manual_seed(seed))


def make_visualizer(bm: Any, pool: torch.Tensor, store: Path) -> Any:
    from insights_app import AttributionVisualizer, Batch
    from insights_app.features import ImageFeature

    from .pages import softmax

    labels = torch.zeros(BATCH, dtype=torch.long)
    dataset = [Batch(pool[i : i + BATCH], labels[: len(pool[i : i + BATCH])]) for i in range(0, len(pool), BATCH)]
    feature = ImageFeature("image", input_transforms=[bm.normalize])
    return AttributionVisualizer(bm.model, list(bm.classes), [feature], dataset, score_func=softmax, store=store)


def plain_loop(bm: Any, pool: torch.Tensor, raw: Callable[..., torch.Tensor]) -> torch.Tensor:
    """The plain side: batches of 16, the targets' forward pass, captum's attribute; the argmax kept."""
    argmax = torch.empty(len(pool), dtype=torch.long)
    for i in range(0, len(pool), BATCH):
        x = bm.normalize(pool[i : i + BATCH])
        zeros = bm.normalize(torch.zeros_like(pool[i : i + BATCH]))
        with torch.no_grad():
            t = bm.model(x).argmax(dim=1)
        raw(x, zeros, t)
        argmax[i : i + len(t)] = t
    return argmax


def stored_rows(store: Path) -> tuple:
    conn = sqlite3.connect(store / "insights.sqlite")
    try:
        return (
            conn.execute(
                "SELECT model, example, key, target, software, maps, contributions FROM explanations "
                "ORDER BY model, example, key, target"
            ).fetchall(),
            conn.execute(
                "SELECT model, example, software, indices, scores FROM predictions ORDER BY model, example"
            ).fetchall(),
        )
    finally:
        conn.close()


def _top1(vis: Any, pool: torch.Tensor) -> list[int]:
    from insights_app.store import example_fingerprints

    fps = example_fingerprints((pool,))
    stored = vis.engines[0].store.predictions(fps)
    return [stored[fp][0][0] if fp in stored else -1 for fp in fps]


def run(
    n: int = 256,
    rounds: int = 3,
    workers: Sequence[int] = (1, 2),
    threads: int = 1,
    log: Callable[[str], None] | None = None,
    workdir: Path | None = None,
) -> PrecomputeResult:
    """The section (see the module's docstring); ``workers=()`` leaves Ray out."""
    from insights_app.precompute import precompute

    from .cases import raw_call
    from .models import build_model

    if threads:
        torch.set_num_threads(threads)
    bm = build_model("cnn32")
    pool = images(n, bm.side)
    raw = raw_call(bm, "IntegratedGradients", ARGUMENTS)
    base = Path(tempfile.mkdtemp(prefix="insights-bench-precompute-", dir=workdir))
    plain_s: list[float] = []
    local_s: list[float] = []
    plain_cpu: list[float] = []
    local_cpu: list[float] = []
    result = PrecomputeResult(n, rounds, plain_s, local_s, plain_cpu, local_cpu, 0, 0, threads)
    try:
        plain_loop(bm, pool[:BATCH], raw)  # warm-up (lazy imports, the allocator)
        argmax = None
        for r in range(rounds):
            for side in ("plain", "local") if r % 2 == 0 else ("local", "plain"):
                if side == "plain":
                    c0, t0 = time.process_time(), time.perf_counter()
                    argmax = plain_loop(bm, pool, raw)
                    plain_s.append(time.perf_counter() - t0)
                    plain_cpu.append(time.process_time() - c0)
                else:
                    store = base / f"local{r}"
                    vis = make_visualizer(bm, pool, store)
                    c0 = time.process_time()
                    summary = precompute(
                        vis, ["IntegratedGradients"], {"IntegratedGradients": ARGUMENTS}, progress=False
                    )
                    local_cpu.append(time.process_time() - c0)
                    local_s.append(summary.seconds)
                    result.stored = summary.stored
                    vis.results_store.close()
                if log:
                    log(f"    round {r + 1} {side:5s}: {n / (plain_s if side == 'plain' else local_s)[-1]:7.1f} ex/s")
        assert argmax is not None
        vis = make_visualizer(bm, pool, base / "local0")
        result.agree = sum(int(a == b) for a, b in zip(_top1(vis, pool), argmax.tolist()))
        vis.results_store.close()
        stored_pages(result, bm, pool, base / "local0")
        if workers:
            _ray_runs(result, bm, pool, base, workers, log)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return result


STORED_PAGE = 8


def stored_pages(result: PrecomputeResult, bm: Any, pool: torch.Tensor, store: Path) -> None:
    """A restarted server's pages of precomputed examples: the server-side time of each (the examples
    view's whole answer, maps drawn, as vis.page computes it for the HTTP layer), and the forward
    passes they ran (none: the store answers)."""
    vis = make_visualizer(bm, pool, store)
    forward = vis.engines[0].forward
    calls = []
    vis.engines[0].forward = lambda *a: calls.append(1) or forward(*a)
    body = {"method": "IntegratedGradients", "arguments": ARGUMENTS, "page_size": STORED_PAGE}
    for page in range(min(8, len(pool) // STORED_PAGE)):
        t0 = time.perf_counter()
        vis.page(dict(body, page=page))
        result.stored_page_ms.append((time.perf_counter() - t0) * 1000)
    result.stored_page_forwards = len(calls)
    vis.results_store.close()


def _ray_runs(
    result: PrecomputeResult,
    bm: Any,
    pool: torch.Tensor,
    base: Path,
    workers: Sequence[int],
    log: Callable[[str], None] | None,
) -> None:
    from insights_app.precompute import precompute

    try:
        import ray
    except ImportError:
        result.note = 'Ray is not installed (pip install "insights-app[ray]"): no Ray rows'
        return
    want = stored_rows(base / "local0")
    started_here = not ray.is_initialized()
    t0 = time.perf_counter()
    if started_here:
        ray.init(num_cpus=max(workers), include_dashboard=False, log_to_driver=False)
    result.ray_start_s = time.perf_counter() - t0
    if log:
        log(f"    Ray started in {result.ray_start_s:.1f} s")
    try:
        for w in workers:
            store = base / f"ray{w}"
            vis = make_visualizer(bm, pool, store)
            summary = precompute(
                vis,
                ["IntegratedGradients"],
                {"IntegratedGradients": ARGUMENTS},
                progress=False,
                executor="ray",
                workers=w,
            )
            vis.results_store.close()
            res = RayRun(w, summary.seconds, summary.startup_seconds, stored_rows(store) == want)
            result.ray.append(res)
            if log:
                log(
                    f"    ray, {w} worker{'s' if w > 1 else ''}: {res.rate(result.examples):7.1f} ex/s "
                    f"({res.compute_rate(result.examples):.1f} without the actors' {res.startup_s:.1f} s start), "
                    f"{'the same' if res.equal else 'OTHER'} rows as local"
                )
    finally:
        if started_here:
            ray.shutdown()


def table(res: PrecomputeResult) -> str:
    from .report import _table

    rows = [
        ["plain captum loop", str(res.examples), f"{res.plain_rate:.1f}", "", "", "1.00", "", ""],
        [
            "precompute, local",
            str(res.examples),
            f"{res.local_rate:.1f}",
            "",
            "",
            f"{res.local_rate / res.plain_rate:.2f}",
            f"{res.cpu_ratio:.2f}",
            "1.00",
        ],
    ]
    for r in res.ray:
        rate = r.rate(res.examples)
        rows.append(
            [
                f"precompute, ray, {r.workers} worker{'s' if r.workers > 1 else ''}",
                str(res.examples),
                f"{rate:.1f}",
                f"{r.compute_rate(res.examples):.1f}",
                f"{r.startup_s:.1f}",
                f"{rate / res.plain_rate:.2f}",
                "",
                f"{rate / res.local_rate:.2f}" + ("" if r.equal else " (rows differ from local)"),
            ]
        )
    header = [
        "run",
        "examples",
        "ex/s",
        "ex/s without actor start",
        "actor start s",
        "vs plain",
        "CPU vs plain",
        "vs local",
    ]
    out = _table(header, rows)
    if res.stored_page_ms:
        ms = sorted(res.stored_page_ms)
        out += (
            f"\n\nA stored page of {STORED_PAGE} (a fresh visualizer on the local store): "
            f"{ms[0]:.1f} ms best, {ms[len(ms) // 2]:.1f} ms median over {len(ms)} pages, "
            f"{res.stored_page_forwards} forward passes"
        )
    return out
