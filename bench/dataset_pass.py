"""The dataset pass against a raw batched ``model(x)`` loop over the same folder, side by side.

Each case (a generated folder, a model, the side the folder is loaded at) runs in its own
child process (``python -m bench.dataset_pass --child ...``), as the memory section does, so
that peaks do not mix. The child builds a :class:`data_adapters.base.Source` with
``data_adapters.source_from_folder`` and then, round after round, alternates

- *raw*: ``with torch.no_grad(): for batch in source.dataset: model(normalize(batch.inputs))``,
  the adapter's own lazy folder dataset (the same files, decoded and resized the same way, in
  the same batches), torchvision's ``Normalize`` with the same mean and std, the same model,
  no insights_app code; it writes each batch's argmax into an array allocated up front (a few
  microseconds a batch) so that the pass's answers can be checked against it;
- *pass*: a fresh visualizer over the same Source (``source.visualizer()``) and
  ``vis.interpretation(model=0, progress=False)``, which runs the dataset pass to completion
  (a fresh iteration of the dataset, every batch on the model's compute thread, top-5, the
  label's score and the loss kept per example).

Raw and pass swap order every round; each keeps its best round. Peak memory is the growth
of resident memory over the run (VmHWM after resetting it through /proc/self/clear_refs, or
a 10 ms sampler where that is not possible), for the pass and, for comparison, the raw loop.
The child also checks that the pass did the raw loop's work: it covered every file, its
top-1 of each example is the raw argmax, and its confusion matrix is the one built from the
raw argmax and the labels.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .memory import N_CLASSES, _peak_mb, _rss_mb, generate_folder

MODELS = ("cnn32", "resnet18")


@dataclass
class PassResult:
    model: str
    side: int
    files: int
    examples: int  # examples the pass covered (its Interpretation.n_examples)
    batch_size: int  # the folder dataset's batches (both sides read the same ones)
    rounds: int
    raw_s: list[float]  # every round's wall time
    pass_s: list[float]
    raw_cpu_s: list[float]  # every round's process CPU time (all threads)
    pass_cpu_s: list[float]
    pass_growth_mb: float  # the largest peak resident memory growth over a pass round
    raw_growth_mb: float  # the same for a raw round
    rss_start_mb: float  # before the first round (imports, model, Source)
    records_mb: float  # the pass's records (PassRecords.nbytes)
    agree: int  # examples whose pass top-1 is the raw loop's argmax
    confusion_equal: bool  # the pass's confusion matrix == the one from the raw argmax and the labels
    threads: int = 1
    peak_method: str = "VmHWM"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def case(self) -> str:
        return f"{self.model} {self.side}x{self.side}"

    @property
    def raw_rate(self) -> float:
        return self.files / min(self.raw_s)

    @property
    def pass_rate(self) -> float:
        return self.examples / min(self.pass_s)

    @property
    def ratio(self) -> float:
        """Pass throughput / raw throughput (1.0: as fast; the target is at least 0.9)."""
        return self.pass_rate / self.raw_rate

    @property
    def cpu_ratio(self) -> float:
        """The same in process CPU time (less sensitive to other jobs on a shared machine)."""
        return (min(self.raw_cpu_s) / self.files) / (min(self.pass_cpu_s) / self.examples)

    @property
    def median_ratio(self) -> float:
        return (self.examples / float(np.median(self.pass_s))) / (self.files / float(np.median(self.raw_s)))

    def to_json(self) -> dict[str, Any]:
        return dict(
            asdict(self),
            case=self.case,
            raw_rate=self.raw_rate,
            pass_rate=self.pass_rate,
            ratio=self.ratio,
            cpu_ratio=self.cpu_ratio,
            median_ratio=self.median_ratio,
        )


class PeakWatch:
    """Peak resident memory growth over a block: VmHWM reset through /proc/self/clear_refs (Linux),
    else a sampler thread (every 10 ms)."""

    def __init__(self) -> None:
        self.method = "VmHWM"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampled = 0.0

    @staticmethod
    def _reset_hwm() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            return True
        except OSError:
            return False

    def __enter__(self) -> PeakWatch:
        gc.collect()
        self.start_mb = _rss_mb()
        if not self._reset_hwm():
            self.method = "sampled every 10 ms"
            self._sampled = self.start_mb
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self._sampled = max(self._sampled, _rss_mb())

    def __exit__(self, *exc: Any) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            peak = max(self._sampled, _rss_mb())
        else:
            peak = _peak_mb()
        self.growth_mb = max(0.0, peak - self.start_mb)


def build_model(key: str) -> tuple[Any, list[str]]:
    """The bench's model (fixed random weights) and class names whose first ten are the folder's labels."""
    import torch

    torch.manual_seed(0)
    if key == "cnn32":
        from insights_app.testing import CNN32

        model, n_out = CNN32(N_CLASSES), N_CLASSES
    elif key == "resnet18":
        import torchvision

        model, n_out = torchvision.models.resnet18(weights=None), 1000
    else:
        raise ValueError(f"unknown model {key!r}: choose from {', '.join(MODELS)}")
    labels = [f"c{k}" for k in range(N_CLASSES)]  # the generated folders' sub-folders
    return model.eval(), labels + [f"class {i}" for i in range(N_CLASSES, n_out)]


def raw_loop(model: Any, dataset: Any, normalize: Callable[[Any], Any]) -> tuple[int, np.ndarray, np.ndarray]:
    """The raw side: the same decoded batches, normalized as a batch, through the model.
    (examples, argmax per example, labels per example, -1 without one).

    The argmax and labels go into arrays allocated up front: keeping one small tensor per batch
    instead pins the top of the heap, so that glibc never returns the freed activations to the
    system; measured on 20,000 32x32 files, that cut the raw loop's page faults from about 38 to
    2 per example and its system time by 1.5 s (and made its memory grow by 1 GB over 50,000
    files), a speed-up no plain loop has.
    """
    import torch

    size = len(dataset) if hasattr(dataset, "__len__") else 1024
    preds = np.empty(size, np.int64)
    labels = np.full(size, -1, np.int64)
    n = 0
    with torch.no_grad():
        for batch in dataset:
            out = model(normalize(batch.inputs))
            k = int(out.shape[0])
            if n + k > len(preds):
                preds = np.resize(preds, 2 * (n + k))
                labels = np.resize(labels, 2 * (n + k))
            preds[n : n + k] = out.argmax(dim=1).numpy()
            labels[n : n + k] = [-1 if v is None else int(v) for v in batch.labels]
            n += k
    return n, preds[:n], labels[:n]


def confusion(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    keep = (labels >= 0) & (labels < n_classes) & (predicted < n_classes)
    return np.bincount(labels[keep] * n_classes + predicted[keep], minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def measure(
    folder: Path,
    model_key: str,
    side: int,
    rounds: int = 2,
    threads: int = 1,
    batch_size: int = 32,
    log: Callable[[str], None] | None = None,
) -> PassResult:
    """One case, in this process: ``rounds`` of raw and pass, alternating (see the module docstring)."""
    import torch
    import torchvision.transforms as T

    if threads:
        torch.set_num_threads(threads)
    from data_adapters import source_from_folder

    from .models import MEAN, STD

    model, classes = build_model(model_key)
    source = source_from_folder(folder, model, classes, size=side, mean=MEAN, std=STD, batch_size=batch_size)
    files = int(source.info["files"])
    normalize = T.Normalize(MEAN, STD)
    with torch.no_grad():  # warm-up: the first batches (lazy imports, allocator)
        for i, batch in enumerate(source.dataset):
            model(normalize(batch.inputs))
            if i >= 2:
                break
    rss_start = _rss_mb()
    raw_s: list[float] = []
    pass_s: list[float] = []
    raw_cpu: list[float] = []
    pass_cpu: list[float] = []
    raw_growth = pass_growth = 0.0
    agree, confusion_equal, n_examples, records_mb, method = 0, True, files, 0.0, "VmHWM"
    raw_pred = raw_labels = None
    for r in range(rounds):
        for side_name in ("raw", "pass") if r % 2 == 0 else ("pass", "raw"):
            if side_name == "raw":
                with PeakWatch() as watch:
                    c0, t0 = time.process_time(), time.perf_counter()
                    n, pred, labs = raw_loop(model, source.dataset, normalize)
                    raw_s.append(time.perf_counter() - t0)
                    raw_cpu.append(time.process_time() - c0)
                if n != files:
                    raise RuntimeError(f"the raw loop read {n} examples of {files} files")
                raw_growth = max(raw_growth, watch.growth_mb)
                raw_pred, raw_labels = pred, labs
                if log:
                    log(f"    round {r + 1} raw : {files / raw_s[-1]:8.1f} ex/s")
            else:
                vis = source.visualizer()
                with PeakWatch() as watch:
                    c0, t0 = time.process_time(), time.perf_counter()
                    interp = vis.interpretation(model=0, progress=False)
                    pass_s.append(time.perf_counter() - t0)
                    pass_cpu.append(time.process_time() - c0)
                pass_growth = max(pass_growth, watch.growth_mb)
                method = watch.method
                n_examples = interp.n_examples
                records_mb = vis.dataset_pass.records.nbytes() / 2**20
                pass_interp = interp
                vis.stop()
                del vis
                if log:
                    log(f"    round {r + 1} pass: {n_examples / pass_s[-1]:8.1f} ex/s")
    assert raw_pred is not None and raw_labels is not None
    if pass_interp.failed == 0 and len(pass_interp.predicted) == len(raw_pred):
        agree = int((pass_interp.predicted == raw_pred).sum())
    n_classes = len(classes)
    confusion_equal = bool(np.array_equal(pass_interp.confusion_matrix(), confusion(raw_labels, raw_pred, n_classes)))
    return PassResult(
        model_key,
        side,
        files,
        n_examples,
        batch_size,
        rounds,
        raw_s,
        pass_s,
        raw_cpu,
        pass_cpu,
        pass_growth,
        raw_growth,
        rss_start,
        records_mb,
        agree,
        confusion_equal,
        threads,
        method,
        {"failed": pass_interp.failed, "loss": pass_interp.loss_name},
    )


CaseSpec = tuple[str, int, int, int]  # (model, side, files, rounds)


def default_cases(quick: bool, sizes: Sequence[int] | None = None, rounds: int | None = None) -> list[CaseSpec]:
    """The small CNN on a 32x32 folder and resnet18 on a smaller one loaded at 224x224. The full run
    gives the small CNN 4 rounds (a round of 50,000 files takes about half a minute) and resnet18 2
    (a round of 2,000 takes a minute and a half on one core)."""
    n32, n224 = sizes or ((5000, 200) if quick else (50000, 2000))
    return [("cnn32", 32, n32, rounds or (2 if quick else 4)), ("resnet18", 224, n224, rounds or 2)]


def run_cases(
    cases: Sequence[CaseSpec],
    threads: int = 1,
    log: Callable[[str], None] | None = None,
    workdir: Path | None = None,
    batch_size: int = 32,
    timeout: float = 1500,
) -> list[PassResult]:
    """Generate the folders (32x32 PNGs, the largest first, the others hard-linked from it), then
    measure each case in a child process. The folders are removed at the end."""
    base = Path(tempfile.mkdtemp(prefix="insights-bench-pass-", dir=workdir))
    results = []
    try:
        sizes = sorted({n for _, _, n, _ in cases}, reverse=True)
        t0 = time.perf_counter()
        largest = generate_folder(base / f"n{sizes[0]}", sizes[0])
        for n in sizes[1:]:
            generate_folder(base / f"n{n}", n, source=largest)
        if log:
            log(f"  generated {', '.join(map(str, sizes))} files in {time.perf_counter() - t0:.1f} s")
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        for model, side, n, rounds in cases:
            if log:
                log(f"  {model}: {n} files at {side}x{side}, {rounds} rounds")
            cmd = [
                sys.executable,
                "-m",
                "bench.dataset_pass",
                "--child",
                str(base / f"n{n}"),
                "--model",
                model,
                "--side",
                str(side),
                "--rounds",
                str(rounds),
                "--threads",
                str(threads),
                "--batch-size",
                str(batch_size),
            ]
            proc = subprocess.run(
                cmd,
                stdout=subprocess.PIPE,
                stderr=None if log else subprocess.PIPE,
                text=True,
                env=env,
                timeout=timeout,
            )
            if proc.returncode != 0:
                raise RuntimeError(
                    f"dataset pass child for {model} ({n} files) failed: {(proc.stderr or '').strip()[-2000:]}"
                )
            res = PassResult(**json.loads(proc.stdout.strip().splitlines()[-1]))
            results.append(res)
            if log:
                log(
                    f"  {res.case}: raw {res.raw_rate:.0f} ex/s, pass {res.pass_rate:.0f} ex/s "
                    f"({res.ratio:.2f}x), pass peak +{res.pass_growth_mb:.0f} MB"
                )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--child", type=Path, required=True, help="the folder to read (internal use)")
    ap.add_argument("--model", choices=MODELS, default="cnn32")
    ap.add_argument("--side", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    a = ap.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    res = measure(a.child, a.model, a.side, a.rounds, a.threads, a.batch_size, log=log)
    print(json.dumps(asdict(res)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
