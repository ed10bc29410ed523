"""The methods beyond captum.insights' set: superpixel masks (LIME, Kernel SHAP, and as an option of Feature
Ablation and Shapley Value Sampling), LRP and its refusals, the layer methods; each over the HTTP API too."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from captum.attr import LRP, FeatureAblation, KernelShap, LayerIntegratedGradients, Lime, ShapleyValueSampling
from captum.attr._utils.lrp_rules import EpsilonRule
from engine_helpers import NORMALIZE, RandomImages, make_model
from test_methods_parity import engine_attr, layer_map, seeded, slic_masks
from ui_helpers import decode_data_url, is_blank

from insights_app import AttributionVisualizer
from insights_app.dataset import ExampleBatch
from insights_app.errors import ValidationError
from insights_app.features import ImageFeature
from insights_app.methods import build_registry
from insights_app.methods.superpixels import slic_segments
from insights_app.transport.server import create_app

NEW_METHODS = (
    "LRP",
    "LayerIntegratedGradients",
    "LayerConductance",
    "LayerDeepLift",
    "LayerGradientXActivation",
    "Lime",
    "KernelShap",
)
API = "/api/v1"


# ---------------------------------------------------------------- superpixels


def test_superpixel_feature_ablation_equals_captum_with_slic_masks(smooth_setup):
    vis, model, raw, x, zeros, targets = smooth_setup
    got = engine_attr(vis, raw, targets, "FeatureAblation", {"mask": "superpixels", "n_segments": 30})
    masks = slic_masks(raw, n_segments=30)
    assert all(len(m.unique()) > 5 for m in masks)  # real superpixels, not one piece
    want = FeatureAblation(model).attribute(
        x, baselines=zeros, target=targets, feature_mask=masks, perturbations_per_eval=16
    )
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), f"max diff {(got - want).abs().max():.3g}"
    # each superpixel is one feature: one value over all its pixels and channels
    for j in range(4):
        for seg in masks[j, 0].unique():
            values = got[j][:, masks[j, 0] == seg]
            assert torch.allclose(values, values.flatten()[0].expand_as(values))


def test_superpixel_shapley_sampling_equals_captum_with_slic_masks(smooth_setup):
    vis, model, raw, x, zeros, targets = smooth_setup
    args = {"mask": "superpixels", "n_segments": 20, "compactness": 5.0, "n_samples": 2, "seed": 3}
    got = engine_attr(vis, raw, targets, "ShapleyValueSampling", args)
    want = seeded(
        lambda: ShapleyValueSampling(model).attribute(
            x,
            baselines=zeros,
            target=targets,
            feature_mask=slic_masks(raw, 20, 5.0),
            n_samples=2,
            perturbations_per_eval=16,
        ),
        seed=3,
    )
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), f"max diff {(got - want).abs().max():.3g}"


def test_patches_stay_the_default_mask():
    for name in ("FeatureAblation", "ShapleyValueSampling"):
        spec = build_registry()[name]
        assert spec.defaults()["mask"] == "patches" and spec.param("mask").choices == ("patches", "superpixels")
        with pytest.raises(ValidationError, match="arguments.mask: must be one of patches, superpixels"):
            spec.validate({"mask": "pixels"}, (32, 32))
    # the cost follows the mask: superpixels cost their number, patches theirs
    fa = build_registry()["FeatureAblation"]
    assert fa.cost(fa.validate({"mask": "superpixels", "n_segments": 200}, (32, 32)), (32, 32)) == 200
    assert fa.cost(fa.validate({}, (32, 32)), (32, 32)) == 64
    svs = build_registry()["ShapleyValueSampling"]
    with pytest.raises(ValidationError, match="forward passes"):
        svs.validate({"mask": "superpixels", "n_segments": 2000, "n_samples": 100}, (224, 224))


@pytest.mark.parametrize("method,cls", [("Lime", Lime), ("KernelShap", KernelShap)])
def test_lime_and_kernel_shap_run_one_example_per_call_each_as_captum_alone(smooth_setup, method, cls):
    """What the engine does for a page: one seeded call per example, so a map depends on its example only."""
    vis, model, raw, x, zeros, targets = smooth_setup
    engine, spec = vis.engines[0], vis.methods[method]
    params = spec.validate({"n_samples": 60, "seed": 7, "n_segments": 25}, (32, 32))
    assert spec.randomized and engine.examples_per_call(spec, params, (raw,)) == 1
    for j in (0, 2):
        (got,) = engine.attribute(spec, params, ExampleBatch([j], (raw[j : j + 1],)), [int(targets[j])])
        want = seeded(
            lambda: cls(model).attribute(  # captum's own default surrogate model
                x[j : j + 1],
                baselines=zeros[j : j + 1],
                target=int(targets[j]),
                feature_mask=slic_masks(raw[j : j + 1], 25),
                n_samples=60,
                perturbations_per_eval=16,
            ),
            seed=7,
        )
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), f"{method}: max diff {(got - want).abs().max():.3g}"
    # through Engine.run: the same example gives the same map alone and in a page
    alone = engine.run(ExampleBatch([2], (raw[2:3],)), spec, params)[0].explanation.maps[0]
    fresh = AttributionVisualizer(
        [model],
        [str(i) for i in range(10)],
        [ImageFeature("image", input_transforms=[NORMALIZE])],
        [],
    )
    in_page = fresh.engines[0].run(ExampleBatch([0, 1, 2, 3], (raw,)), spec, params)[2].explanation.maps[0]
    assert np.allclose(alone, in_page, atol=1e-6)


def test_slic_gives_about_n_segments_and_a_grid_for_what_it_cannot_split():
    smooth = torch.nn.functional.avg_pool2d(
        torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(0)), 5, stride=1, padding=2
    )[0]
    labels = slic_segments(smooth, 30, 10.0)
    assert labels.shape == (40, 40) and labels.min() == 0 and 10 <= len(np.unique(labels)) <= 60
    noise = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    grid = slic_segments(noise, 16, 10.0)
    assert len(np.unique(grid)) == 16  # 8x8 squares
    gray = slic_segments(smooth[:1] * 255, 30, 10.0)  # 0-255 values and one channel are handled
    assert gray.shape == (40, 40) and len(np.unique(gray)) > 5


# ---------------------------------------------------------------- LRP


class PlainCNN(nn.Module):
    """Only layers LRP has rules for (Conv2d, ReLU, MaxPool2d, Linear), flattened in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.relu1, self.pool1 = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        self.conv2, self.relu2, self.pool2 = nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        self.fc = nn.Linear(6 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool2(self.relu2(self.conv2(self.pool1(self.relu1(self.conv1(x))))))
        return self.fc(x.flatten(1))


def _visualizer(model):
    data = RandomImages(n_batches=1, batch_size=4)
    return AttributionVisualizer(
        [model],
        [str(i) for i in range(10)],
        [ImageFeature("image", input_transforms=[NORMALIZE])],
        data,
        score_func=lambda o: torch.softmax(o, 1),
    ), data.batches[0].inputs


def test_lrp_on_supported_layers_equals_captum():
    torch.manual_seed(0)
    model = PlainCNN().eval()
    vis, raw = _visualizer(model)
    targets = torch.tensor([0, 2, 4, 6])
    got = engine_attr(vis, raw, targets, "LRP")
    want = LRP(model).attribute(torch.stack([NORMALIZE(r) for r in raw]), target=targets)
    assert got.abs().sum() > 0
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), f"max diff {(got - want).abs().max():.3g}"
    assert not any(hasattr(m, "rule") for m in model.modules())  # the model is left as it was


def test_lrp_keeps_a_rule_the_user_set():
    model = make_model()
    vis, raw = _visualizer(model)
    mine = EpsilonRule(epsilon=1e-3)
    model.fc.rule = mine
    engine_attr(vis, raw, torch.tensor([1, 2, 3, 4]), "LRP")
    assert model.fc.rule is mine and not hasattr(model.flat, "rule") and not hasattr(model.conv1, "rule")


def test_lrp_refuses_a_model_with_a_layer_it_has_no_rule_for_naming_it():
    model = make_model()
    model.relu1 = nn.ELU()  # no LRP rule for ELU
    vis, raw = _visualizer(model)
    with pytest.raises(ValidationError, match=r"no propagation rule for layer type ELU \('relu1'\)"):
        engine_attr(vis, raw, torch.tensor([1, 2, 3, 4]), "LRP")
    client = create_app(vis).test_client()
    for path, body in [
        ("/examples", {"method": "LRP", "page_size": 2}),
        ("/examples", {"method": "LRP", "page_size": 2, "stream": True}),
        ("/attribute", {"example_id": 1, "method": "LRP"}),
    ]:
        resp = client.post(API + path, data=json.dumps(body), content_type="application/json")
        text = resp.get_data(as_text=True)
        if body.get("stream") and resp.status_code == 200:  # a stream already begun says it in an error event
            events = [json.loads(line) for line in text.splitlines() if line.strip()]
            errors = [e for e in events if e.get("type") == "error" or "error" in e]
            assert errors and "ELU" in json.dumps(errors), events
            continue
        assert resp.status_code == 400, (path, resp.status_code, text[:300])
        assert "LRP has no propagation rule for layer type ELU" in resp.get_json()["error"]


# ---------------------------------------------------------------- layer methods


def test_layer_methods_take_the_layer_by_name():
    model = make_model()
    vis, raw = _visualizer(model)
    targets = torch.tensor([1, 3, 5, 7])
    x = torch.stack([NORMALIZE(r) for r in raw])
    zeros = torch.stack([NORMALIZE(torch.zeros_like(r)) for r in raw])
    got = engine_attr(
        vis, raw, targets, "LayerIntegratedGradients", {"layer": "conv1", "n_steps": 8, "interpolate_mode": "nearest"}
    )
    want = layer_map(
        LayerIntegratedGradients(model, model.conv1).attribute(x, baselines=zeros, target=targets, n_steps=8),
        mode="nearest",
    )
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)
    for name in ("LayerIntegratedGradients", "LayerConductance", "LayerDeepLift", "LayerGradientXActivation"):
        with pytest.raises(ValidationError, match="no spatial output"):
            engine_attr(vis, raw, targets, name, {"layer": "fc"})
        with pytest.raises(ValidationError, match="no layer named"):
            engine_attr(vis, raw, targets, name, {"layer": "nope"})


# ---------------------------------------------------------------- over HTTP


@pytest.mark.parametrize(
    "method,arguments",
    [(m, {}) for m in NEW_METHODS]
    + [("FeatureAblation", {"mask": "superpixels"}), ("ShapleyValueSampling", {"mask": "superpixels", "n_samples": 2})],
)
def test_each_new_method_fetches_a_page_of_maps_with_its_defaults(digits_visualizer, method, arguments):
    client = create_app(digits_visualizer).test_client()
    resp = client.post(
        API + "/examples",
        data=json.dumps({"method": method, "arguments": arguments, "page_size": 2}),
        content_type="application/json",
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    for ex in resp.get_json()["examples"]:
        (model,) = ex["models"]
        assert model["error"] is None, model["error"]
        (attr,) = model["attributions"]
        assert not is_blank(decode_data_url(attr["image"])), method


@pytest.mark.parametrize("method", ["Lime", "KernelShap", "FeatureAblation"])
def test_superpixel_methods_fall_back_to_one_feature_per_element_for_other_features(mixed_visualizer, method):
    client = create_app(mixed_visualizer).test_client()
    args = {"mask": "superpixels"} if method == "FeatureAblation" else {"n_samples": 40}
    resp = client.post(
        API + "/examples",
        data=json.dumps({"method": method, "arguments": args, "page_size": 2}),
        content_type="application/json",
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    for ex in resp.get_json()["examples"]:
        for model in ex["models"]:
            assert model["error"] is None, model["error"]
