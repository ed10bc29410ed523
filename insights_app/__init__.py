"""insights-app: attribution explorer for PyTorch classifiers (a drop-in for captum.insights).

Code written for ``captum.insights`` runs after changing its imports::

    from insights_app import AttributionVisualizer, Batch
    from insights_app.features import ImageFeature, TextFeature, GeneralFeature

The names below are imported on first use, so that the light modules (``insights_app.access``,
``insights_app.limits``) can be used without loading torch and captum: the command line checks
its arguments before that slow work.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "AttributionVisualizer": "visualizer",
    "Batch": "dataset",
    "BaseFeature": "features",
    "EmptyFeature": "features",
    "FeatureOutput": "features",
    "GeneralFeature": "features",
    "ImageFeature": "features",
    "TextFeature": "features",
}
__all__ = sorted(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    try:  # a submodule not imported yet: insights_app.features after `import insights_app`
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(list(globals()) + list(_PUBLIC))
