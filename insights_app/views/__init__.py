"""The API's views, one module each, and the table that serves them over HTTP and in the widget.

Adding a view: write a module with a :class:`View` and add it to ``BUILTIN_VIEWS`` (or,
from outside the package, ``vis.register_view(view)``); the Flask app, the notebook widget
and the OpenAPI document all read ``vis.views``.
"""

from __future__ import annotations

from ..registry import Registry
from . import attribute, config, dataset, dataset_pass, examples, export, health, method_report, openapi, sanity
from .view import API_PREFIX, Served, Stream, View

BUILTIN_VIEWS: tuple[View, ...] = (
    health.VIEW,
    config.VIEW,
    openapi.VIEW,
    examples.VIEW,
    attribute.VIEW,
    dataset.VIEW,
    dataset_pass.VIEW,
    export.VIEW,
    sanity.VIEW,
    method_report.VIEW,
)


def build_views() -> Registry[View]:
    """A fresh registry of the built-in views (one per visualizer)."""
    return Registry(View, lambda view: view.kind, BUILTIN_VIEWS)


__all__ = ["API_PREFIX", "BUILTIN_VIEWS", "Served", "Stream", "View", "build_views"]
