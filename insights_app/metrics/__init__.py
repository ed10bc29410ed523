"""Quality metrics of an explanation, next to the map they judge: one metric per module.

:mod:`.deletion` (deletion and insertion curves), :mod:`.infidelity` and :mod:`.sensitivity`
(captum.metrics, seeded), each declaring its :class:`~.spec.MetricSpec`, listed in :mod:`.registered`;
:mod:`.sanity` (the model-randomization check), :mod:`.report` (every method over a sample of the
dataset). :mod:`.options` parses what a request asks for; :mod:`.evaluate` computes it for one
model's batch, through the caches and the store.
"""

from __future__ import annotations

from .options import LOWER_IS_BETTER, METRICS, MetricOptions, check_cost, parse_metrics
from .registered import BUILTIN_METRICS, metric_registry
from .spec import MetricContext, MetricSpec, Setting

__all__ = [
    "BUILTIN_METRICS",
    "LOWER_IS_BETTER",
    "METRICS",
    "MetricContext",
    "MetricOptions",
    "MetricSpec",
    "Setting",
    "check_cost",
    "metric_registry",
    "parse_metrics",
]
