"""The tabular demo: a fastai ``tabular_learner`` on scikit-learn's breast cancer data, trained once and cached.

``insights-app --demo tabular``. Nothing is downloaded: ``load_breast_cancer`` ships with
scikit-learn. The first start trains a small ``TabularModel`` (a few seconds on two CPU
cores) on a handful of the measurements, with two of them (mean radius, mean texture) also
binned into categorical columns (``size``, ``texture``), so the page shows both kinds of
feature: category names and numbers, each column with its own attribution. It exports the
learner and writes the held-out rows as a CSV next to it, in the demos' cache root
(:func:`insights_app.demos.cache.cache_root`); later starts only load them, through
``data_adapters.source_from_export`` (what ``from_export("export.pkl", items=rows)`` does
for any exported tabular learner). A cache that is missing, incomplete or no longer loads is
trained again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .cache import DemoCache, Progress, say, training_threads

DEMO_NAME = "breast-cancer-tabular-v1"  # bump when the data, the model or the training changes
DEMO_TITLE = "Insights demo: a fastai tabular learner on scikit-learn's breast cancer data"
TARGET = "diagnosis"
CONTINUOUS = [
    "mean concave points",
    "worst area",
    "worst radius",
    "mean smoothness",
    "worst texture",
    "worst concavity",
]
CATEGORICAL = ["size", "texture"]
BINS = {
    "size": ("mean radius", [0.0, 12.0, 15.0, np.inf], ["small", "medium", "large"]),
    "texture": ("mean texture", [0.0, 17.0, 21.0, np.inf], ["smooth", "average", "rough"]),
}
EPOCHS = 6
LEARNING_RATE = 1e-2
VALID_FRACTION = 0.2
SEED = 0


class TabularDemoFiles(DemoCache):
    """The demo's files in the cache: the exported learner and the rows it shows."""

    REQUIRED = ("export.pkl", "valid.csv")

    @property
    def learner(self) -> Path:
        return self.root / "export.pkl"

    @property
    def rows(self) -> Path:
        """The held-out rows (the learner's columns and the target), as a CSV."""
        return self.root / "valid.csv"


def demo_files(cache: Path | None = None) -> TabularDemoFiles:
    return TabularDemoFiles.in_cache(DEMO_NAME, cache)


def breast_cancer_frame() -> Any:
    """scikit-learn's breast cancer data as a DataFrame: the measurements, the binned columns, the diagnosis."""
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    df = data.frame.drop(columns=["target"])
    for name, (source, edges, labels) in BINS.items():
        df[name] = pd.cut(df[source], edges, labels=labels, right=False).astype(str)
    df[TARGET] = np.asarray(data.target_names)[data.target.to_numpy()]
    return df[CATEGORICAL + CONTINUOUS + [TARGET]]


def split(n: int, valid_fraction: float = VALID_FRACTION, seed: int = SEED) -> tuple[list, list]:
    """A seeded shuffle into (train, valid) row positions: every machine gets the same demo."""
    order = np.random.default_rng(seed).permutation(n)
    n_valid = int(round(n * valid_fraction))
    return sorted(int(i) for i in order[n_valid:]), sorted(int(i) for i in order[:n_valid])


def tabular_dls(df: Any, valid_idx: list, bs: int = 64) -> Any:
    """The demo's ``TabularDataLoaders`` (Categorify, FillMissing, Normalize; the diagnosis as classes)."""
    from insights_app import quiet_imports

    with quiet_imports():
        from fastai.data.block import CategoryBlock
        from fastai.tabular.core import Categorify, FillMissing, Normalize
        from fastai.tabular.data import TabularDataLoaders

    return TabularDataLoaders.from_df(
        df,
        procs=[Categorify, FillMissing, Normalize],
        cat_names=list(CATEGORICAL),
        cont_names=list(CONTINUOUS),
        y_names=TARGET,
        y_block=CategoryBlock(),
        valid_idx=valid_idx,
        bs=bs,
        num_workers=0,
    )


def train_tabular_demo(files: TabularDemoFiles, progress: Progress = say, epochs: int = EPOCHS) -> float:
    """Train the tabular learner, export it, write the held-out rows; returns validation accuracy."""
    import torch

    from insights_app import quiet_imports

    with quiet_imports():
        from fastai.callback.progress import ProgressCallback  # noqa: F401  (adds Learner.no_bar)
        from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (adds Learner.fit_one_cycle)
        from fastai.metrics import accuracy
        from fastai.tabular.learner import tabular_learner

    t0 = time.perf_counter()
    df = breast_cancer_frame()
    train_idx, valid_idx = split(len(df))
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    dls = tabular_dls(df, valid_idx)
    learn = tabular_learner(dls, layers=[32, 16], metrics=accuracy)
    progress(f"training the tabular demo model on {len(train_idx)} rows ({epochs} epochs)")
    with training_threads(), learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs, LEARNING_RATE)
    acc = float(learn.recorder.values[-1][2])
    files.root.mkdir(parents=True, exist_ok=True)
    learn.export(files.learner)
    df.iloc[valid_idx].to_csv(files.rows, index=False)
    files.meta.write_text(
        json.dumps(
            {
                "name": DEMO_NAME,
                "accuracy": acc,
                "epochs": epochs,
                "train_rows": len(train_idx),
                "valid_rows": len(valid_idx),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    )
    return acc


def ensure_tabular_demo(cache: Path | None = None, progress: Progress = say, retrain: bool = False) -> TabularDemoFiles:
    """The demo's cached files, training them first if they are missing (or ``retrain``)."""
    files = demo_files(cache)
    acc = files.ensure("the tabular demo model", lambda work: train_tabular_demo(work, progress), progress, retrain)
    if acc is not None:
        progress(f"the tabular demo model reaches {acc:.1%} accuracy on its held-out rows")
    return files


def read_rows(files: TabularDemoFiles) -> Any:
    """The held-out rows, with the categorical columns read as text."""
    import pandas as pd

    return pd.read_csv(files.rows, dtype={c: str for c in CATEGORICAL + [TARGET]})


def demo_source(cache: Path | None = None, progress: Progress = say, device: str | None = None) -> Any:
    """The demo as a ``data_adapters.Source``: the cached exported learner on its held-out rows."""
    from data_adapters import AdapterError, source_from_export

    def load(files: TabularDemoFiles) -> Any:
        return source_from_export(files.learner, read_rows(files), device=device, name="breast cancer (fastai tabular)")

    files = ensure_tabular_demo(cache, progress)
    progress(f"loading the tabular demo model from {files.root}")
    try:
        return load(files)
    except (AdapterError, OSError, ValueError) as exc:
        progress(f"the cached tabular demo model does not load ({exc}); training it again")
        return load(ensure_tabular_demo(cache, progress, retrain=True))


def demo_visualizer(
    cache: Path | None = None, progress: Progress = say, device: str | None = None, **visualizer_kwargs: Any
) -> Any:
    """The tabular demo's :class:`~insights_app.AttributionVisualizer` (``.render()`` in a notebook)."""
    visualizer_kwargs.setdefault("title", DEMO_TITLE)
    if device is not None:
        visualizer_kwargs.setdefault("device", device)
    return demo_source(cache, progress, device).visualizer(**visualizer_kwargs)
