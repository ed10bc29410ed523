"""Layer-wise Relevance Propagation: the target score redistributed backwards, layer by layer, by propagation rules.

Captum's LRP knows a rule for a fixed set of layer types (convolutions, linear layers, pools,
batch norm; ReLU, Tanh and Dropout pass relevance on). A model with any other leaf module
cannot be explained by it: the request is refused naming that layer, a 400 rather than the
TypeError captum raises halfway through. ``nn.Flatten`` and ``nn.Unflatten`` only reshape, so
relevance passes them unchanged (captum's epsilon rule on a reshape is exactly that); they
get that rule here, as a captum user would set it, so that the usual CNN heads are covered.
Rules a user set on their layers (``module.rule``) are used and kept: captum deletes every
rule after a call, so they are put back.
"""

from __future__ import annotations

from typing import Any

import torch
from captum.attr import LRP
from captum.attr._core.lrp import SUPPORTED_LAYERS_WITH_RULES, SUPPORTED_NON_LINEAR_LAYERS
from captum.attr._utils.lrp_rules import EpsilonRule

from ..errors import ValidationError
from .spec import AttributionContext, Attributions, method

RESHAPES = (torch.nn.Flatten, torch.nn.Unflatten)
_MISSING = object()


def leaf_layers(model: torch.nn.Module, prefix: str = "") -> list[tuple[str, torch.nn.Module]]:
    """The modules LRP attaches rules to (captum's walk: children without children), by name."""
    out: list[tuple[str, torch.nn.Module]] = []
    for name, child in model.named_children():
        full = f"{prefix}.{name}" if prefix else name
        if len(list(child.children())) == 0:
            out.append((full, child))
        else:
            out.extend(leaf_layers(child, full))
    return out


def unsupported_layers(model: torch.nn.Module) -> list[tuple[str, str]]:
    """(name, type) of every leaf layer LRP has no rule for (none set by the user either)."""
    return [
        (name, type(layer).__name__)
        for name, layer in leaf_layers(model)
        if not hasattr(layer, "rule")
        and type(layer) not in SUPPORTED_LAYERS_WITH_RULES
        and type(layer) not in SUPPORTED_NON_LINEAR_LAYERS
        and not isinstance(layer, RESHAPES)
    ]


def check_supported(model: torch.nn.Module) -> None:
    """A 400 naming the layers LRP cannot propagate through (before any pass is made)."""
    if not isinstance(model, torch.nn.Module):
        raise ValidationError("method", "LRP needs an nn.Module model")
    bad = unsupported_layers(model)
    if bad:
        by_kind: dict[str, list[str]] = {}
        for name, kind in bad:
            by_kind.setdefault(kind, []).append(repr(name))
        named = "; ".join(
            f"{kind} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})" for kind, names in by_kind.items()
        )
        raise ValidationError(
            "method",
            f"LRP has no propagation rule for layer type {named}; "
            "choose another method, or set a captum PropagationRule as that "
            "layer's `rule` attribute",
        )


@method(
    "LRP",
    label="LRP",
    help="Layer-wise Relevance Propagation: the target score redistributed backwards layer by layer with "
    "the epsilon rule (the model's layers must all have an LRP rule).",
)
def lrp(ctx: AttributionContext) -> Attributions:
    model = ctx.model
    check_supported(model)
    layers = [layer for _, layer in leaf_layers(model)]
    kept: dict[int, Any] = {id(layer): getattr(layer, "rule", _MISSING) for layer in layers}
    for layer in layers:
        if isinstance(layer, RESHAPES) and not hasattr(layer, "rule"):
            layer.rule = EpsilonRule()
    try:
        return LRP(model).attribute(ctx.inputs, target=ctx.targets, additional_forward_args=ctx.additional_args)
    except RuntimeError as exc:
        if "more than once" in str(exc):  # captum's check: a rule layer called twice in one forward pass
            raise ValidationError("method", f"LRP needs every layer used once per forward pass: {exc}") from None
        raise
    finally:
        for layer in layers:
            rule = kept[id(layer)]
            if rule is _MISSING:
                if hasattr(layer, "rule"):
                    del layer.rule
            else:
                layer.rule = rule
