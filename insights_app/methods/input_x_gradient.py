"""Input x Gradient: the input multiplied by its gradient."""

from __future__ import annotations

from captum.attr import InputXGradient

from .spec import AttributionContext, Attributions, method


@method("InputXGradient", label="Input x Gradient", help="The input multiplied by its gradient.", first_forward="grad")
def input_x_gradient(ctx: AttributionContext) -> Attributions:
    return InputXGradient(ctx.forward).attribute(
        ctx.inputs,
        target=ctx.targets,
        additional_forward_args=ctx.additional_args,
    )
