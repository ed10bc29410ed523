"""What the fastai adapters share: reading a learner's DataLoaders, its class names, its score and loss.

The image (``fastai_learner.py``), tabular (``fastai_tabular.py``) and text (``fastai_text.py``)
adapters and ``CaptumInterpretation`` read a learner the same way: the DataLoader a caller names
(or one over new items, through the learner's own ``test_dl``), copied in order without random
batches; the class names of ``dls.vocab``; the score function and the unreduced loss fastai's
``get_preds`` would use. They import these from here, and nothing from each other's privates.
fastai is imported with this module, its import-time deprecation notes silenced (:func:`import_fastai`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from insights_app import quiet_imports
from insights_app.tensors import plain

from .base import Activation, AdapterError
from .folder_files import list_images

log = logging.getLogger(__name__)
ItemsArg = None | str | Path | Sequence[Any]
DlArg = None | str | int | Any
Device = str | torch.device | None


def import_fastai() -> None:
    """fastai's modules, once, with their import-time deprecation notes silenced (see the module doc)."""
    with quiet_imports():
        try:  # basics: the learner, callbacks, interpret (which imports pandas); vision.data: image types
            import fastai.basics  # noqa: F401
            import fastai.vision.data  # noqa: F401
        except ImportError:  # pragma: no cover - fastai missing: the functions' own imports say so
            pass


import_fastai()


def vocab_names(dls: Any) -> list[str] | None:
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


def activation(loss_func: Any) -> Activation:
    """The score function fastai's ``get_preds`` would apply: the loss's ``activation``."""
    multi = is_multi_label(loss_func)
    act = getattr(loss_func, "activation", None)
    if callable(act):
        return Activation("sigmoid" if multi else "softmax", act)
    if loss_func is None:
        log.warning("the learner has no loss function: scores are a softmax over the outputs")
    return Activation("sigmoid" if multi else "softmax")


def is_multi_label(loss_func: Any) -> bool:
    from torch import nn

    inner = getattr(loss_func, "func", None)
    return (
        isinstance(loss_func, (nn.BCEWithLogitsLoss, nn.MultiLabelSoftMarginLoss))
        or isinstance(inner, (nn.BCEWithLogitsLoss, nn.MultiLabelSoftMarginLoss))
        or type(loss_func).__name__.startswith("BCE")
    )


def resolve_items(items: ItemsArg) -> list[Any]:
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


def labels_ok(dls: Any, items: list[Any]) -> int:
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


def test_dl(dls: Any, items: ItemsArg, with_labels: bool | None) -> Any:
    from fastai.data.core import Datasets, TfmdLists

    files = resolve_items(items)
    if not isinstance(getattr(dls, "valid_ds", None), (Datasets, TfmdLists)):
        raise AdapterError(
            "these DataLoaders were not built with fastai's data block API, so they cannot load "
            "new items; use data_adapters.from_folder or from_dataset instead"
        )
    if with_labels is None or with_labels:
        ok = labels_ok(dls, files)
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
    aliases: dict[str | int | None, int] = {None: 1, "valid": 1, "validation": 1, "train": 0}
    key = aliases.get(dl, dl)
    if not isinstance(key, int):
        raise AdapterError(f"dl must be 'valid', 'train', an index or a DataLoader, not {dl!r}")
    try:
        return dls[key]
    except Exception:
        raise AdapterError(f"the DataLoaders have no DataLoader {dl!r}") from None


def choose_dl(dls: Any, dl: DlArg, items: ItemsArg, with_labels: bool | None) -> Any:
    if items is not None:
        if dl is not None:
            raise AdapterError("give dl or items, not both")
        return test_dl(dls, items, with_labels)
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


def display_dl(dl: Any, bs: int | None) -> Any:
    """The images as the files hold them: ``dl`` in order without Normalize (the feature re-applies it)."""
    from fastai.data.transforms import Normalize

    return ordered_dl(dl, bs, without=(Normalize,))


def dl_block_size(dl: Any) -> int | None:
    """The batch size of a fastai DataLoader that reads its items by index in order (what
    :func:`dl_block` reads), else None (an iterable dataset: read forward only). It lists the
    DataLoader's order once: callers keep the answer."""
    bs = getattr(dl, "bs", None)
    if not getattr(dl, "indexed", False) or not isinstance(bs, int) or bs < 1:
        return None
    if getattr(dl, "shuffle", False) or getattr(dl, "drop_last", False):
        return None
    try:  # an order of its own (fastai's SortedDL sorts texts by length) is read forward only
        in_order = list(dl.get_idxs()) == list(range(len(dl.dataset)))
    except Exception:
        return None
    return bs if in_order else None


def dl_block(dl: Any, start: int, stop: int) -> Any:
    """Items ``start..stop-1`` of a fastai DataLoader as one batch, made as its iteration makes it
    (item transforms, collation, batch transforms), without reading the items before them."""
    from fastai.torch_core import to_device

    dl.before_iter()  # the batch transforms' split (validation transforms), as iteration sets it
    items = [dl.do_item(i) for i in range(start, stop)]
    if any(item is None for item in items):
        raise AdapterError(f"the DataLoader skips some of its items {start}..{stop - 1}; it cannot be read by index")
    b = dl.do_batch(items)
    if dl.device is not None:
        b = to_device(b, dl.device)
    return dl.after_batch(b)


def label_list(y: Any, n: int) -> list[int | None]:
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
