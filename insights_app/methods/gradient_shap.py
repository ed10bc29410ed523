"""Gradient SHAP: expected gradients between random points on paths from a baseline distribution."""

from __future__ import annotations

from captum.attr import GradientShap

from .baselines import DISTRIBUTION_KINDS
from .params import N_BASELINES, SEED, STDEVS, Param, baseline_param
from .spec import AttributionContext, Attributions, method


@method(
    "GradientShap",
    label="Gradient SHAP",
    help="Expected gradients between random points on paths from baselines drawn from a distribution.",
    params=(
        Param("n_samples", "int", 20, "Random samples per example", minimum=1, maximum=500, label="Samples"),
        Param("stdevs", "float", 0.0, STDEVS.help, minimum=0.0, maximum=10.0, label=STDEVS.label),
        N_BASELINES,
        baseline_param(DISTRIBUTION_KINDS),
        SEED,
    ),
    cost=lambda p, hw: p["n_samples"],
    numpy_rng=True,
)
def gradient_shap(ctx: AttributionContext) -> Attributions:
    return GradientShap(ctx.forward).attribute(
        ctx.inputs,
        baselines=ctx.distribution(ctx.params["baseline"], ctx.params["n_baselines"]),
        target=ctx.targets,
        additional_forward_args=ctx.additional_args,
        n_samples=ctx.params["n_samples"],
        stdevs=ctx.params["stdevs"],
    )
