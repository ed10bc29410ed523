"""fastai ``Learner`` / ``DataLoaders`` / exported ``.pkl`` -> a Source with decoded images.

The visualizer wants display-space images (0..1) and a feature whose input transform
makes model inputs. A fastai validation DataLoader yields images that went through
``IntToFloatTensor`` and ``Normalize``; we iterate a copy of it without ``Normalize`` (so
the images are exactly the files' pixels / 255) and put that Normalize's mean and std in
the feature's ``input_transforms``: the model then sees bit for bit what fastai feeds it.
Classes come from ``dls.vocab``, the score function from ``loss_func.activation`` (softmax
for single-label, sigmoid for multi-label), as ``Learner.get_preds`` does.

fastai is imported with this module (``import fastai`` here is the real package: Python 3
imports are absolute), inside ``quiet_imports()``: its import warns that ``torch.jit.script`` is
deprecated, a note the user cannot act on, which would otherwise be the first thing a notebook
shows (``data_adapters`` imports this module only when a fastai name is asked for; the demo asks
before it trains). We never run the Learner's training loop or ``get_preds``, so no fastprogress
bar is ever drawn while the server pages the data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from insights_app import AttributionVisualizer, Batch, quiet_imports
from insights_app.tensors import plain

from .base import (
    Activation,
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
from .captum_interpretation import CaptumInterpretation as CaptumInterpretation  # fastai.callback.captum
from .errors import NotALearnerError
from .folder import list_images

log = logging.getLogger(__name__)
ItemsArg = None | str | Path | Sequence[Any]
DlArg = None | str | int | Any
Device = str | torch.device | None


def _import_fastai() -> None:
    """fastai's modules, once, with their import-time deprecation notes silenced (see the module doc)."""
    with quiet_imports():
        try:  # basics: the learner, callbacks, interpret (which imports pandas); vision.data: image types
            import fastai.basics  # noqa: F401
            import fastai.vision.data  # noqa: F401
        except ImportError:  # pragma: no cover - fastai missing: the functions' own imports say so
            pass


_import_fastai()


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


def _vocab_names(dls: Any) -> list[str] | None:
    """``dls.vocab`` as plain strings (bool and numeric vocabs included), or None when there is none."""
    try:
        vocab = dls.vocab
    except Exception:
        return None
    if vocab is None:
        return None
    items = list(vocab)
    if items and all(isinstance(v, (list, tuple)) or type(v).__name__ in ("L", "CategoryMap") for v in items):
        items = list(items[-1])  # (input vocab, target vocab): the targets name the outputs
    return [str(v.item() if hasattr(v, "item") and not isinstance(v, str) else v) for v in items] or None


def _activation(loss_func: Any) -> Activation:
    """The score function fastai's ``get_preds`` would apply: the loss's ``activation``."""
    multi = _is_multi_label(loss_func)
    act = getattr(loss_func, "activation", None)
    if callable(act):
        return Activation("sigmoid" if multi else "softmax", act)
    if loss_func is None:
        log.warning("the learner has no loss function: scores are a softmax over the outputs")
    return Activation("sigmoid" if multi else "softmax")


def _is_multi_label(loss_func: Any) -> bool:
    from torch import nn

    inner = getattr(loss_func, "func", None)
    return (
        isinstance(loss_func, (nn.BCEWithLogitsLoss, nn.MultiLabelSoftMarginLoss))
        or isinstance(inner, (nn.BCEWithLogitsLoss, nn.MultiLabelSoftMarginLoss))
        or type(loss_func).__name__.startswith("BCE")
    )


def _resolve_items(items: ItemsArg) -> list[Any]:
    """``items`` (a folder, one file, or a list of files / raw items) -> a checked list."""
    if isinstance(items, (str, Path)):
        p = Path(items).expanduser()
        if p.is_dir():
            files = list_images(p)
            if not files:
                raise AdapterError(f"no image files in {p}")
            return files
        if p.is_file():
            return [p]
        raise AdapterError(f"items: no such file or folder: {p}")
    out = list(items or [])
    if not out:
        raise AdapterError("items is empty")
    missing = [str(x) for x in out if isinstance(x, (str, Path)) and not Path(x).expanduser().is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise AdapterError(f"{len(missing)} of the items are not files: {shown}")
    return [Path(x).expanduser() if isinstance(x, (str, Path)) else x for x in out]


def _labels_ok(dls: Any, items: list[Any]) -> int:
    """How many items the learner's label pipeline can label (it raises on unknown labels)."""
    from fastai.data.core import test_set

    try:
        ds = test_set(dls.valid_ds, items, with_labels=True)
    except Exception:
        return 0
    n_inp = getattr(ds, "n_inp", 1)
    targets = ds.tls[n_inp:] if hasattr(ds, "tls") else []
    if not targets:
        return 0
    ok = 0
    for i in range(len(items)):
        try:
            for tl in targets:
                tl[i]
            ok += 1
        except Exception:
            pass
    return ok


def _test_dl(dls: Any, items: ItemsArg, with_labels: bool | None) -> Any:
    from fastai.data.core import Datasets, TfmdLists

    files = _resolve_items(items)
    if not isinstance(getattr(dls, "valid_ds", None), (Datasets, TfmdLists)):
        raise AdapterError(
            "these DataLoaders were not built with fastai's data block API, so they cannot load "
            "new items; use data_adapters.from_folder or from_dataset instead"
        )
    if with_labels is None or with_labels:
        ok = _labels_ok(dls, files)
        if with_labels and ok < len(files):
            raise AdapterError(
                f"with_labels=True but the learner cannot label {len(files) - ok} of the "
                f"{len(files)} items (unknown class or no label)"
            )
        with_labels = ok == len(files)
        if not with_labels:
            log.info("showing %d items unlabeled (the learner's labelling labels %d of them)", len(files), ok)
    try:
        return dls.test_dl(files, with_labels=with_labels)
    except Exception as exc:
        raise AdapterError(f"fastai could not build a DataLoader over the items: {type(exc).__name__}: {exc}") from exc


def named_dl(dls: Any, dl: DlArg) -> Any:
    """The DataLoader ``dl`` names: None or 'valid' (the validation set), 'train', an index, or itself."""
    if dl is not None and not isinstance(dl, (str, int)):
        return dl
    key = {None: 1, "valid": 1, "validation": 1, "train": 0}.get(dl, dl)
    if not isinstance(key, int):
        raise AdapterError(f"dl must be 'valid', 'train', an index or a DataLoader, not {dl!r}")
    try:
        return dls[key]
    except Exception:
        raise AdapterError(f"the DataLoaders have no DataLoader {dl!r}") from None


def _choose_dl(dls: Any, dl: DlArg, items: ItemsArg, with_labels: bool | None) -> Any:
    if items is not None:
        if dl is not None:
            raise AdapterError("give dl or items, not both")
        return _test_dl(dls, items, with_labels)
    if isinstance(dl, str) and dl == "train" and hasattr(getattr(dls, "train_ds", None), "items"):
        # The training items with the validation transforms: random augmentation would make
        # an example look different each time the visualizer re-reads it.
        try:
            return dls.test_dl(dls.train_ds.items, with_labels=True)
        except Exception as exc:
            raise AdapterError(f"cannot read the training items: {type(exc).__name__}: {exc}") from exc
    chosen = named_dl(dls, dl)
    dataset = getattr(chosen, "dataset", None)
    if dataset is not None and hasattr(dataset, "__len__") and len(dataset) == 0:
        raise AdapterError(
            "the learner's DataLoader holds no example (an exported learner keeps no data): "
            "pass items= (a folder or a list of image files)"
        )
    return chosen


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


def ordered_dl(dl: Any, bs: int | None, without: tuple = ()) -> Any:
    """A copy of ``dl`` in order, every example, in this process (stable example ids), without the
    batch transforms of the types ``without``. Every fastai adapter (image, tabular, text) reads so."""
    kwargs: dict[str, Any] = dict(shuffle=False, drop_last=False, num_workers=0)
    if bs:
        kwargs["bs"] = int(bs)
    after = getattr(dl, "after_batch", None)
    if without and after is not None and hasattr(after, "fs"):
        kwargs["after_batch"] = [t for t in after.fs if not isinstance(t, without)]
    try:
        return dl.new(**kwargs)
    except Exception as exc:
        raise AdapterError(f"cannot iterate the learner's DataLoader: {type(exc).__name__}: {exc}") from exc


def _display_dl(dl: Any, bs: int | None) -> Any:
    """The images as the files hold them: ``dl`` in order without Normalize (the feature re-applies it)."""
    from fastai.data.transforms import Normalize

    return ordered_dl(dl, bs, without=(Normalize,))


def _label_list(y: Any, n: int) -> list[int | None]:
    """Targets of a batch -> class indices (None: no label). One-hot (multi-label) rows count only
    when exactly one class is set: a Batch label is a single class."""
    y = plain(y)
    if not isinstance(y, torch.Tensor) or y.shape[:1] != (n,):
        return [None] * n
    y = y.detach().cpu()
    if y.dim() == 1 and not y.is_floating_point():
        return [int(v) if v >= 0 else None for v in y.tolist()]
    if y.dim() == 2:
        out: list[int | None] = []
        for row in y:
            hot = torch.nonzero(row > 0.5).flatten().tolist()
            out.append(hot[0] if len(hot) == 1 else None)
        return out
    return [None] * n


class FastaiBatches:
    """Re-iterable, lazy Batch view of a fastai DataLoader (each ``iter()`` restarts it)."""

    def __init__(self, dl: Any) -> None:
        self.dl = dl
        self.n_inp = int(getattr(dl, "n_inp", 1) or 1)

    def __len__(self) -> int:
        return len(self.dl.dataset)

    @property
    def n_examples(self) -> int:
        """The dataset pass's total."""
        return len(self.dl.dataset)

    def __iter__(self) -> Iterator[Batch]:
        for b in self.dl:
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
            labels = _label_list(b[1], n) if len(b) > 1 else [None] * n
            yield Batch(x.detach(), labels)


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
    chosen = _choose_dl(dls, dl, items, with_labels)
    if isinstance(chosen, TfmdDL):
        normalizer = _normalizer(chosen)
        dataset: Any = FastaiBatches(_display_dl(chosen, bs))
    else:  # a plain torch DataLoader inside fastai DataLoaders (e.g. built from tensors)
        from .torch import TorchImages, _stable_loader

        normalizer, dataset = None, TorchImages(_stable_loader(chosen))
    names = read_classes(classes) if classes is not None else _vocab_names(dls)
    model = prepare_model(model, device)
    features = [image_feature(normalizer)]
    batch = first_batch(dataset, "the learner's data")
    names = check_classes(names, count_outputs(model, features, batch), "classes come from dls.vocab")
    score = _activation(loss_func)
    info = {"multi_label": score.kind == "sigmoid", "normalize": repr(normalizer) if normalizer else None}
    if hasattr(dataset, "__len__"):
        info["length"] = len(dataset)
    return Source(model, names, score, features, dataset, name=name, info=info, loss_func=unreduced(loss_func))


def unreduced(loss_func: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """The learner's loss with ``reduction='none'`` (one loss per example), as fastai's
    ``Learner.loss_not_reduced`` makes it for ``get_preds(with_loss=True)``: on a copy, so the
    learner's own loss function is never changed while it may be training."""
    if loss_func is None:
        return None
    if hasattr(loss_func, "reduction"):
        import copy

        per_example = copy.deepcopy(loss_func)
        per_example.reduction = "none"
    else:
        import functools

        per_example = functools.partial(loss_func, reduction="none")

    def loss(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return plain(per_example(out, labels))

    loss.insights_name = type(loss_func).__name__  # type: ignore[attr-defined]
    return loss


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
