"""Deconvolution and Guided Backprop: gradients with a modified backward rule through ReLUs.

Both hook the model's ReLU modules, so they are given the model itself, not a forward function.
"""

from __future__ import annotations

from captum.attr import Deconvolution, GuidedBackprop

from .spec import AttributionContext, Attributions, method


@method("Deconvolution", label="Deconvolution", help="Gradients with ReLU applied to the backward signal.")
def deconvolution(ctx: AttributionContext) -> Attributions:
    return Deconvolution(ctx.model).attribute(
        ctx.inputs,
        target=ctx.targets,
        additional_forward_args=ctx.additional_args,
    )


@method("GuidedBackprop", label="Guided Backprop", help="Gradients where only positive signals pass ReLUs backwards.")
def guided_backprop(ctx: AttributionContext) -> Attributions:
    return GuidedBackprop(ctx.model).attribute(
        ctx.inputs,
        target=ctx.targets,
        additional_forward_args=ctx.additional_args,
    )
