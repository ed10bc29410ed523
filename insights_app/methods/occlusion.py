"""Occlusion: the change in the target score when a sliding window is replaced by the baseline."""

from __future__ import annotations

from captum.attr import Occlusion

from .params import PERTURBATIONS, STRIDE, WINDOW, baseline_param
from .regions import occlusion_cost, occlusion_shapes
from .spec import AttributionContext, Attributions, method


@method(
    "Occlusion",
    label="Occlusion",
    help="Change in the target score when a sliding window is replaced by the baseline.",
    params=(WINDOW, STRIDE, PERTURBATIONS, baseline_param()),
    cost=occlusion_cost,
    first_forward="eval",
    rows=lambda p, hw: min(p["perturbations_per_eval"], occlusion_cost(p, hw)),
)
def occlusion(ctx: AttributionContext) -> Attributions:
    windows, strides = occlusion_shapes(ctx)
    return Occlusion(ctx.forward).attribute(
        ctx.inputs,
        sliding_window_shapes=windows,
        strides=strides,
        baselines=ctx.baselines(ctx.params["baseline"]),
        target=ctx.targets,
        additional_forward_args=ctx.additional_args,
        perturbations_per_eval=ctx.params["perturbations_per_eval"],
    )
