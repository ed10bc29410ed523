"""fastai tabular learners (``tabular_learner`` on ``TabularDataLoaders``) -> a Source with decoded rows.

What the page shows: two general features, one per kind of column, each with one attribution
per column (the bar chart the page draws for a general feature):

- ``continuous``: the continuous columns, shown *unnormalized* (the DataFrame's values after
  fastai's ``FillMissing``). The dataset yields them in display space, and the feature's
  ``input_transforms`` re-apply fastai's tabular ``Normalize`` (its per-column means and stds),
  as the image adapter does with an image ``Normalize``: the model sees what fastai feeds it.
- ``categorical``: the categorical columns (``FillMissing``'s ``*_na`` columns included), shown
  as their category names. The dataset yields the category codes (integers, ``#na#`` is 0).

How categorical columns are attributed. Gradient methods cannot differentiate integer codes,
and the engine attributes a feature's model input (``ctx.inputs``) with every method. So the
model input of the categorical feature is not the codes but their *embeddings*: the feature's
input transform looks each code up in the learner's own embedding tables (``model.embeds``,
detached: a plain float tensor, the concatenation of every column's embedding), and the model
the visualizer gets is :class:`EmbeddedTabularModel`, fastai's ``TabularModel.forward`` from
its embedding output on (dropout, ``bn_cont``, the layers). Every method then runs unchanged
(Integrated Gradients, Saliency, Feature Ablation, the SHAP methods...), with no layer hooks
and nothing special in the engine; this is what ``LayerIntegratedGradients`` on the embedding
layers computes, without a layer method. The feature's ``reduce_attribution`` sums each
column's embedding dimensions into one value per column. Baselines are made in display space
and go through the same transform, so a categorical column's baseline is always code 0, the
``#na#`` (unknown) category's embedding (integer inputs get no random baselines); the
continuous columns' "feature" baseline is their training means (normalized 0), their "zeros"
baseline the raw value 0. A perturbation method that replaces single elements (Feature
Ablation, Occlusion, Shapley sampling, whose masks the engine makes per element for
non-image inputs) ablates one embedding dimension at a time; summed per column that is the
column's effect only as far as the model is additive in its embedding dimensions.

Category names: the categorical feature's ``visualization_transform`` turns codes into names,
which the presenter shows for any general feature that has one. Classes come from
``dls.vocab``, scores from the loss's activation and the dataset pass's loss from the
learner's loss function with ``reduction='none'``, as for image learners
(:mod:`data_adapters.fastai`); labels are the target column's class indices.

New rows: ``items`` is a DataFrame (or a CSV file) with the training columns; it goes through
``dls.test_dl`` (the learner's procs: categories, filled values, normalization), which is what
an exported learner (that keeps no data) needs. Without the target column (or with
``with_labels=False``) the rows are shown unlabeled.

The model wrapper and the two features are in :mod:`data_adapters.fastai_tabular_model`; this
module reads the rows and builds the Source.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from insights_app import AttributionVisualizer, Batch
from insights_app.features import BaseFeature
from insights_app.tensors import plain

from .base import (
    AdapterError,
    ClassesArg,
    Source,
    check_classes,
    count_outputs,
    first_batch,
    prepare_model,
)
from .classes import read_classes
from .fastai_common import (
    activation,
    dl_block,
    dl_block_size,
    label_list,
    named_dl,
    ordered_dl,
    unreduced,
    vocab_names,
)
from .fastai_tabular_model import (
    CategoricalFeature,
    ContinuousFeature,
    EmbedCodes,
    EmbeddedTabularModel,
    Standardize,
)

log = logging.getLogger(__name__)
Device = str | torch.device | None
DlArg = None | str | int | Any


def is_tabular(learn_or_dls: Any) -> bool:
    """Whether a Learner (or DataLoaders) is fastai tabular: its loaders read a ``TabularPandas``.

    Looked up in ``sys.modules``: a tabular learner (trained here or unpickled) has imported
    ``fastai.tabular.core``, so an image learner never pays for importing it.
    """
    core = sys.modules.get("fastai.tabular.core")
    if core is None:
        return False
    dls = getattr(learn_or_dls, "dls", learn_or_dls)
    loaders = getattr(dls, "loaders", None) or []
    return any(isinstance(getattr(dl, "dataset", None), core.Tabular) for dl in loaders) or isinstance(
        getattr(dls, "dataset", None), core.Tabular
    )


# ---------------------------------------------------------------------- the data


class TabularBatches:
    """Re-iterable, lazy Batch view of a fastai tabular DataLoader: (codes, raw values), labels."""

    def __init__(self, dl: Any, normalize: Standardize | None, has_cats: bool, has_conts: bool, labelled: bool) -> None:
        self.dl = dl
        self.normalize = normalize
        self.has_cats, self.has_conts, self.labelled = has_cats, has_conts, labelled
        self._block_size: int | None | bool = False  # not asked yet

    def __len__(self) -> int:
        return len(self.dl.dataset)

    @property
    def n_examples(self) -> int:
        return len(self.dl.dataset)

    @property
    def block_size(self) -> int | None:
        """Rows a batch holds, when the DataLoader reads its rows by index (see ``read_block``)."""
        if self._block_size is False:
            self._block_size = dl_block_size(self.dl)
        return self._block_size

    def read_block(self, start: int, stop: int) -> Batch:
        """Rows ``start..stop-1`` at once (an :class:`insights_app.dataset.IndexedDataset`)."""
        with warnings.catch_warnings():  # torch's note on fastai's read-only DataFrame arrays
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return self._batch(dl_block(self.dl, start, stop))

    def _batch(self, b: Any) -> Batch:
        cats, conts = plain(b[0]), plain(b[1])
        n = int(cats.shape[0])
        inputs = []
        if self.has_cats:
            inputs.append(cats.detach().long())
        if self.has_conts:
            x = conts.detach().float()
            inputs.append(self.normalize.inverse(x) if self.normalize is not None else x)
        labels: list[int | None] = [None] * n
        if self.labelled and len(b) > 2:
            y = plain(b[2])
            if isinstance(y, torch.Tensor) and y.dim() == 2 and y.shape[1] == 1:
                y = y[:, 0]
            if isinstance(y, torch.Tensor) and not y.is_floating_point():
                y = y.long()
            labels = label_list(y, n)
        return Batch(tuple(inputs), labels)

    def __iter__(self) -> Iterator[Batch]:
        rows = iter(self.dl)
        while True:
            with warnings.catch_warnings():  # torch's note on fastai's read-only DataFrame arrays (once per process)
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                try:
                    b = next(rows)
                except StopIteration:
                    return
            yield self._batch(b)


def _procs(to: Any) -> list[Any]:
    return list(getattr(getattr(to, "procs", None), "fs", []) or [])


def _standardize(to: Any) -> Standardize | None:
    from fastai.data.transforms import Normalize

    for p in _procs(to):
        if isinstance(p, Normalize) and isinstance(getattr(p, "means", None), dict):
            cols = list(to.cont_names)
            try:
                means = [float(p.means[c]) for c in cols]
                stds = [float(p.stds[c]) for c in cols]
            except KeyError as exc:
                raise AdapterError(f"the learner's Normalize has no statistics for column {exc}") from None
            return Standardize(means, stds)
    return None


def _vocabs(to: Any) -> list[list[str]]:
    from fastai.tabular.core import Categorify

    cat = next((p for p in _procs(to) if isinstance(p, Categorify)), None)
    out = []
    for c in to.cat_names:
        vocab = cat.classes.get(c) if cat is not None else None
        if vocab is None:
            raise AdapterError(f"the categorical column {c!r} has no categories (the learner has no Categorify)")
        out.append([str(v) for v in vocab])
    return out


def _read_items(items: Any) -> Any:
    import pandas as pd

    if isinstance(items, pd.DataFrame):
        return items
    if isinstance(items, (str, Path)):
        p = Path(items).expanduser()
        if not p.is_file():
            raise AdapterError(f"items: no such CSV file: {p}")
        try:
            return pd.read_csv(p)
        except Exception as exc:
            raise AdapterError(f"cannot read {p} as CSV: {type(exc).__name__}: {exc}") from exc
    raise AdapterError(f"a tabular learner's items are a pandas DataFrame or a CSV file, not {type(items).__name__}")


def _test_dl(dls: Any, items: Any, with_labels: bool | None) -> tuple:
    """``dls.test_dl`` over new rows; (the DataLoader, whether its rows are labelled)."""
    df = _read_items(items)
    if len(df) == 0:
        raise AdapterError("items holds no row")
    template = getattr(dls, "train_ds", None)
    if template is None:
        template = dls.valid_ds
    needed = list(template.cat_names) + list(template.cont_names)
    needed = [c for c in needed if not (c.endswith("_na") and c[:-3] in template.cont_names)]  # FillMissing adds these
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise AdapterError(
            f"items lacks the learner's column{'s' if len(missing) > 1 else ''} "
            + ", ".join(repr(c) for c in missing[:5])
        )
    y_names = list(template.y_names)
    has_y = all(c in df.columns for c in y_names)
    if with_labels and not has_y:
        raise AdapterError(f"with_labels=True but items has no target column {', '.join(map(repr, y_names))}")
    labelled = has_y if with_labels is None else bool(with_labels)
    if not labelled:  # fastai reads a target column in every batch: a placeholder, ignored
        df = df.copy()
        first = _first_class(dls)
        for c in y_names:
            df[c] = first
    try:
        dl = dls.test_dl(df)
    except Exception as exc:
        raise AdapterError(f"fastai could not process the rows: {type(exc).__name__}: {exc}") from exc
    return dl, labelled


def _first_class(dls: Any) -> Any:
    """A class of the learner's vocab (the placeholder target of unlabelled rows)."""
    try:
        vocab = list(dls.vocab)
    except Exception:
        vocab = []
    return vocab[0] if vocab else 0


def _choose_dl(dls: Any, dl: DlArg, items: Any, with_labels: bool | None) -> tuple:
    if items is not None:
        if dl is not None:
            raise AdapterError("give dl or items, not both")
        return _test_dl(dls, items, with_labels)
    chosen = named_dl(dls, dl)
    if len(getattr(chosen, "dataset", ())) == 0:
        raise AdapterError(
            "the learner's DataLoader holds no row (an exported learner keeps no data): "
            "pass items= (a DataFrame or a CSV file with the learner's columns)"
        )
    return chosen, with_labels is not False


def _display_dl(dl: Any, bs: int | None) -> Any:
    """``dl`` in order, every example, in this process (stable example ids)."""
    return ordered_dl(dl, bs)


def _is_classifier(to: Any) -> bool:
    from fastai.data.transforms import Categorize, MultiCategorize

    return any(isinstance(p, (Categorize, MultiCategorize)) for p in _procs(to))


def source_from_tabular(
    dls: Any,
    model: torch.nn.Module,
    loss_func: Any,
    dl: DlArg = None,
    items: Any = None,
    *,
    with_labels: bool | None = None,
    classes: ClassesArg = None,
    device: Device = None,
    bs: int | None = None,
    name: str | None = None,
) -> Source:
    """A :class:`Source` over tabular DataLoaders and their ``TabularModel``."""
    chosen, labelled = _choose_dl(dls, dl, items, with_labels)
    to = chosen.dataset
    if not _is_classifier(to):
        raise AdapterError("this tabular learner predicts numbers (a regression); insights-app shows classifiers")
    wrapped = EmbeddedTabularModel(model)
    cat_names, cont_names = [str(c) for c in to.cat_names], [str(c) for c in to.cont_names]
    embeds = wrapped.parts.embeds
    if wrapped.has_cats and len(embeds) != len(cat_names):
        raise AdapterError(f"the model embeds {len(embeds)} categorical columns but the data has {len(cat_names)}")
    features: list[BaseFeature] = []
    normalize = _standardize(to) if cont_names else None
    if wrapped.has_cats:
        features.append(CategoricalFeature("categorical", cat_names, _vocabs(to), EmbedCodes(embeds)))
    if wrapped.has_conts:
        features.append(ContinuousFeature("continuous", cont_names, normalize))
    dataset = TabularBatches(_display_dl(chosen, bs), normalize, wrapped.has_cats, wrapped.has_conts, labelled)
    ready = prepare_model(wrapped, device)  # the same module, in eval mode on the device
    names = read_classes(classes) if classes is not None else vocab_names(dls)
    batch = first_batch(dataset, "the learner's rows")
    names = check_classes(names, count_outputs(ready, features, batch), "classes come from dls.vocab")
    score = activation(loss_func)
    info = {
        "multi_label": score.kind == "sigmoid",
        "tabular": True,
        "categorical": cat_names,
        "continuous": cont_names,
        "length": len(dataset),
        "labelled": labelled,
    }
    return Source(ready, names, score, features, dataset, name=name, info=info, loss_func=unreduced(loss_func))


def source_from_tabular_learner(
    learn: Any,
    dl: DlArg = None,
    items: Any = None,
    *,
    with_labels: bool | None = None,
    classes: ClassesArg = None,
    device: Device = None,
    bs: int | None = None,
    name: str | None = None,
) -> Source:
    """A :class:`Source` over a tabular Learner: its validation rows, or ``items`` (a DataFrame
    or CSV file through ``dls.test_dl``). ``data_adapters.source_from_learner`` comes here for one."""
    return source_from_tabular(
        learn.dls,
        learn.model,
        getattr(learn, "loss_func", None),
        dl,
        items,
        with_labels=with_labels,
        classes=classes,
        device=device,
        bs=bs,
        name=name,
    )


def from_tabular_learner(
    learn: Any,
    dl: DlArg = None,
    items: Any = None,
    *,
    with_labels: bool | None = None,
    classes: ClassesArg = None,
    device: Device = None,
    bs: int | None = None,
    name: str | None = None,
    **visualizer_kwargs: Any,
) -> AttributionVisualizer:
    """``vis = from_tabular_learner(learn)`` (what ``data_adapters.from_learner`` does for a tabular learner)."""
    return source_from_tabular_learner(
        learn, dl, items, with_labels=with_labels, classes=classes, device=device, bs=bs, name=name
    ).visualizer(**visualizer_kwargs)
