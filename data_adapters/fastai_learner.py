"""fastai ``Learner`` / ``DataLoaders`` / exported ``.pkl`` -> a Source with decoded images.

The visualizer wants display-space images (0..1) and a feature whose input transform
makes model inputs. A fastai validation DataLoader yields images that went through
``IntToFloatTensor`` and ``Normalize``; we iterate a copy of it without ``Normalize`` (so
the images are exactly the files' pixels / 255) and put that Normalize's mean and std in
the feature's ``input_transforms``: the model then sees bit for bit what fastai feeds it.
Classes come from ``dls.vocab``, the score function from ``loss_func.activation`` (softmax
for single-label, sigmoid for multi-label), as ``Learner.get_preds`` does.

A tabular or text learner is handed to ``fastai_tabular.py`` or ``fastai_text.py``; what the three
share (the DataLoader named or built over new items, the class names, the score and the loss) is
in ``fastai_common.py``. The public names are re-exported by ``data_adapters.fastai``.

fastai is imported with this module (by ``fastai_common``), inside ``quiet_imports()``: its
import warns that ``torch.jit.script`` is deprecated, a note the user cannot act on, which would
otherwise be the first thing a notebook shows (``data_adapters`` imports this module only when a
fastai name is asked for; the demo asks before it trains). We never run the Learner's training
loop or ``get_preds``, so no fastprogress bar is ever drawn while the server pages the data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from insights_app import AttributionVisualizer, Batch, quiet_imports
from insights_app.features import BaseFeature
from insights_app.tensors import plain

from .base import (
    AdapterError,
    ClassesArg,
    Normalizer,
    Source,
    check_classes,
    count_outputs,
    first_batch,
    image_feature,
    prepare_model,
    read_classes,
    state_dict_of,
)
from .errors import NotALearnerError
from .fastai_common import (
    Device,
    DlArg,
    ItemsArg,
    activation,
    choose_dl,
    display_dl,
    dl_block,
    dl_block_size,
    label_list,
    unreduced,
    vocab_names,
)

log = logging.getLogger(__name__)


def load_learner_file(path: str | Path, cpu: bool = True) -> Any:
    """fastai's ``load_learner`` with one-line errors (missing file, missing custom functions...).

    The file is a pickle: load only files you trust. Functions the learner was exported
    with (label functions, custom losses) must be importable under the same module names.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise AdapterError(f"exported learner not found: {p}")
    import warnings

    from fastai.learner import load_learner

    try:
        with quiet_imports(), warnings.catch_warnings():  # unpickling imports more of fastai
            warnings.filterwarnings("ignore", message=".*insecure pickle.*")
            warnings.filterwarnings("ignore", message="load_learner` uses Python's insecure pickle.*")
            learn = load_learner(p, cpu=cpu)
    except Exception as exc:
        holds = _what_file_holds(p)
        if holds is not None:
            raise _not_a_learner(p, holds) from exc
        raise AdapterError(f"cannot load the exported learner {p}: {type(exc).__name__}: {exc}") from exc
    if learn is None or not hasattr(learn, "dls") or not hasattr(learn, "model"):
        if isinstance(learn, torch.nn.Module) or state_dict_of(learn) is not None:
            raise _not_a_learner(p, "nn.Module" if isinstance(learn, torch.nn.Module) else "state dict")
        raise AdapterError(f"{p} does not hold a fastai Learner")
    return learn


def _what_file_holds(path: Path) -> str | None:
    """'state dict' or 'nn.Module' when a file that did not load as a Learner is one of those, else None.

    Weights are tried first with ``weights_only=True`` (no code runs); a whole module needs the
    pickle loaded, which ``load_learner`` has just done with the same file.
    """
    import warnings

    with quiet_imports(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            try:
                obj = torch.load(path, map_location="cpu", weights_only=False)
            except Exception:
                return None
    if isinstance(obj, torch.nn.Module):
        return "nn.Module"
    return "state dict" if state_dict_of(obj) is not None else None


def _not_a_learner(path: Path, holds: str) -> NotALearnerError:
    what = "a state dict (model weights only)" if holds == "state dict" else "a whole torch nn.Module"
    return NotALearnerError(
        f"{path} holds {what}, not a fastai Learner: build the model, load it, and use "
        "data_adapters.from_folder or from_dataset",
        str(path),
        holds,
    )


def _normalizer(dl: Any) -> Normalizer | None:
    from fastai.data.transforms import Normalize

    norms = [t for t in getattr(getattr(dl, "after_batch", None), "fs", []) if isinstance(t, Normalize)]
    if not norms:
        return None
    if len(norms) > 1:
        raise AdapterError("the DataLoader has several Normalize transforms; keep one")
    norm = norms[0]
    if norm.mean is None or norm.std is None:
        raise AdapterError("the DataLoader's Normalize has no statistics (it was never set up)")
    return Normalizer(plain(norm.mean), plain(norm.std))


class FastaiBatches:
    """Re-iterable, lazy Batch view of a fastai DataLoader (each ``iter()`` restarts it)."""

    def __init__(self, dl: Any) -> None:
        self.dl = dl
        self.n_inp = int(getattr(dl, "n_inp", 1) or 1)
        self._block_size: int | None | bool = False  # not asked yet

    def __len__(self) -> int:
        return len(self.dl.dataset)

    @property
    def n_examples(self) -> int:
        """The dataset pass's total."""
        return len(self.dl.dataset)

    @property
    def block_size(self) -> int | None:
        """Items a batch holds, when the DataLoader reads its items by index (see ``read_block``)."""
        if self._block_size is False:
            self._block_size = dl_block_size(self.dl)
        return self._block_size

    def read_block(self, start: int, stop: int) -> Batch:
        """Items ``start..stop-1`` at once (an :class:`insights_app.dataset.IndexedDataset`)."""
        return self._batch(dl_block(self.dl, start, stop))

    def _batch(self, b: Any) -> Batch:
        b = tuple(b) if isinstance(b, (tuple, list)) else (b,)
        if self.n_inp != 1:
            raise AdapterError(f"the learner takes {self.n_inp} inputs; this adapter shows one image input")
        x = plain(b[0])
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise AdapterError(
                f"the learner's inputs are {shape}, not images (N, C, H, W); this adapter shows image learners"
            )
        n = int(x.shape[0])
        labels = label_list(b[1], n) if len(b) > 1 else [None] * n
        return Batch(x.detach(), labels)

    def __iter__(self) -> Iterator[Batch]:
        for b in self.dl:
            yield self._batch(b)


def _source(
    dls: Any,
    model: Any,
    loss_func: Any,
    dl: DlArg,
    items: ItemsArg,
    with_labels: bool | None,
    classes: ClassesArg,
    device: Device,
    bs: int | None,
    name: str | None,
) -> Source:
    from fastai.data.core import TfmdDL

    from .fastai_text import is_text_model

    if is_text_model(model):  # text_classifier_learner: token ids, attributed through the embedding
        from .fastai_text import source_from_text_learner

        return source_from_text_learner(dls, model, loss_func, dl, items, with_labels, classes, device, bs, name)
    chosen = choose_dl(dls, dl, items, with_labels)
    if isinstance(chosen, TfmdDL):
        normalizer = _normalizer(chosen)
        dataset: Any = FastaiBatches(display_dl(chosen, bs))
    else:  # a plain torch DataLoader inside fastai DataLoaders (e.g. built from tensors)
        from .torch import TorchImages, stable_loader

        normalizer, dataset = None, TorchImages(stable_loader(chosen))
    names = read_classes(classes) if classes is not None else vocab_names(dls)
    model = prepare_model(model, device)
    features: list[BaseFeature] = [image_feature(normalizer)]
    batch = first_batch(dataset, "the learner's data")
    names = check_classes(names, count_outputs(model, features, batch), "classes come from dls.vocab")
    score = activation(loss_func)
    info: dict[str, Any] = {
        "multi_label": score.kind == "sigmoid",
        "normalize": repr(normalizer) if normalizer else None,
    }
    length = getattr(dataset, "n_examples", None)
    if isinstance(length, int):
        info["length"] = length
    return Source(model, names, score, features, dataset, name=name, info=info, loss_func=unreduced(loss_func))


def source_from_learner(
    learn: Any,
    dl: DlArg = None,
    items: ItemsArg = None,
    *,
    with_labels: bool | None = None,
    classes: ClassesArg = None,
    device: Device = None,
    bs: int | None = None,
    name: str | None = None,
) -> Source:
    """A :class:`Source` over a fastai Learner (see :func:`from_learner` for the arguments)."""
    if not hasattr(learn, "dls") or not hasattr(learn, "model"):
        raise AdapterError(f"expected a fastai Learner, got {type(learn).__name__}")
    from .fastai_tabular import is_tabular

    if is_tabular(learn):  # tabular_learner: rows of categorical and continuous columns
        from .fastai_tabular import source_from_tabular_learner

        return source_from_tabular_learner(
            learn, dl, items, with_labels=with_labels, classes=classes, device=device, bs=bs, name=name
        )
    return _source(
        learn.dls, learn.model, getattr(learn, "loss_func", None), dl, items, with_labels, classes, device, bs, name
    )


def from_learner(
    learn: Any,
    dl: DlArg = None,
    items: ItemsArg = None,
    *,
    with_labels: bool | None = None,
    classes: ClassesArg = None,
    device: Device = None,
    bs: int | None = None,
    name: str | None = None,
    **visualizer_kwargs: Any,
) -> AttributionVisualizer:
    """``vis = from_learner(learn)``: a visualizer over a fastai Learner's validation set.

    ``dl``: 'valid' (default), 'train', an index, or a fastai DataLoader. ``items``: new
    data instead (a folder, a file, or a list of files), loaded with the learner's
    validation transforms via ``dls.test_dl``; ``with_labels``: None labels them with the
    learner's labelling when it can label every item, True insists, False never labels.
    ``classes`` overrides ``dls.vocab``; ``device`` moves the model (default: where it
    is); ``bs`` the batch size read at a time. Other keyword arguments go to
    :class:`insights_app.AttributionVisualizer`. For the parts without a visualizer, use
    :func:`source_from_learner`.
    """
    return source_from_learner(
        learn, dl, items, with_labels=with_labels, classes=classes, device=device, bs=bs, name=name
    ).visualizer(**visualizer_kwargs)


def source_from_dataloaders(
    dls: Any,
    model: torch.nn.Module,
    dl: DlArg = None,
    items: ItemsArg = None,
    *,
    loss_func: Any = None,
    with_labels: bool | None = None,
    classes: ClassesArg = None,
    device: Device = None,
    bs: int | None = None,
    name: str | None = None,
) -> Source:
    """A :class:`Source` over fastai DataLoaders and a model (see :func:`from_dataloaders`)."""
    if loss_func is None:
        loss_func = getattr(getattr(dls, "train_ds", None), "loss_func", None)  # what Learner would pick
    from .fastai_tabular import is_tabular

    if is_tabular(dls):
        from .fastai_tabular import source_from_tabular

        return source_from_tabular(
            dls, model, loss_func, dl, items, with_labels=with_labels, classes=classes, device=device, bs=bs, name=name
        )
    return _source(dls, model, loss_func, dl, items, with_labels, classes, device, bs, name)


def from_dataloaders(
    dls: Any,
    model: torch.nn.Module,
    dl: DlArg = None,
    items: ItemsArg = None,
    *,
    loss_func: Any = None,
    with_labels: bool | None = None,
    classes: ClassesArg = None,
    device: Device = None,
    bs: int | None = None,
    name: str | None = None,
    **visualizer_kwargs: Any,
) -> AttributionVisualizer:
    """A visualizer over fastai DataLoaders and a model trained on them (no Learner needed).

    The loss (hence softmax or sigmoid) is the one fastai's Learner would choose for these
    DataLoaders unless ``loss_func`` is given; the other arguments are as in
    :func:`from_learner`.
    """
    return source_from_dataloaders(
        dls,
        model,
        dl,
        items,
        loss_func=loss_func,
        with_labels=with_labels,
        classes=classes,
        device=device,
        bs=bs,
        name=name,
    ).visualizer(**visualizer_kwargs)


def source_from_export(
    path: str | Path,
    items: ItemsArg = None,
    *,
    cpu: bool = True,
    with_labels: bool | None = None,
    classes: ClassesArg = None,
    device: Device = None,
    bs: int | None = None,
    name: str | None = None,
) -> Source:
    """A :class:`Source` over an exported learner (``learn.export()``'s .pkl) and new items.

    An exported learner keeps no data, so ``items`` (a folder or files) is needed unless
    the learner was pickled with its DataLoaders some other way.
    """
    learn = load_learner_file(path, cpu=cpu)
    return source_from_learner(
        learn, None, items, with_labels=with_labels, classes=classes, device=device, bs=bs, name=name
    )


def from_export(
    path: str | Path,
    items: ItemsArg = None,
    *,
    cpu: bool = True,
    with_labels: bool | None = None,
    classes: ClassesArg = None,
    device: Device = None,
    bs: int | None = None,
    name: str | None = None,
    **visualizer_kwargs: Any,
) -> AttributionVisualizer:
    """``vis = from_export("export.pkl", items="new_images/")``: an exported learner on new files.

    What ``insights-app --learner export.pkl --data FOLDER`` runs. Only load .pkl files
    you trust (they are pickles).
    """
    return source_from_export(
        path, items, cpu=cpu, with_labels=with_labels, classes=classes, device=device, bs=bs, name=name
    ).visualizer(**visualizer_kwargs)
