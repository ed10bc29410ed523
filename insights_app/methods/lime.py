"""LIME and Kernel SHAP: a linear surrogate fitted to the model's scores on superpixels switched off at random."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from captum._utils.models.linear_model import SkLearnLasso
from captum.attr import KernelShap, Lime

from .params import PERTURBATIONS, SEED, Param, baseline_param
from .spec import AttributionContext, Attributions, method
from .superpixels import COMPACTNESS, N_SEGMENTS, superpixel_feature_mask

N_SAMPLES = Param(
    "n_samples",
    "int",
    100,
    "Random perturbations (superpixel subsets) the surrogate model is fitted to",
    minimum=2,
    maximum=5000,
    label="Samples",
)


def _samples(p: Mapping[str, Any], hw: tuple[int, int]) -> int:
    return int(p["n_samples"])


def _rows(p: Mapping[str, Any], hw: tuple[int, int]) -> int:
    return min(int(p["perturbations_per_eval"]), int(p["n_samples"]))


def surrogate_arguments(ctx: AttributionContext) -> dict:
    """What LIME and Kernel SHAP share: baselines, SLIC superpixels as the mask, samples, rows per pass."""
    return {
        "baselines": ctx.baselines(ctx.params["baseline"]),
        "target": ctx.targets,
        "additional_forward_args": ctx.additional_args,
        "feature_mask": superpixel_feature_mask(ctx),
        "n_samples": ctx.params["n_samples"],
        "perturbations_per_eval": ctx.params["perturbations_per_eval"],
    }


SURROGATE_PARAMS = (N_SEGMENTS, COMPACTNESS, N_SAMPLES, PERTURBATIONS, baseline_param(), SEED)
ALPHA = Param(
    "alpha",
    "float",
    0.01,
    "Lasso regularization of the surrogate model (captum's default 0.01): larger values keep fewer superpixels",
    minimum=1e-6,
    maximum=100.0,
    label="Lasso alpha",
)


@method(
    "Lime",
    label="LIME",
    help="Weights of a sparse linear model (Lasso) fitted to the target score on random subsets of SLIC "
    "superpixels, the others replaced by the baseline; samples near the input weigh more.",
    params=SURROGATE_PARAMS[:-1] + (ALPHA,) + SURROGATE_PARAMS[-1:],
    cost=_samples,
    rows=_rows,
)
def lime(ctx: AttributionContext) -> Attributions:
    surrogate = SkLearnLasso(alpha=ctx.params["alpha"])
    return Lime(ctx.forward, interpretable_model=surrogate).attribute(ctx.inputs, **surrogate_arguments(ctx))


@method(
    "KernelShap",
    label="Kernel SHAP",
    help="Shapley values of SLIC superpixels estimated by a linear regression weighted with the Shapley kernel, "
    "on random subsets of superpixels (the others replaced by the baseline).",
    params=SURROGATE_PARAMS,
    cost=_samples,
    rows=_rows,
)
def kernel_shap(ctx: AttributionContext) -> Attributions:
    return KernelShap(ctx.forward).attribute(ctx.inputs, **surrogate_arguments(ctx))
