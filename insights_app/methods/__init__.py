"""The attribution methods: one declared :class:`MethodSpec` per method, in the module that runs it.

Every visualizer owns a registry of them (:func:`build_registry`), filled with the built-in methods below and
open to the user's own (``vis.register_method(spec)`` or the ``@vis.method(...)``
decorator); the server, the page, the validation and the OpenAPI document read everything
from it.
"""

from __future__ import annotations

from ..errors import ValidationError
from ..limits import MAX_EVALS_PER_EXAMPLE
from ..registry import Registry
from .baselines import DISTRIBUTION_KINDS
from .baselines import KINDS as BASELINE_KINDS
from .deeplift import deeplift, deeplift_shap
from .feature_ablation import feature_ablation
from .gradcam import gradcam, guided_gradcam
from .gradient_shap import gradient_shap
from .guided_backprop import deconvolution, guided_backprop
from .input_x_gradient import input_x_gradient
from .integrated_gradients import integrated_gradients
from .layer_attribution import (
    layer_conductance,
    layer_deeplift,
    layer_gradient_x_activation,
    layer_integrated_gradients,
)
from .lime import kernel_shap, lime
from .lrp import lrp
from .noise_tunnel import noise_tunnel_integrated_gradients, smoothgrad
from .occlusion import occlusion
from .params import Param
from .saliency import saliency
from .shapley import shapley_value_sampling
from .spec import AttributionContext, Attributions, MethodSpec, method

# In the order the page lists them.
BUILTIN_METHODS: tuple[MethodSpec, ...] = (
    integrated_gradients,
    noise_tunnel_integrated_gradients,
    smoothgrad,
    gradient_shap,
    deeplift,
    deeplift_shap,
    saliency,
    input_x_gradient,
    deconvolution,
    guided_backprop,
    lrp,
    guided_gradcam,
    gradcam,
    layer_integrated_gradients,
    layer_conductance,
    layer_deeplift,
    layer_gradient_x_activation,
    occlusion,
    feature_ablation,
    shapley_value_sampling,
    lime,
    kernel_shap,
)


def build_registry() -> Registry[MethodSpec]:
    """A fresh registry of the built-in methods (one per visualizer)."""
    return Registry(MethodSpec, lambda spec: spec.name, BUILTIN_METHODS)


__all__ = [
    "AttributionContext",
    "Attributions",
    "BASELINE_KINDS",
    "BUILTIN_METHODS",
    "DISTRIBUTION_KINDS",
    "MAX_EVALS_PER_EXAMPLE",
    "MethodSpec",
    "Param",
    "ValidationError",
    "build_registry",
    "method",
]
