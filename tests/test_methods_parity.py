"""Every registered method gives what a direct captum call with the same arguments gives."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from captum._utils.models.linear_model import SkLearnLasso
from captum.attr import (
    LRP,
    Deconvolution,
    DeepLift,
    DeepLiftShap,
    FeatureAblation,
    GradientShap,
    GuidedBackprop,
    GuidedGradCam,
    InputXGradient,
    IntegratedGradients,
    KernelShap,
    LayerAttribution,
    LayerConductance,
    LayerDeepLift,
    LayerGradCam,
    LayerGradientXActivation,
    LayerIntegratedGradients,
    Lime,
    NoiseTunnel,
    Occlusion,
    Saliency,
    ShapleyValueSampling,
)
from captum.attr._utils.lrp_rules import EpsilonRule
from engine_helpers import NORMALIZE, RandomImages, make_model, normalized_images_setup
from skimage.segmentation import slic

from insights_app import AttributionVisualizer
from insights_app.dataset import ExampleBatch
from insights_app.errors import ValidationError
from insights_app.features import ImageFeature
from insights_app.methods import baselines, build_registry


@pytest.fixture(scope="module")
def setup():
    return normalized_images_setup()


# The methods over SLIC superpixels run on smooth images (conftest's smooth_setup): SLIC leaves pure noise in one piece.
SUPERPIXEL_METHODS = ("Lime", "KernelShap")


def slic_masks(raw, n_segments=50, compactness=10.0):
    """scikit-image's SLIC labels of each (RGB, [0, 1]) image, as a (B, 1, H, W) feature mask."""
    labels = [
        slic(r.permute(1, 2, 0).double().numpy(), n_segments=n_segments, compactness=compactness, start_label=0)
        for r in raw
    ]
    return torch.stack([torch.from_numpy(lab).long()[None] for lab in labels])


def layer_map(attr, size=(32, 32), mode="bilinear"):
    return LayerAttribution.interpolate(attr.sum(1, keepdim=True), size, interpolate_mode=mode)


def engine_attr(vis, raw, targets, method, arguments=None):
    spec = vis.methods[method]
    params = spec.validate(arguments or {}, (32, 32))
    (attr,) = vis.engines[0].attribute(spec, params, ExampleBatch([0, 1, 2, 3], (raw,)), targets.tolist())
    return attr


def seeded(fn, seed=0):
    torch.manual_seed(seed)
    np.random.seed(seed)
    return fn()


def direct(model, x, zeros, t, method, raw=None):
    """The same computation written directly against captum, independently of the engine."""
    conv2 = model.conv2
    dist = NORMALIZE(torch.zeros(3, 32, 32))[None].repeat(8, 1, 1, 1)
    side = math.ceil(32 / 8)
    rows = torch.arange(32) // side
    mask = (rows[:, None] * math.ceil(32 / side) + rows[None, :]).reshape(1, 1, 32, 32)
    if method == "IntegratedGradients":
        return IntegratedGradients(model).attribute(x, baselines=zeros, target=t, n_steps=50, method="gausslegendre")
    if method == "NoiseTunnel(IntegratedGradients)":
        return seeded(
            lambda: NoiseTunnel(IntegratedGradients(model)).attribute(
                x,
                baselines=zeros,
                target=t,
                nt_type="smoothgrad",
                nt_samples=10,
                stdevs=0.15,
                n_steps=20,
                nt_samples_batch_size=10,
            )
        )
    if method == "NoiseTunnel(Saliency)":
        return seeded(
            lambda: NoiseTunnel(Saliency(model)).attribute(
                x, target=t, nt_type="smoothgrad", nt_samples=10, stdevs=0.15, abs=True, nt_samples_batch_size=10
            )
        )
    if method == "GradientShap":
        return seeded(lambda: GradientShap(model).attribute(x, baselines=dist, target=t, n_samples=20, stdevs=0.0))
    if method == "DeepLift":
        return DeepLift(model).attribute(x, baselines=zeros, target=t)
    if method == "DeepLiftShap":
        return DeepLiftShap(model).attribute(x, baselines=dist, target=t)
    if method == "Saliency":
        return Saliency(model).attribute(x, target=t, abs=True)
    if method == "InputXGradient":
        return InputXGradient(model).attribute(x, target=t)
    if method == "Deconvolution":
        return Deconvolution(model).attribute(x, target=t)
    if method == "GuidedBackprop":
        return GuidedBackprop(model).attribute(x, target=t)
    if method == "GuidedGradCam":
        return GuidedGradCam(model, conv2).attribute(x, target=t, interpolate_mode="nearest")
    if method == "LayerGradCam":
        cam = LayerGradCam(model, conv2).attribute(x, target=t, relu_attributions=True)
        return LayerAttribution.interpolate(cam, (32, 32), interpolate_mode="bilinear")
    if method == "Occlusion":
        return Occlusion(model).attribute(
            x,
            sliding_window_shapes=(3, side, side),
            strides=(3, side // 2, side // 2),
            baselines=zeros,
            target=t,
            perturbations_per_eval=16,
        )
    if method == "FeatureAblation":
        return FeatureAblation(model).attribute(
            x, baselines=zeros, target=t, feature_mask=mask, perturbations_per_eval=16
        )
    if method == "ShapleyValueSampling":
        return seeded(
            lambda: ShapleyValueSampling(model).attribute(
                x, baselines=zeros, target=t, feature_mask=mask, n_samples=5, perturbations_per_eval=16
            )
        )
    if method == "LRP":  # nn.Flatten has no LRP rule of its own: relevance passes it unchanged (epsilon rule)
        model.flat.rule = EpsilonRule()
        return LRP(model).attribute(x, target=t)
    if method == "LayerIntegratedGradients":
        return layer_map(
            LayerIntegratedGradients(model, conv2).attribute(
                x, baselines=zeros, target=t, n_steps=50, method="gausslegendre"
            )
        )
    if method == "LayerConductance":
        return layer_map(
            LayerConductance(model, conv2).attribute(x, baselines=zeros, target=t, n_steps=50, method="gausslegendre")
        )
    if method == "LayerDeepLift":
        return layer_map(LayerDeepLift(model, conv2).attribute(x, baselines=zeros, target=t))
    if method == "LayerGradientXActivation":
        return layer_map(LayerGradientXActivation(model, conv2).attribute(x, target=t))
    if method == "Lime":  # an untrained model's scores barely change: a weaker Lasso keeps some superpixels
        return seeded(
            lambda: Lime(model, interpretable_model=SkLearnLasso(alpha=1e-4)).attribute(
                x, baselines=zeros, target=t, feature_mask=slic_masks(raw), n_samples=100, perturbations_per_eval=16
            )
        )
    if method == "KernelShap":
        return seeded(
            lambda: KernelShap(model).attribute(
                x, baselines=zeros, target=t, feature_mask=slic_masks(raw), n_samples=100, perturbations_per_eval=16
            )
        )
    raise AssertionError(method)


ALL_METHODS = list(build_registry())


def test_registry_has_every_required_method():
    required = {
        "IntegratedGradients",
        "NoiseTunnel(IntegratedGradients)",
        "NoiseTunnel(Saliency)",
        "GradientShap",
        "DeepLift",
        "DeepLiftShap",
        "Saliency",
        "InputXGradient",
        "Deconvolution",
        "GuidedBackprop",
        "GuidedGradCam",
        "LayerGradCam",
        "Occlusion",
        "FeatureAblation",
        "ShapleyValueSampling",
        "Lime",
        "KernelShap",
        "LRP",
        "LayerIntegratedGradients",
        "LayerConductance",
        "LayerDeepLift",
        "LayerGradientXActivation",
    }
    assert required <= set(ALL_METHODS) and len(ALL_METHODS) >= 20


@pytest.mark.parametrize("method", ALL_METHODS)
def test_engine_equals_direct_captum_call(setup, smooth_setup, method):
    vis, model, raw, x, zeros, targets = smooth_setup if method in SUPERPIXEL_METHODS else setup
    got = engine_attr(vis, raw, targets, method, {"alpha": 1e-4} if method == "Lime" else None)
    want = direct(model, x, zeros, targets, method, raw)
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), f"{method}: max diff {(got - want).abs().max():.3g}"
    assert got.abs().sum() > 0


def test_each_example_gets_its_own_target(setup):
    vis, model, raw, x, zeros, targets = setup
    batched = engine_attr(vis, raw, targets, "Saliency")
    for i in range(4):
        alone = Saliency(model).attribute(x[i : i + 1], target=int(targets[i]), abs=True)
        assert torch.allclose(batched[i : i + 1], alone, atol=1e-6)


def test_layer_can_be_chosen_by_name(setup):
    vis, model, raw, x, zeros, targets = setup
    got = engine_attr(vis, raw, targets, "LayerGradCam", {"layer": "conv1"})
    cam = LayerGradCam(model, model.conv1).attribute(x, target=targets, relu_attributions=True)
    assert torch.allclose(got, LayerAttribution.interpolate(cam, (32, 32), interpolate_mode="bilinear"), atol=1e-6)
    with pytest.raises(ValidationError, match="layer"):
        engine_attr(vis, raw, targets, "LayerGradCam", {"layer": "no.such.layer"})
    with pytest.raises(ValidationError, match="no spatial output"):  # a linear layer has no map to upsample
        engine_attr(vis, raw, targets, "LayerGradCam", {"layer": "fc"})


def test_occlusion_window_and_stride_are_used(setup):
    vis, model, raw, x, zeros, targets = setup
    got = engine_attr(vis, raw, targets, "Occlusion", {"window": [8, 8], "stride": [8, 8]})
    want = Occlusion(model).attribute(
        x, sliding_window_shapes=(3, 8, 8), strides=(3, 8, 8), baselines=zeros, target=targets
    )
    assert torch.allclose(got, want, atol=1e-5)
    with pytest.raises(ValidationError, match="window"):
        engine_attr(vis, raw, targets, "Occlusion", {"window": [64, 8]})


@pytest.mark.parametrize(
    "args,field",
    [
        ({"n_steps": 0}, "n_steps"),
        ({"n_steps": 10**9}, "n_steps"),
        ({"n_steps": "50"}, "n_steps"),
        ({"n_steps": 2.5}, "n_steps"),
        ({"method": "simpson"}, "method"),
        ({"bogus": 1}, "bogus"),
        ({"baseline": "random"}, "baseline"),
    ],
)
def test_bad_arguments_are_rejected_naming_the_field(args, field):
    spec = build_registry()["IntegratedGradients"]
    with pytest.raises(ValidationError) as err:
        spec.validate(args, (32, 32))
    assert field in str(err.value)


def test_cost_bound_rejects_runaway_requests():
    spec = build_registry()["NoiseTunnel(IntegratedGradients)"]
    with pytest.raises(ValidationError, match="forward passes"):
        spec.validate({"nt_samples": 200, "n_steps": 1000}, (32, 32))
    occ = build_registry()["Occlusion"]
    with pytest.raises(ValidationError, match="forward passes"):
        occ.validate({"window": [1, 1], "stride": [1, 1]}, (224, 224))
    assert occ.validate({"window": [1, 1], "stride": [1, 1]}, (32, 32))["window"] == (1, 1)


@pytest.mark.parametrize("kind", ["zeros", "uniform", "gaussian", "blur"])
def test_baselines_are_per_example_and_reproducible(setup, kind):
    vis, model, raw, x, zeros, targets = setup
    engine = vis.engines[0]
    b1 = baselines.per_example(kind, engine.features, (raw,), [0, 1, 2, 3], 3, engine.device)[0]
    b2 = baselines.per_example(kind, engine.features, (raw[2:],), [2, 3], 3, engine.device)[0]
    assert b1.shape == x.shape
    assert torch.allclose(b1[2:], b2)  # an example's baseline does not depend on its batch-mates
    if kind == "zeros":
        assert torch.allclose(b1, zeros)
    if kind == "blur":
        assert not torch.allclose(b1, x) and (b1 - x).abs().mean() < (zeros - x).abs().mean()


def test_feature_baseline_transforms_are_used():
    model = make_model()
    data = RandomImages(n_batches=1, batch_size=2)
    feature = ImageFeature(
        "image", baseline_transforms=[lambda im: torch.full_like(im, 0.5)], input_transforms=[NORMALIZE]
    )
    vis = AttributionVisualizer([model], [str(i) for i in range(10)], [feature], data)
    engine = vis.engines[0]
    base = baselines.per_example("feature", engine.features, (data.batches[0].inputs,), [0, 1], 0, engine.device)[0]
    assert torch.allclose(base, NORMALIZE(torch.full((3, 32, 32), 0.5)).expand(2, -1, -1, -1))


def test_the_shap_methods_offer_only_baselines_they_can_draw():
    """A distribution of baselines cannot come from per-example baseline_transforms: not offered."""
    for name in ("GradientShap", "DeepLiftShap"):
        spec = build_registry()[name]
        assert spec.param("baseline").choices == ("zeros", "uniform", "gaussian")
        with pytest.raises(ValidationError, match="arguments.baseline: must be one of zeros, uniform, gaussian"):
            spec.validate({"baseline": "feature"}, (32, 32))
