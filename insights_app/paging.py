"""Which examples a page shows: filters, their scan indexes, and pages of stable ids.

An unfiltered page is a range of ids. A filtered one needs every model's prediction of
each example it passes over, so matches are found by scanning the dataset in order and
remembered per filter (:class:`FilterIndex`): paging back is free, paging forward
continues the scan. A request scans at most ``max_scan`` new examples and says how far it
got, so no filter can make a request run unbounded.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from .cancel import Cancel, raise_if_cancelled
from .dataset import Example, ExampleStore, NotReadYet
from .engine import Prediction
from .errors import DatasetError
from .query import Filter

PREDICT_CHUNK = 64  # examples predicted per forward pass while scanning
FILTERS_KEPT = 64  # filter indexes remembered (least recently used dropped)

# Every model's predictions of some examples: one list per model, one Prediction per example.
Predict = Callable[[Sequence[Example], Optional[Cancel]], List[List[Prediction]]]


def matches(flt: Filter, label: Optional[int], preds: Sequence[Prediction]) -> bool:
    """Whether an example with ``label`` and these predictions (one per model) passes ``flt``.

    Classes match each model's top prediction (``class_source="prediction"``: any model
    predicting one of them) or the true label. ``correct`` means every model's top
    prediction is the label; ``incorrect``, at least one model's is not: with several
    models, "incorrect" is where they are worth comparing. Both need a label, so examples
    without one pass only filters that do not. An example a model failed on matches no
    filter (unfiltered pages show it, with its error).
    """
    if any(p.error for p in preds):
        return False
    top1 = [p.indices[0] for p in preds]
    if flt.classes:
        if flt.class_source == "label":
            if label is None or label not in flt.classes:
                return False
        elif not any(t in flt.classes for t in top1):
            return False
    if flt.prediction == "all":
        return True
    if label is None:
        return False
    correct = all(t == label for t in top1)
    return correct if flt.prediction == "correct" else any(t != label for t in top1)


@dataclass
class FilterIndex:
    """Ids matching one filter, in dataset order, found so far by scanning."""

    matches: List[int] = field(default_factory=list)
    next_id: int = 0
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class PageInfo:
    """One page's ids and how it was found (what the page's status line says)."""

    ids: List[int]
    page: int
    page_size: int
    scanned: int
    exhausted: bool
    has_next: bool
    total: Optional[int]
    message: str = ""

    def to_json(self) -> Dict[str, Any]:
        return {
            "ids": self.ids, "page": self.page, "page_size": self.page_size, "scanned": self.scanned,
            "exhausted": self.exhausted, "has_next": self.has_next, "has_prev": self.page > 0,
            "total": self.total, "message": self.message,
        }


class Pager:
    """Pages of example ids over one dataset, for any filter."""

    def __init__(self, store: ExampleStore, predict: Predict, max_scan: int) -> None:
        self.store = store
        self.predict = predict
        self.max_scan = max(1, int(max_scan))
        self._filters: "OrderedDict[Filter, FilterIndex]" = OrderedDict()
        self._filters_lock = threading.Lock()

    def find_page(self, flt: Filter, page: int, page_size: int, cancel: Optional[Cancel] = None) -> PageInfo:
        """Ids of one page of examples matching ``flt``; scans at most ``max_scan`` new examples."""
        if flt.trivial:
            return self._range_page(page, page_size, cancel)
        start, stop = page * page_size, (page + 1) * page_size
        idx = self._index_for(flt)
        with idx.lock:
            budget = self.max_scan
            while len(idx.matches) < stop + 1 and not idx.done and budget > 0:
                raise_if_cancelled(cancel)
                batch: List[Example] = []
                while len(batch) < min(PREDICT_CHUNK, budget):
                    try:
                        batch.append(self.store.get(idx.next_id + len(batch), cancel))
                    except IndexError:
                        idx.done = True
                        break
                if not batch:
                    break
                preds = self.predict(batch, cancel)
                for j, ex in enumerate(batch):
                    if matches(flt, ex.label, [p[j] for p in preds]):
                        idx.matches.append(ex.id)
                idx.next_id += len(batch)
                budget -= len(batch)
            ids = idx.matches[start:stop]
            has_next = len(idx.matches) > stop or not idx.done
            msg = ""
            if not ids:
                if idx.done:
                    msg = f"No example matches this filter ({idx.next_id} examples scanned, the whole dataset)."
                else:
                    msg = (f"No match on this page yet: {idx.next_id} examples scanned so far "
                           f"(at most {self.max_scan} per request). Press Next to scan further.")
            elif flt.needs_label and not idx.matches:
                msg = "This filter needs labels; examples without a label are not shown."
            return PageInfo(ids, page, page_size, idx.next_id, idx.done, has_next,
                            self.store.length if not flt.classes and flt.prediction == "all" else None, msg)

    def _range_page(self, page: int, page_size: int, cancel: Optional[Cancel] = None) -> PageInfo:
        start, stop = page * page_size, (page + 1) * page_size
        ids = []
        try:
            for ex_id in range(start, stop):
                if not self.store.exists(ex_id, cancel):
                    break
                ids.append(ex_id)
        except NotReadYet as exc:
            if not ids:
                reachable = math.ceil((exc.read_to + exc.max_read) / page_size)  # pages starting before the bound
                return PageInfo([], page, page_size, exc.read_to, False, False, None,
                                f"Page {page + 1} starts at example {start}, beyond the {exc.read_to} examples read "
                                f"so far: one request reads at most {exc.max_read} more, so pages up to "
                                f"{max(1, reachable)} open now. Page forward from there to read further.")
        try:
            has_next = self.store.exists(stop, cancel) if len(ids) == page_size else False
        except (DatasetError, NotReadYet):  # the next page cannot be read now: show this one, the next says why
            has_next = True
        total = self.store.length
        msg = "" if ids else (f"The dataset has {total} examples; this page is past its end." if total is not None
                              else "The dataset is empty.")
        return PageInfo(ids, page, page_size, stop if has_next else (total or start + len(ids)),
                        self.store.length is not None and not has_next, has_next, total, msg)

    def _index_for(self, flt: Filter) -> FilterIndex:
        with self._filters_lock:
            idx = self._filters.get(flt)
            if idx is None:
                idx = self._filters[flt] = FilterIndex()
                while len(self._filters) > FILTERS_KEPT:
                    self._filters.popitem(last=False)
            else:
                self._filters.move_to_end(flt)
            return idx
