"""Feature Ablation: the change in the target score when each square patch is replaced by the baseline."""

from __future__ import annotations

from captum.attr import FeatureAblation

from .params import PATCH, PERTURBATIONS, baseline_param
from .regions import patch_cost, patch_feature_mask
from .spec import AttributionContext, Attributions, method


@method("FeatureAblation", label="Feature Ablation",
        help="Change in the target score when each square patch is replaced by the baseline.",
        params=(PATCH, PERTURBATIONS, baseline_param()), cost=patch_cost, first_forward="eval",
        rows=lambda p, hw: min(p["perturbations_per_eval"], patch_cost(p, hw)))
def feature_ablation(ctx: AttributionContext) -> Attributions:
    return FeatureAblation(ctx.forward).attribute(
        ctx.inputs, baselines=ctx.baselines(ctx.params["baseline"]), target=ctx.targets,
        additional_forward_args=ctx.additional_args, feature_mask=patch_feature_mask(ctx),
        perturbations_per_eval=ctx.params["perturbations_per_eval"],
    )
