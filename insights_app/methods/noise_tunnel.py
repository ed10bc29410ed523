"""NoiseTunnel: a method averaged over noisy copies of the input (SmoothGrad and its variants)."""

from __future__ import annotations

from typing import Any

from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

from .params import ABS, IG_METHOD, N_STEPS, NT_SAMPLES, NT_TYPE, SEED, STDEVS, Param, baseline_param
from .spec import AttributionContext, Attributions, method


def noise_arguments(ctx: AttributionContext) -> dict[str, Any]:
    """The noise tunnel's own arguments; its samples are batched within ``internal_batch_size`` rows."""
    examples = max(1, len(ctx.ids))
    return {
        "nt_type": ctx.params["nt_type"],
        "nt_samples": ctx.params["nt_samples"],
        "stdevs": ctx.params["stdevs"],
        "nt_samples_batch_size": max(1, min(ctx.params["nt_samples"], ctx.internal_batch_size // examples)),
    }


@method(
    "NoiseTunnel(IntegratedGradients)",
    label="NoiseTunnel over Integrated Gradients",
    captum_class="NoiseTunnel",
    help="Integrated Gradients averaged over noisy copies of the input (SmoothGrad family).",
    params=(
        NT_TYPE,
        NT_SAMPLES,
        STDEVS,
        Param("n_steps", "int", 20, N_STEPS.help, minimum=1, maximum=1000, label=N_STEPS.label),
        IG_METHOD,
        baseline_param(),
        SEED,
    ),
    cost=lambda p, hw: p["nt_samples"] * p["n_steps"],
)
def noise_tunnel_integrated_gradients(ctx: AttributionContext) -> Attributions:
    return NoiseTunnel(IntegratedGradients(ctx.forward)).attribute(
        ctx.inputs,
        baselines=ctx.baselines(ctx.params["baseline"]),
        target=ctx.targets,
        additional_forward_args=ctx.additional_args,
        n_steps=ctx.params["n_steps"],
        method=ctx.params["method"],
        **noise_arguments(ctx),
    )


@method(
    "NoiseTunnel(Saliency)",
    label="SmoothGrad (NoiseTunnel over Saliency)",
    captum_class="NoiseTunnel",
    help="Gradients averaged over noisy copies of the input.",
    params=(NT_TYPE, NT_SAMPLES, STDEVS, ABS, SEED),
    cost=lambda p, hw: p["nt_samples"],
    sign="absolute_value",
)
def smoothgrad(ctx: AttributionContext) -> Attributions:
    return NoiseTunnel(Saliency(ctx.forward)).attribute(
        ctx.inputs,
        target=ctx.targets,
        additional_forward_args=ctx.additional_args,
        abs=ctx.params["abs"],
        **noise_arguments(ctx),
    )
