"""The registered quality metrics: one line per :class:`~.spec.MetricSpec`, in the order the page lists them.

Adding a metric: a module that declares its ``MetricSpec`` (see :mod:`.spec`), and one line
below. Everything else (the request parser, the OpenAPI schema, the cost bound, the store keys,
``/config`` and so the page, the method report) reads this list through :func:`metric_registry`.
"""

from __future__ import annotations

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
    """The registered metrics by name (read afresh: the list is the one source)."""
    return Registry(MetricSpec, lambda spec: spec.name, BUILTIN_METRICS)


def metric_names() -> tuple[str, ...]:
    return tuple(metric_registry())


def metric_settings() -> dict[str, Setting]:
    """Every metric's settings by name, in an order that keeps each metric's own (a setting that
    several metrics declare is one setting, and must be declared alike)."""
    order: list[str] = []
    by_name: dict[str, Setting] = {}
    for spec in metric_registry().values():
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


__all__ = ["BUILTIN_METRICS", "metric_names", "metric_registry", "metric_settings"]
