"""Adapters: point the visualizer at a fastai learner, an image folder or a torch dataset in one call.

Each ``from_*`` function returns a ready :class:`insights_app.AttributionVisualizer`;
each ``source_from_*`` twin returns the :class:`Source` it is built from (model, class
names, score function, features, lazy re-iterable dataset of ``Batch``) for callers who
want to combine or inspect the parts. Every user error is an :class:`AdapterError`
(a ``ValueError``) with a one-line message.

The names are imported on first use, as in ``insights_app``: ``data_adapters.errors`` and
``data_adapters.classes`` load without torch (the command line checks ``--classes`` with them
before the slow work), and fastai is imported only with the fastai adapter.
"""

from __future__ import annotations

_PUBLIC = {
    "AdapterError": "errors",
    "CaptumInterpretation": "captum_interpretation",
    "Normalizer": "base",
    "Source": "base",
    "from_dataloaders": "fastai",
    "from_export": "fastai",
    "from_learner": "fastai",
    "load_learner_file": "fastai",
    "source_from_dataloaders": "fastai",
    "source_from_export": "fastai",
    "source_from_learner": "fastai",
    "from_tabular_learner": "fastai_tabular",
    "source_from_tabular_learner": "fastai_tabular",
    "from_folder": "folder",
    "source_from_folder": "folder",
    "from_dataset": "torch",
    "source_from_dataset": "torch",
    "from_texts": "text",
    "source_from_texts": "text",
    "load_model": "weights",
}
__all__ = sorted(_PUBLIC)


from insights_app import lazy_exports  # noqa: E402  (imports nothing of torch)

__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC, globals())
