"""Layers for the layer methods (GradCAM): finding them by name, and mapping their maps onto the image."""

from __future__ import annotations

import torch
from captum.attr import LayerAttribution

from ..errors import ValidationError
from .spec import AttributionContext


def last_conv_layer(model: torch.nn.Module) -> tuple[str, torch.nn.Module]:
    """The last Conv2d registered in the model: the usual GradCAM layer."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            found = (name, module)
    if found is None:
        raise ValidationError("arguments.layer", "the model has no Conv2d layer; name a layer explicitly")
    return found


def conv_layer_names(model: torch.nn.Module) -> list[str]:
    """The model's Conv2d layers by name: the choices a layer parameter offers."""
    if not isinstance(model, torch.nn.Module):
        return []
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]


def resolve_layer(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """The module called ``name`` ("": the last Conv2d), or a 400 naming ``arguments.layer``."""
    if not isinstance(model, torch.nn.Module):
        raise ValidationError("method", "layer methods need an nn.Module model")
    if not name:
        return last_conv_layer(model)[1]
    modules = dict(model.named_modules())
    if name not in modules:
        raise ValidationError("arguments.layer", f"the model has no layer named {name!r}")
    return modules[name]


def on_first_image(ctx: AttributionContext, attr: torch.Tensor, mode: str) -> tuple[torch.Tensor, ...]:
    """Place a layer attribution on the first image input, upsampled to its size (zeros elsewhere)."""
    if not ctx.image_inputs:
        raise ValidationError("method", "layer methods need an image feature")
    first = ctx.image_inputs[0]
    if attr.dim() != 4:
        name = ctx.params.get("layer") or "the chosen layer"
        raise ValidationError(
            "arguments.layer", f"{name} has no spatial output (got shape {tuple(attr.shape)}); pick a convolution layer"
        )
    shape = ctx.inputs[first].shape
    up = LayerAttribution.interpolate(attr, (int(shape[-2]), int(shape[-1])), interpolate_mode=mode)
    return tuple(up if i == first else torch.zeros_like(x, dtype=up.dtype) for i, x in enumerate(ctx.inputs))
