"""The registered quality metrics: one line per :class:`~.spec.MetricSpec`, in the order the page lists them.

Adding a metric: a module that declares its ``MetricSpec`` (see :mod:`.spec`), and one line
below. Everything else (the request parser, the OpenAPI schema, the cost bound, the store keys,
``/config`` and so the page, the method report) reads this list through :func:`metric_registry`.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..registry import Registry
from .deletion import DELETION, INSERTION
from .infidelity import INFIDELITY
from .sensitivity import SENSITIVITY
from .spec import MetricSpec, Setting

BUILTIN_METRICS: tuple[MetricSpec, ...] = (
    DELETION,
    INSERTION,
    INFIDELITY,
    SENSITIVITY,
)


def metric_registry() -> Registry[MetricSpec]:
    """A fresh registry of the built-in metrics by name (each visualizer owns one, open to
    ``vis.register_metric``; the list above is the one source of the built-in ones)."""
    return Registry(MetricSpec, lambda spec: spec.name, BUILTIN_METRICS)


MetricRegistry = Mapping[str, MetricSpec]


def metric_names(registry: MetricRegistry | None = None) -> tuple[str, ...]:
    """The metrics' names in page order (the built-in ones unless a visualizer's registry is given)."""
    return tuple(metric_registry() if registry is None else registry)


def metric_settings(registry: MetricRegistry | None = None) -> dict[str, Setting]:
    """Every metric's settings by name, in an order that keeps each metric's own (a setting that
    several metrics declare is one setting, and must be declared alike)."""
    order: list[str] = []
    by_name: dict[str, Setting] = {}
    for spec in (metric_registry() if registry is None else registry).values():
        for i, setting in enumerate(spec.settings):
            known = by_name.get(setting.name)
            if known is not None:
                if known != setting:
                    raise ValueError(f"metric {spec.name!r} declares setting {setting.name!r} unlike another metric")
                continue
            by_name[setting.name] = setting
            # before the first of this metric's later settings that is already placed, else last
            later = [order.index(s.name) for s in spec.settings[i + 1 :] if s.name in order]
            if later:
                order.insert(min(later), setting.name)
            else:
                order.append(setting.name)
    return {name: by_name[name] for name in order}


__all__ = ["BUILTIN_METRICS", "MetricRegistry", "metric_names", "metric_registry", "metric_settings"]
