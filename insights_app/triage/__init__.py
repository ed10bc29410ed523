"""Dataset-level triage: the dataset pass, its records, the losses, fastai's interpretation.

``vis.interpretation(model)`` is the Python entry point (:func:`interpretation_of`); the
Dataset view's requests read the same pass (``views/dataset.py``).
"""

from __future__ import annotations

import warnings

from ..protocols import VisualizerLike
from .dataset_pass import DEFAULT_PASS_LIMIT, DatasetPass, PassProgress
from .interpretation import ClassScores, Interpretation
from .losses import LossChoice, LossFn, choose_loss


def model_index(vis: VisualizerLike, model: int | str) -> int:
    """A model given by index or by name -> its index (ValueError naming the choices)."""
    names = [e.name for e in vis.engines]
    if isinstance(model, str):
        if model not in names:
            raise ValueError(f"no model named {model!r}: the models are {', '.join(map(repr, names))}")
        return names.index(model)
    if isinstance(model, bool) or not isinstance(model, int) or not 0 <= model < len(names):
        raise ValueError(f"model must be an index in 0..{len(names) - 1} or a name ({', '.join(map(repr, names))})")
    return model


def interpretation_for(vis: VisualizerLike, m: int) -> Interpretation:
    """Model ``m``'s interpretation of what the pass has covered so far (it may still be running)."""
    p = vis.dataset_pass
    progress = p.progress()
    choice = p.losses[m]
    notes = [progress.message] if progress.message else []
    if choice is not None and choice.note:
        notes.append(choice.note)
    return Interpretation(
        p.snapshot(),
        m,
        vis.classes,
        complete=progress.complete,
        note=" ".join(notes),
        loss_name=choice.name if choice is not None else "",
    )


def interpretation_of(
    vis: VisualizerLike, model: int | str = 0, progress: bool = True, timeout: float | None = None
) -> Interpretation:
    """Run (or resume, or reuse) the dataset pass, showing a progress bar, then model's interpretation."""
    m = model_index(vis, model)
    p = vis.dataset_pass
    state = p.start()
    bar = None
    if progress and state.state == "running":
        from tqdm.auto import tqdm

        bar = tqdm(total=state.total, unit="ex", desc="insights-app dataset pass", leave=False)
    try:
        while True:
            state = p.wait(timeout=0.5 if timeout is None else min(0.5, timeout))
            if bar is not None:
                if state.total is not None and bar.total != state.total:
                    bar.total = state.total
                bar.update(state.done - bar.n)
            if state.state != "running":
                break
            if timeout is not None:
                timeout -= 0.5
                if timeout <= 0:
                    raise TimeoutError(
                        f"the dataset pass is still running ({state.done} examples done); "
                        "call interpretation() again to wait on, or look at the Dataset view"
                    )
    except KeyboardInterrupt:
        p.cancel()
        p.wait(timeout=10)
        raise
    finally:
        if bar is not None:
            bar.close()
    if state.state == "failed" or not state.complete:
        warnings.warn(f"the dataset pass covered {state.done} examples: {state.message}", RuntimeWarning, stacklevel=3)
    return interpretation_for(vis, m)


__all__ = [
    "ClassScores",
    "DEFAULT_PASS_LIMIT",
    "DatasetPass",
    "Interpretation",
    "LossChoice",
    "LossFn",
    "PassProgress",
    "choose_loss",
    "interpretation_for",
    "interpretation_of",
    "model_index",
]
