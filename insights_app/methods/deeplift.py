"""DeepLift and DeepLift SHAP: the difference from a baseline backpropagated with the rescale rule."""

from __future__ import annotations

from captum.attr import DeepLift, DeepLiftShap

from .baselines import DISTRIBUTION_KINDS
from .params import N_BASELINES, SEED, baseline_param
from .spec import AttributionContext, Attributions, method


@method(
    "DeepLift",
    label="DeepLift",
    help="Backpropagates the difference from the baseline with the rescale rule.",
    params=(baseline_param(),),
)
def deeplift(ctx: AttributionContext) -> Attributions:
    return DeepLift(ctx.model).attribute(
        ctx.inputs,
        baselines=ctx.baselines(ctx.params["baseline"]),
        target=ctx.targets,
        additional_forward_args=ctx.additional_args,
    )


@method(
    "DeepLiftShap",
    label="DeepLift SHAP",
    help="DeepLift averaged over a distribution of baselines.",
    params=(N_BASELINES, baseline_param(DISTRIBUTION_KINDS), SEED),
    cost=lambda p, hw: p["n_baselines"],
)
def deeplift_shap(ctx: AttributionContext) -> Attributions:
    return DeepLiftShap(ctx.model).attribute(
        ctx.inputs,
        baselines=ctx.distribution(ctx.params["baseline"], ctx.params["n_baselines"]),
        target=ctx.targets,
        additional_forward_args=ctx.additional_args,
    )
