"""Layer attributions of a chosen layer (Integrated Gradients, Conductance, DeepLift, Gradient x Activation).

Each attributes the target score to the chosen layer's output (default: the model's last
Conv2d, as GradCAM). The map shown is that attribution summed over the layer's channels and
upsampled to the image with captum's ``LayerAttribution.interpolate``, as GradCAM's is.
"""

from __future__ import annotations

from typing import Any

import torch
from captum.attr import LayerConductance, LayerDeepLift, LayerGradientXActivation, LayerIntegratedGradients

from ..errors import ValidationError
from .integrated_gradients import ig_arguments
from .layers import on_first_image
from .params import IG_METHOD, INTERPOLATE, LAYER, N_STEPS, baseline_param
from .spec import AttributionContext, Attributions, method

LAYER_HELP = " The map is the layer attribution summed over channels, upsampled to the image."


def layer_map(ctx: AttributionContext, attr: Any) -> Attributions:
    """A layer attribution (B, C, h, w) -> (B, 1, h, w) summed over channels, upsampled onto the first image."""
    if isinstance(attr, (tuple, list)):
        if len(attr) != 1:
            raise ValidationError("arguments.layer", "the layer has several outputs; pick a convolution layer")
        attr = attr[0]
    if isinstance(attr, torch.Tensor) and attr.dim() == 4:
        attr = attr.sum(dim=1, keepdim=True)
    return on_first_image(ctx, attr, ctx.params["interpolate_mode"])


@method(
    "LayerIntegratedGradients",
    label="Layer Integrated Gradients",
    help="Integrated Gradients of the target score with respect to a layer's output, along the path from "
    "the baseline input to the input." + LAYER_HELP,
    params=(LAYER, N_STEPS, IG_METHOD, baseline_param(), INTERPOLATE),
    cost=lambda p, hw: p["n_steps"],
)
def layer_integrated_gradients(ctx: AttributionContext) -> Attributions:
    layer = ctx.resolve_layer(ctx.params["layer"])
    attr = LayerIntegratedGradients(ctx.forward, layer).attribute(
        ctx.inputs,
        baselines=ctx.baselines(ctx.params["baseline"]),
        target=ctx.targets,
        additional_forward_args=ctx.additional_args,
        **ig_arguments(ctx),
    )
    return layer_map(ctx, attr)


@method(
    "LayerConductance",
    label="Layer Conductance",
    help="Conductance of a layer's neurons: the flow of Integrated Gradients through each of them, from the "
    "baseline input to the input." + LAYER_HELP,
    params=(LAYER, N_STEPS, IG_METHOD, baseline_param(), INTERPOLATE),
    cost=lambda p, hw: p["n_steps"] + 1,
)
def layer_conductance(ctx: AttributionContext) -> Attributions:
    layer = ctx.resolve_layer(ctx.params["layer"])
    # Captum evaluates n_steps + 1 points and needs at least two rows per example in a chunk.
    attr = LayerConductance(ctx.forward, layer).attribute(
        ctx.inputs,
        baselines=ctx.baselines(ctx.params["baseline"]),
        target=ctx.targets,
        additional_forward_args=ctx.additional_args,
        n_steps=ctx.params["n_steps"],
        method=ctx.params["method"],
        internal_batch_size=max(ctx.internal_batch_size, 2 * len(ctx.ids)),
    )
    return layer_map(ctx, attr)


@method(
    "LayerDeepLift",
    label="Layer DeepLift",
    help="DeepLift (rescale rule) of the target score's difference from the baseline, attributed to a "
    "layer's output." + LAYER_HELP,
    params=(LAYER, baseline_param(), INTERPOLATE),
)
def layer_deeplift(ctx: AttributionContext) -> Attributions:
    layer = ctx.resolve_layer(ctx.params["layer"])
    attr = LayerDeepLift(ctx.model, layer).attribute(
        ctx.inputs,
        baselines=ctx.baselines(ctx.params["baseline"]),
        target=ctx.targets,
        additional_forward_args=ctx.additional_args,
    )
    return layer_map(ctx, attr)


@method(
    "LayerGradientXActivation",
    label="Layer Gradient x Activation",
    help="A layer's activations multiplied by the target score's gradient with respect to them." + LAYER_HELP,
    params=(LAYER, INTERPOLATE),
)
def layer_gradient_x_activation(ctx: AttributionContext) -> Attributions:
    layer = ctx.resolve_layer(ctx.params["layer"])
    attr = LayerGradientXActivation(ctx.forward, layer).attribute(
        ctx.inputs,
        target=ctx.targets,
        additional_forward_args=ctx.additional_args,
    )
    return layer_map(ctx, attr)
