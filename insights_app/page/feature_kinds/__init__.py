"""How each kind of feature is shown: one :class:`FeatureRenderer` per kind, registered by kind.

Every presenter owns a registry of them (:func:`build_registry`), filled with the built-in
renderers below and open to the user's own (``vis.register_feature_kind(renderer)``): a feature
whose ``kind`` names a registered renderer is shown by it. Adding a kind: a module with its
renderer, one line in ``BUILTIN_RENDERERS`` (and its display in ``static/views/features/``).
"""

from __future__ import annotations

from collections.abc import Mapping

from ...features import BaseFeature
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
    """The renderer of the feature's kind; for a kind nobody registered, that of the nearest class
    it derives from whose kind is registered (a subclass of ImageFeature naming a kind of its own is
    shown as an image), else the base renderer."""
    for cls in type(feature).__mro__:
        kind = feature.kind if cls is type(feature) else cls.__dict__.get("kind")
        if isinstance(kind, str) and kind in renderers:
            return renderers[kind]
    return renderers.get("base", BASE)


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
