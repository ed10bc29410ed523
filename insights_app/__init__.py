"""insights-app: attribution explorer for PyTorch classifiers (a drop-in for captum.insights).

Code written for ``captum.insights`` runs after changing its imports::

    from insights_app import AttributionVisualizer, Batch
    from insights_app.features import ImageFeature, TextFeature, GeneralFeature
    from insights_app import FilterConfig   # captum.insights.attr_vis.app.FilterConfig

The names below are imported on first use, so that the light modules (``insights_app.transport.access``,
``insights_app.limits``) can be used without loading torch and captum: the command line checks
its arguments before that slow work.

``quiet_imports()`` wraps the imports of third-party packages that we make on the user's behalf:
their import-time deprecation notes (fastai's ``torch.jit.script`` FutureWarning) would otherwise
be the first thing a notebook cell shows, above the widget, and the user cannot act on them.
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

_PUBLIC = {
    "AttributionVisualizer": "visualizer",
    "Batch": "dataset",
    "BaseFeature": "features",
    "EmptyFeature": "features",
    "FeatureOutput": "features",
    "FilterConfig": "legacy",
    "GeneralFeature": "features",
    "ImageFeature": "features",
    "TextFeature": "features",
}
__all__ = sorted(_PUBLIC)
__version__ = "0.1.0"
# The packages whose import-time deprecation notes quiet_imports() hides (matched against the module a
# warning is attributed to: torch's own ``torch.jit._script`` for fastai's use of torch.jit.script).
THIRD_PARTY_MODULES = (
    r"(torch|torchvision|captum|fastai|fastcore|fastprogress|fastdownload|pandas|numpy|scipy|"
    r"sklearn|PIL|matplotlib|flask|werkzeug|waitress|anywidget|ipywidgets|traitlets|IPython)(\.|$)"
)
QUIET_CATEGORIES = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


@contextlib.contextmanager
def quiet_imports() -> Iterator[None]:
    """Hide deprecation warnings that third-party modules raise while we import them (or unpickle with them).

    Only deprecation categories, only when attributed to a third-party package's module, and only
    inside the block: the user's own warnings, and every warning after the import, still show.
    """
    with warnings.catch_warnings():
        for category in QUIET_CATEGORIES:
            warnings.filterwarnings("ignore", category=category, module=THIRD_PARTY_MODULES)
        yield


def lazy_exports(
    package: str, public: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list]]:
    """A package's ``__getattr__`` and ``__dir__`` that import its public names (name -> submodule) and its
    submodules on first use, with :func:`quiet_imports` (insights_app and data_adapters share them)."""

    def get(name: str) -> Any:
        if name in public:
            with quiet_imports():
                module = importlib.import_module(f".{public[name]}", package)
            return getattr(module, name)
        try:  # a submodule not imported yet: insights_app.features after `import insights_app`
            with quiet_imports():
                return importlib.import_module(f".{name}", package)
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{name}":
                raise
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def names() -> list:
        return sorted(list(namespace) + list(public))

    return get, names


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC, globals())
