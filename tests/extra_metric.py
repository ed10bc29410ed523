"""A quality metric declared outside the package (test_extending.py registers it): the mean of the
``top`` largest magnitudes of each map. It runs no forward pass; higher is not better or worse in
truth, it is declared "higher" to show a direction reaching the page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from insights_app.metrics import MetricContext, MetricSpec, Setting
from insights_app.metrics.spec import Number, Value, finite


def peaks(ctx: MetricContext, names: Sequence[str]) -> list[dict[str, Value]]:
    top = ctx.options.integer("top")
    out: list[dict[str, Value]] = []
    for maps in ctx.maps:
        flat = np.sort(np.abs(np.asarray(maps[0], np.float64)).ravel())[::-1]
        out.append({"peak": finite(flat[:top].mean())})
    return out


def no_passes(values: Mapping[str, Number], method_cost: int) -> int:
    return 0


PEAK = MetricSpec(
    name="peak",
    label="peak attribution",
    short="peak",
    help="The mean of the map's largest magnitudes",
    settings=(Setting("top", 1, 1, 100, "peak: how many of the largest magnitudes are averaged"),),
    compute=peaks,
    lower_is_better=False,
    cost=no_passes,
)
