"""The fastai adapter's public names: ``from data_adapters.fastai import from_learner, CaptumInterpretation``.

A fastai ``Learner``, its ``DataLoaders`` or an exported ``.pkl`` -> a Source (``fastai_learner.py``:
images; ``fastai_tabular.py``: rows; ``fastai_text.py``: token ids; what they share is in
``fastai_common.py``), and ``CaptumInterpretation``, the drop-in for
``fastai.callback.captum.CaptumInterpretation`` (``captum_interpretation.py``). This module only
gathers them (importing it imports fastai); nothing in the package imports it.
"""

from __future__ import annotations

from .captum_interpretation import CaptumInterpretation
from .fastai_common import named_dl, ordered_dl, unreduced
from .fastai_learner import (
    FastaiBatches,
    from_dataloaders,
    from_export,
    from_learner,
    load_learner_file,
    source_from_dataloaders,
    source_from_export,
    source_from_learner,
)

__all__ = [
    "CaptumInterpretation",
    "FastaiBatches",
    "from_dataloaders",
    "from_export",
    "from_learner",
    "load_learner_file",
    "named_dl",
    "ordered_dl",
    "source_from_dataloaders",
    "source_from_export",
    "source_from_learner",
    "unreduced",
]
