"""How each kind of feature is shown: one :class:`FeatureRenderer` per kind, registered by kind.

Every presenter owns a registry of them (:func:`build_registry`), filled with the built-in
renderers below and open to the user's own (``vis.register_feature_kind(renderer)``): a feature
whose ``kind`` names a registered renderer is shown by it. Adding a kind: a module with its
renderer, one line in ``BUILTIN_RENDERERS`` (and its display in ``static/views/features/``).
"""

from __future__ import annotations

from collections.abc import Mapping

from ...features import BaseFeature, feature_type
from ...registry import Registry
from .general import GENERAL, GeneralRenderer, general_values
from .image import IMAGE, ImageRenderer
from .renderer import FeatureRenderer, Shown
from .text import TEXT, TextRenderer

BASE = FeatureRenderer()  # features of a kind nobody registered: their values, as a flat list

BUILTIN_RENDERERS: tuple[FeatureRenderer, ...] = (IMAGE, TEXT, GENERAL, BASE)


def build_registry() -> Registry[FeatureRenderer]:
    """A fresh registry of the built-in renderers, by kind (one per presenter)."""
    return Registry(FeatureRenderer, lambda renderer: renderer.kind, BUILTIN_RENDERERS)


def renderer_for(feature: BaseFeature, renderers: Mapping[str, FeatureRenderer]) -> FeatureRenderer:
    """The renderer of the feature's type (:func:`~insights_app.features.feature_type`: its
    ``visualization_type()``, else its kind); for a type nobody registered, that of the nearest class
    it derives from whose kind or ``visualization_type`` is registered (a subclass of ImageFeature
    naming a type of its own is shown as an image), else the base renderer (a user's BaseFeature
    subclass of type "real": its values)."""
    own = feature_type(feature)
    if own in renderers:
        return renderers[own]
    for cls in type(feature).__mro__[1:]:
        for kind in _declared_types(cls):
            if kind in renderers:
                return renderers[kind]
    return renderers.get("base", BASE)


def _declared_types(cls: type) -> list[str]:
    """The types a class itself declares: its ``visualization_type()`` (when it defines one that
    can be called on the class) and its ``kind``."""
    out: list[str] = []
    if "visualization_type" in cls.__dict__:
        try:
            declared = getattr(cls, "visualization_type")()  # noqa: B009 - `cls` is any class
        except Exception:  # an instance method, or one that raises: only its kind counts
            declared = None
        if isinstance(declared, str):
            out.append(declared)
    kind = cls.__dict__.get("kind")
    if isinstance(kind, str):
        out.append(kind)
    return out


__all__ = [
    "BUILTIN_RENDERERS",
    "FeatureRenderer",
    "GeneralRenderer",
    "ImageRenderer",
    "Shown",
    "TextRenderer",
    "build_registry",
    "general_values",
    "renderer_for",
]
