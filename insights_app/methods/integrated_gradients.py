"""Integrated Gradients: gradients integrated along the straight path from a baseline to the input."""

from __future__ import annotations

from typing import Any

from captum.attr import IntegratedGradients

from .params import IG_METHOD, N_STEPS, baseline_param
from .spec import AttributionContext, Attributions, method


def ig_arguments(ctx: AttributionContext) -> dict[str, Any]:
    """Steps, integration rule and a batch size of at least one row per example."""
    return {
        "n_steps": ctx.params["n_steps"],
        "method": ctx.params["method"],
        "internal_batch_size": max(ctx.internal_batch_size, len(ctx.ids)),
    }


@method(
    "IntegratedGradients",
    label="Integrated Gradients",
    help="Integrates gradients along the straight path from the baseline to the input.",
    params=(N_STEPS, IG_METHOD, baseline_param()),
    cost=lambda p, hw: p["n_steps"],
)
def integrated_gradients(ctx: AttributionContext) -> Attributions:
    return IntegratedGradients(ctx.forward).attribute(
        ctx.inputs,
        baselines=ctx.baselines(ctx.params["baseline"]),
        target=ctx.targets,
        additional_forward_args=ctx.additional_args,
        **ig_arguments(ctx),
    )
