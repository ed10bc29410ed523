"""Feature Ablation: the change in the target score when each square patch (or superpixel) is replaced by the baseline."""

from __future__ import annotations

from captum.attr import FeatureAblation

from .params import PATCH, PERTURBATIONS, baseline_param
from .spec import AttributionContext, Attributions, method
from .superpixels import COMPACTNESS, MASK, N_SEGMENTS, feature_count, feature_masks


@method(
    "FeatureAblation",
    label="Feature Ablation",
    help="Change in the target score when each square patch (or SLIC superpixel) is replaced by the baseline.",
    params=(PATCH, PERTURBATIONS, baseline_param(), MASK, N_SEGMENTS, COMPACTNESS),
    cost=feature_count,
    first_forward="eval",
    rows=lambda p, hw: min(p["perturbations_per_eval"], feature_count(p, hw)),
)
def feature_ablation(ctx: AttributionContext) -> Attributions:
    return FeatureAblation(ctx.forward).attribute(
        ctx.inputs,
        baselines=ctx.baselines(ctx.params["baseline"]),
        target=ctx.targets,
        additional_forward_args=ctx.additional_args,
        feature_mask=feature_masks(ctx),
        perturbations_per_eval=ctx.params["perturbations_per_eval"],
    )
