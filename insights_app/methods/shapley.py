"""Shapley Value Sampling: Shapley values of square patches (or superpixels) estimated from sampled permutations."""

from __future__ import annotations

from captum.attr import ShapleyValueSampling

from .params import PATCH, PERTURBATIONS, SEED, Param, baseline_param
from .spec import AttributionContext, Attributions, method
from .superpixels import COMPACTNESS, MASK, N_SEGMENTS, feature_count, feature_masks


@method(
    "ShapleyValueSampling",
    label="Shapley Value Sampling",
    help="Shapley values of square patches (or SLIC superpixels) estimated from sampled permutations.",
    params=(
        PATCH,
        Param(
            "n_samples", "int", 5, "Feature permutations sampled per example", minimum=1, maximum=100, label="Samples"
        ),
        PERTURBATIONS,
        baseline_param(),
        SEED,
        MASK,
        N_SEGMENTS,
        COMPACTNESS,
    ),
    cost=lambda p, hw: p["n_samples"] * feature_count(p, hw),
)
def shapley_value_sampling(ctx: AttributionContext) -> Attributions:
    return ShapleyValueSampling(ctx.forward).attribute(
        ctx.inputs,
        baselines=ctx.baselines(ctx.params["baseline"]),
        target=ctx.targets,
        additional_forward_args=ctx.additional_args,
        feature_mask=feature_masks(ctx),
        n_samples=ctx.params["n_samples"],
        perturbations_per_eval=ctx.params["perturbations_per_eval"],
    )
