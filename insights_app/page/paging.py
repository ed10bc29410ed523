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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..cancel import Cancel, raise_if_cancelled
from ..dataset import Example, ExampleStore, NotReadYet, Unreadable
from ..engine import Prediction
from ..errors import DatasetError
from .query import Filter

if TYPE_CHECKING:
    from ..triage import DatasetPass

PREDICT_CHUNK = 64  # examples predicted per forward pass while scanning
FILTERS_KEPT = 64  # filter indexes remembered (least recently used dropped)

# Every model's predictions of some examples: one list per model, one Prediction per example.
Predict = Callable[[Sequence[Example], Cancel | None], list[list[Prediction]]]


def matches(flt: Filter, label: int | None, preds: Sequence[Prediction]) -> bool:
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

    matches: list[int] = field(default_factory=list)
    next_id: int = 0
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class PageInfo:
    """One page's ids and how it was found (what the page's status line says)."""

    ids: list[int]
    page: int
    page_size: int
    scanned: int
    exhausted: bool
    has_next: bool
    total: int | None
    message: str = ""
    # How many examples match the filter: all of them once ``exhausted``, else those found so far
    # (for an unfiltered page, the examples known to exist).
    matched: int = 0
    dataset_size: int | None = None  # the dataset's length when it is known, whatever the filter
    newly_scanned: int = 0  # examples this request predicted to find the page (not sent)

    @property
    def first(self) -> int:
        """The position, among the matches, of this page's first example (0-based)."""
        return self.page * self.page_size

    @property
    def last_page(self) -> int | None:
        """The last page that has examples, once the count is complete (None before, or when none match)."""
        if not self.exhausted or self.matched <= 0:
            return None
        return (self.matched - 1) // self.page_size

    def to_json(self) -> dict[str, Any]:
        return {
            "ids": self.ids,
            "page": self.page,
            "page_size": self.page_size,
            "scanned": self.scanned,
            "exhausted": self.exhausted,
            "has_next": self.has_next,
            "has_prev": self.page > 0,
            "total": self.total,
            "message": self.message,
            "matched": self.matched,
            "first": self.first,
            "last_page": self.last_page,
            "dataset_size": self.dataset_size,
        }


class Pager:
    """Pages of example ids over one dataset, for any filter."""

    def __init__(
        self, store: ExampleStore, predict: Predict, max_scan: int, dataset_pass: DatasetPass | None = None
    ) -> None:
        self.store = store
        self.predict = predict
        self.max_scan = max(1, int(max_scan))
        self.dataset_pass = dataset_pass  # triage filters read its records (insights_app.triage)
        self._filters: OrderedDict[Filter, FilterIndex] = OrderedDict()
        self._filters_lock = threading.Lock()

    def find_page(self, flt: Filter, page: int, page_size: int, cancel: Cancel | None = None) -> PageInfo:
        """Ids of one page of examples matching ``flt``; scans at most ``max_scan`` new examples."""
        if flt.needs_pass:
            return self._pass_page(flt, page, page_size)
        if flt.trivial:
            return self._range_page(page, page_size, cancel)
        stop = (page + 1) * page_size
        idx = self._index_for(flt)
        with idx.lock:
            scanned = self._scan(flt, idx, self.max_scan, cancel, until=stop + 1)
            info = self._filtered_page(flt, idx, page, page_size)
            info.newly_scanned = scanned
            return info

    def count(self, flt: Filter, page: int, page_size: int, budget: int, cancel: Cancel | None = None) -> PageInfo:
        """:meth:`find_page` after scanning on, at most ``budget`` more examples, for the filter's
        count (the page's ids stay; only how many matches are known grows)."""
        if flt.needs_pass:
            return self._pass_page(flt, page, page_size)
        if flt.trivial:
            return self._range_page(page, page_size, cancel)
        idx = self._index_for(flt)
        with idx.lock:
            self._scan(flt, idx, max(0, budget), cancel)
            return self._filtered_page(flt, idx, page, page_size)

    def _scan(self, flt: Filter, idx: FilterIndex, budget: int, cancel: Cancel | None, until: int | None = None) -> int:
        """Scan on (holding ``idx.lock``) until ``until`` matches are known, the dataset ends or
        ``budget`` examples have been predicted; returns how many were."""
        scanned = 0
        while (until is None or len(idx.matches) < until) and not idx.done and budget > 0:
            raise_if_cancelled(cancel)
            batch: list[Example] = []
            passed = 0  # ids passed over: the batch's, and unreadable positions of an indexed dataset
            while len(batch) < min(PREDICT_CHUNK, budget):
                try:
                    batch.append(self.store.get(idx.next_id + passed, cancel))
                except IndexError:
                    idx.done = True
                    break
                except Unreadable:
                    pass
                passed += 1
            if not passed:
                break
            if batch:
                preds = self.predict(batch, cancel)
                for j, ex in enumerate(batch):
                    if matches(flt, ex.label, [p[j] for p in preds]):
                        idx.matches.append(ex.id)
            idx.next_id += passed
            budget -= passed
            scanned += len(batch)
        return scanned

    def _pass_page(self, flt: Filter, page: int, page_size: int) -> PageInfo:
        """A page of a triage filter, from the dataset pass's records (started here when it never ran)."""
        from ..triage.selection import select

        if self.dataset_pass is None:
            raise DatasetError("this filter needs the dataset pass, which this visualizer does not have")
        progress = self.dataset_pass.start_if_idle()
        ids = select(self.dataset_pass.snapshot(), flt)
        start, stop = page * page_size, (page + 1) * page_size
        chosen = [int(i) for i in ids[start:stop]]
        # A dataset read forward reaches only so far in one request: the ids past that are left
        # out and named (an indexed one reaches every id).
        beyond = [i for i in chosen if not self.store.reachable(i)]
        chosen = [i for i in chosen if self.store.reachable(i)]
        covered = progress.done
        msg = ""
        if not progress.complete:
            of = f" of {progress.total}" if progress.total is not None else ""
            msg = (
                f"From the {covered}{of} examples the dataset pass has covered so far"
                f"{' (it is running: Fetch again for more)' if progress.state == 'running' else ''}."
            )
            if progress.state in ("failed", "paused") and progress.message:
                msg += " " + progress.message
        elif not chosen and not beyond:
            msg = (
                f"No example matches this filter ({covered} examples, the whole dataset)."
                if not len(ids)
                else f"{len(ids)} example{'s match' if len(ids) != 1 else ' matches'} this filter: page {page + 1} "
                f"is past the last page, {(len(ids) - 1) // page_size + 1}."
            )
        if beyond:
            msg = (msg + " " if msg else "") + self._beyond_note(beyond)
        return PageInfo(
            chosen,
            page,
            page_size,
            covered,
            progress.complete,
            len(ids) > stop,
            None,
            msg,
            matched=len(ids),
            dataset_size=self.store.length,
        )

    def _beyond_note(self, beyond: Sequence[int]) -> str:
        """Why a triage page leaves out ``beyond`` (ids a forward-read dataset cannot reach now)."""
        shown = ", ".join(str(i) for i in sorted(beyond)[:5]) + (", ..." if len(beyond) > 5 else "")
        return (
            f"{len(beyond)} example{'s' if len(beyond) != 1 else ''} of this page ({shown}) "
            f"{'lie' if len(beyond) != 1 else 'lies'} beyond the {self.store.read_to} examples read so far: "
            f"this dataset is read forward, at most {self.store.max_read} more per request, so "
            f"{'they are' if len(beyond) != 1 else 'it is'} left out. Page through the dataset (no filter) "
            "to read further, or give a dataset that can be indexed (a list, a map-style Dataset)."
        )

    def _filtered_page(self, flt: Filter, idx: FilterIndex, page: int, page_size: int) -> PageInfo:
        """One page of a filter's matches as far as they are known (holding ``idx.lock``)."""
        start, stop = page * page_size, (page + 1) * page_size
        ids = idx.matches[start:stop]
        has_next = len(idx.matches) > stop or not idx.done
        msg = ""
        if not ids:
            if idx.done and idx.matches:
                last = (len(idx.matches) - 1) // page_size
                msg = (
                    f"{len(idx.matches)} example{'s match' if len(idx.matches) != 1 else ' matches'} this "
                    f"filter: page {page + 1} is past the last page, {last + 1}."
                )
            elif idx.done:
                msg = f"No example matches this filter ({idx.next_id} examples scanned, the whole dataset)."
            else:
                msg = (
                    f"No match on this page yet: {idx.next_id} examples scanned so far "
                    f"(at most {self.max_scan} per request). Press Next to scan further."
                )
        elif flt.needs_label and not idx.matches:
            msg = "This filter needs labels; examples without a label are not shown."
        return PageInfo(
            ids,
            page,
            page_size,
            idx.next_id,
            idx.done,
            has_next,
            self.store.length if not flt.classes and flt.prediction == "all" else None,
            msg,
            matched=len(idx.matches),
            dataset_size=self.store.length,
        )

    def _indexed_range_page(self, page: int, page_size: int, total: int, cancel: Cancel | None) -> PageInfo:
        """A page of a dataset read by position: its ids at once (unreadable positions left out)."""
        start, stop = page * page_size, min((page + 1) * page_size, total)
        ids = []
        for ex_id in range(start, stop):
            try:
                self.store.get(ex_id, cancel)
            except Unreadable:
                continue
            ids.append(ex_id)
        has_next = stop < total
        msg = ""
        if start >= total:
            msg = (
                f"The dataset has {total} examples: page {page + 1} is past the last page, "
                f"{max(1, (total - 1) // page_size + 1)}."
                if total
                else "The dataset is empty."
            )
        elif not ids:
            msg = f"None of the examples {start}..{stop - 1} can be read (unreadable files): page on."
        return PageInfo(
            ids, page, page_size, stop, not has_next, has_next, total, msg, matched=total, dataset_size=total
        )

    def _range_page(self, page: int, page_size: int, cancel: Cancel | None = None) -> PageInfo:
        if self.store.indexed is not None and self.store.length is not None:
            return self._indexed_range_page(page, page_size, self.store.length, cancel)
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
                return PageInfo(
                    [],
                    page,
                    page_size,
                    exc.read_to,
                    False,
                    False,
                    None,
                    f"Page {page + 1} starts at example {start}, beyond the {exc.read_to} examples read "
                    f"so far: one request reads at most {exc.max_read} more, so pages up to "
                    f"{max(1, reachable)} open now. Page forward from there to read further.",
                    matched=exc.read_to,
                )
        try:
            has_next = self.store.exists(stop, cancel) if len(ids) == page_size else False
        except (DatasetError, NotReadYet):  # the next page cannot be read now: show this one, the next says why
            has_next = True
        total = self.store.length
        msg = ""
        if not ids and total:
            last = (total - 1) // page_size
            msg = f"The dataset has {total} examples: page {page + 1} is past the last page, {last + 1}."
        elif not ids:
            msg = "The dataset is empty."
        known = total if total is not None else start + len(ids) + (1 if has_next else 0)
        return PageInfo(
            ids,
            page,
            page_size,
            stop if has_next else (total or start + len(ids)),
            total is not None and not has_next,
            has_next,
            total,
            msg,
            matched=known,
            dataset_size=total,
        )

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
