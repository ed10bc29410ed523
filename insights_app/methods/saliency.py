"""Saliency: the gradient of the target score with respect to the input."""

from __future__ import annotations

from captum.attr import Saliency

from .params import ABS
from .spec import AttributionContext, Attributions, method


@method(
    "Saliency",
    label="Saliency",
    help="Gradient of the target score with respect to the input.",
    params=(ABS,),
    first_forward="grad",
    sign="absolute_value",
)
def saliency(ctx: AttributionContext) -> Attributions:
    return Saliency(ctx.forward).attribute(
        ctx.inputs,
        target=ctx.targets,
        abs=ctx.params["abs"],
        additional_forward_args=ctx.additional_args,
    )
