"""GradCAM and Guided GradCAM: class activation maps of a convolution layer."""

from __future__ import annotations

from captum.attr import GuidedGradCam, LayerGradCam

from ..errors import ValidationError
from .layers import on_first_image
from .params import INTERPOLATE, LAYER, Param
from .spec import AttributionContext, Attributions, method


@method(
    "GuidedGradCam",
    label="Guided GradCAM",
    help="Guided Backprop multiplied by the upsampled GradCAM map of a convolution layer.",
    params=(
        LAYER,
        Param(
            "interpolate_mode",
            "enum",
            "nearest",
            INTERPOLATE.help,
            choices=INTERPOLATE.choices,
            label=INTERPOLATE.label,
        ),
    ),
)
def guided_gradcam(ctx: AttributionContext) -> Attributions:
    layer = ctx.resolve_layer(ctx.params["layer"])
    out = GuidedGradCam(ctx.model, layer).attribute(
        ctx.inputs,
        target=ctx.targets,
        additional_forward_args=ctx.additional_args,
        interpolate_mode=ctx.params["interpolate_mode"],
    )
    if any(t.numel() == 0 for t in (out if isinstance(out, tuple) else (out,))):
        # Captum returns an empty tensor when the layer's output has no H x W to upsample.
        raise ValidationError(
            "arguments.layer", "GuidedGradCam needs a layer with a spatial (H x W) output, such as a convolution"
        )
    return out


@method(
    "LayerGradCam",
    label="GradCAM",
    help="Class activation map of a convolution layer, upsampled to the image.",
    params=(
        LAYER,
        Param("relu_attributions", "bool", True, "Keep only positive evidence", label="ReLU on the map"),
        INTERPOLATE,
    ),
    sign="positive",
)
def gradcam(ctx: AttributionContext) -> Attributions:
    layer = ctx.resolve_layer(ctx.params["layer"])
    attr = LayerGradCam(ctx.forward, layer).attribute(
        ctx.inputs,
        target=ctx.targets,
        additional_forward_args=ctx.additional_args,
        relu_attributions=ctx.params["relu_attributions"],
    )
    return on_first_image(ctx, attr, ctx.params["interpolate_mode"])
