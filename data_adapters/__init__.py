"""Adapters: point the visualizer at a fastai learner, an image folder or a torch dataset in one call.

Each ``from_*`` function returns a ready :class:`insights_app.AttributionVisualizer`;
each ``source_from_*`` twin returns the :class:`Source` it is built from (model, class
names, score function, features, lazy re-iterable dataset of ``Batch``) for callers who
want to combine or inspect the parts. Every user error is an :class:`AdapterError`
(a ``ValueError``) with a one-line message. fastai is imported only by the fastai adapter.
"""

from .base import AdapterError, Normalizer, Source
from .fastai import (
    from_dataloaders,
    from_export,
    from_learner,
    load_learner_file,
    source_from_dataloaders,
    source_from_export,
    source_from_learner,
)
from .folder import from_folder, source_from_folder
from .torch import from_dataset, source_from_dataset

__all__ = [
    "AdapterError",
    "Normalizer",
    "Source",
    "from_dataloaders",
    "from_dataset",
    "from_export",
    "from_folder",
    "from_learner",
    "load_learner_file",
    "source_from_dataloaders",
    "source_from_dataset",
    "source_from_export",
    "source_from_folder",
    "source_from_learner",
]
