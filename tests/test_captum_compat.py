"""Code written for captum 0.8's captum.insights runs after changing only its imports."""

from __future__ import annotations

import json
import urllib.request

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms as transforms

# The only lines that differ from a captum.insights script:
from insights_app import AttributionVisualizer, Batch
from insights_app.features import ImageFeature


class Net(nn.Module):
    """The CIFAR network of the captum.insights tutorial, shrunk."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 32)
        self.fc2 = nn.Linear(32, 10)
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.relu3 = nn.ReLU()

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        x = self.relu3(self.fc1(x))
        return self.fc2(x)


def get_classes():
    return ["Plane", "Car", "Bird", "Cat", "Deer", "Dog", "Frog", "Horse", "Ship", "Truck"]


def baseline_func(input):
    return input * 0


def formatted_data_iter():
    g = torch.Generator().manual_seed(0)
    dataset = [(torch.rand(3, 32, 32, generator=g), int(torch.randint(0, 10, (1,), generator=g))) for _ in range(12)]
    dataloader = iter(torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=False, num_workers=0))
    while True:
        images, labels = next(dataloader)
        yield Batch(inputs=images, labels=labels)


def _post(port, path, body):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def test_captum_insights_tutorial_script_runs_with_new_imports():
    torch.manual_seed(0)
    model = Net()
    model.eval()
    normalize = transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    visualizer = AttributionVisualizer(
        models=[model],
        score_func=lambda o: F.softmax(o, 1),
        classes=get_classes(),
        features=[
            ImageFeature(
                "Photo",
                baseline_transforms=[baseline_func],
                input_transforms=[normalize],
            )
        ],
        dataset=formatted_data_iter(),
    )
    port = visualizer.serve(debug=True)
    try:
        assert isinstance(port, int) and port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/config", timeout=30) as resp:
            config = json.loads(resp.read())
        assert config["classes"] == get_classes()
        assert config["features"] == [{"name": "Photo", "type": "image"}]
        page = _post(
            port,
            "/api/v1/examples",
            {"method": "IntegratedGradients", "arguments": {"n_steps": 25, "baseline": "feature"}},
        )
        examples = page["examples"]
        assert [e["id"] for e in examples] == [0, 1, 2, 3]
        for e in examples:
            model_out = e["models"][0]
            probs = [p["score"] for p in model_out["predictions"]]
            assert len(probs) == 4 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
            assert model_out["predictions"][0]["label"] in get_classes()
            assert model_out["attributions"][0]["image"].startswith("data:image/png;base64,")
            assert e["label"]["name"] in get_classes()
    finally:
        visualizer.stop()


# ---------------------------------------------------------------- captum.insights' Python API, in full
# What captum 0.8's own tests of captum.insights check (its test_contribution.py and test_features.py),
# asserted here in our words and with our data: the visualizer used without its page (FilterConfig,
# visualize(), get_insights_config()), and each feature's visualization_type() and visualize().

import base64 as _b64  # noqa: E402 - the section's own imports
import io as _io  # noqa: E402
from unittest import mock  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from captum.attr import IntegratedGradients  # noqa: E402

from insights_app import FilterConfig  # noqa: E402
from insights_app.features import (  # noqa: E402
    BaseFeature,
    EmptyFeature,
    FeatureOutput,
    GeneralFeature,
    TextFeature,
    _convert_figure_base64,
    feature_type,
)
from insights_app.legacy import OutputScore, VisualizationOutput  # noqa: E402

FRUITS = ["apple", "pear", "plum", "fig"]


class Sensor(BaseFeature):
    """A user's own feature written as captum's docs show: a type of its own and its own visualize()."""

    seen: list = []  # noqa: RUF012 - each test resets it

    @staticmethod
    def visualization_type() -> str:
        return "real"

    def visualize(self, attribution, data, contribution_frac) -> FeatureOutput:
        Sensor.seen.append((attribution.detach().clone(), data.detach().clone()))
        return FeatureOutput(self.name, data, attribution, self.visualization_type(), contribution_frac)


class PhotoAndSensor(nn.Module):
    """Two inputs: a 3x8x8 photo and 3 sensor readings; tanh so that the path integral's steps matter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.photo = nn.Linear(2 * 6 * 6, 5)
        self.sensor = nn.Linear(3, 5)
        self.out = nn.Linear(5, len(FRUITS))

    def forward(self, photo, sensor):
        return self.out(torch.tanh(self.photo(torch.tanh(self.conv(photo)).flatten(1)) + self.sensor(sensor)))


def _orchard(n: int = 6, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    photos = torch.rand(n, 3, 8, 8, generator=g)
    sensors = torch.randn(n, 3, generator=g)
    labels = torch.randint(0, len(FRUITS), (n,), generator=g)
    return photos, sensors, labels


def orchard_visualizer(n: int = 6, **kw) -> AttributionVisualizer:
    torch.manual_seed(5)
    photos, sensors, labels = _orchard(n)
    zero = [lambda x: x * 0]
    return AttributionVisualizer(
        models=[PhotoAndSensor()],
        classes=FRUITS,
        features=[
            ImageFeature("Photo", baseline_transforms=zero, input_transforms=[]),
            Sensor("Sensor", baseline_transforms=zero, input_transforms=[]),
        ],
        dataset=[
            Batch(inputs=(photos[i : i + 2], sensors[i : i + 2]), labels=labels[i : i + 2]) for i in range(0, n, 2)
        ],
        **kw,
    )


def test_filter_config_has_captums_fields_defaults_and_type():
    assert FilterConfig._fields == (
        "attribution_method",
        "attribution_arguments",
        "prediction",
        "classes",
        "num_examples",
    )
    c = FilterConfig()
    assert c == ("IntegratedGradients", {"n_steps": 25, "method": "gausslegendre"}, "all", [], 4)
    assert c._replace(num_examples=2).num_examples == 2
    from insights_app.visualizer import FilterConfig as same  # where AttributionVisualizer lives, as in captum

    assert same is FilterConfig


def test_visualize_honours_a_config_set_on_the_private_attribute_as_captums_tests_do():
    vis = orchard_visualizer()
    Sensor.seen = []
    vis._config = FilterConfig(attribution_arguments={"n_steps": 2})
    outputs = vis.visualize()
    assert len(outputs) == 4  # num_examples
    for per_model in outputs:
        (out,) = per_model  # one model
        assert isinstance(out, VisualizationOutput) and out.model_index == 0
        assert [f.type for f in out.feature_outputs] == ["image", "real"]
        assert sum(abs(f.contribution) for f in out.feature_outputs) == pytest.approx(1.0, abs=1e-6)
        assert len(out.predicted) == 4 and all(isinstance(p, OutputScore) for p in out.predicted)
        assert [p.score for p in out.predicted] == sorted((p.score for p in out.predicted), reverse=True)
        assert out.active_index == out.predicted[0].index  # attributed to the top prediction
        assert out.actual.score == 100 and out.actual.label == FRUITS[out.actual.index]
        photo = out.feature_outputs[0]
        assert _b64.b64decode(photo.base)[:8] == b"\x89PNG\r\n\x1a\n" != photo.modified
    # The sensor's attribution is captum's IG with 2 steps, to the top prediction, from the zero baseline.
    photos, sensors, _ = _orchard()
    model = vis.models[0]
    first_attr, first_data = Sensor.seen[0]
    assert first_attr.shape == (1, 3) and torch.equal(first_data, sensors[:1])
    target = outputs[0][0].active_index
    ig = IntegratedGradients(model)
    inputs = (photos[:1], sensors[:1])
    zeros = tuple(x * 0 for x in inputs)
    two = ig.attribute(inputs, baselines=zeros, target=target, n_steps=2)[1]
    fifty = ig.attribute(inputs, baselines=zeros, target=target, n_steps=50)[1]
    assert torch.allclose(first_attr, two, atol=1e-6) and not torch.allclose(first_attr, fifty, atol=1e-4)


def test_visualize_takes_a_config_publicly_goes_on_where_it_stopped_and_filters():
    vis = orchard_visualizer()
    with pytest.raises(TypeError):
        vis.filter_config = {"num_examples": 2}
    first = vis.visualize(FilterConfig(attribution_arguments={"n_steps": 2}, num_examples=4))
    assert vis.filter_config.num_examples == 4 and vis._config is vis.filter_config
    second = vis.visualize()  # examples 4 and 5, then wrapped round to 0 and 1

    def labels(outs):
        return [o[0].actual.index for o in outs]

    _, _, y = _orchard()
    assert labels(first) == y[:4].tolist() and labels(second) == y[4:].tolist() + y[:2].tolist()
    # Right and wrong predictions split the dataset; a class filter keeps the top predictions named.
    every = vis.visualize(FilterConfig(attribution_arguments={"n_steps": 2}, num_examples=6))
    right = [o[0] for o in every if o[0].predicted[0].index == o[0].actual.index]
    correct = vis.visualize(FilterConfig(attribution_arguments={"n_steps": 2}, prediction="correct", num_examples=6))
    wrong = vis.visualize(FilterConfig(attribution_arguments={"n_steps": 2}, prediction="incorrect", num_examples=6))
    assert len(correct) == len(right) and len(correct) + len(wrong) == 6
    top = every[0][0].predicted[0].label
    only = vis.visualize(FilterConfig(attribution_arguments={"n_steps": 2}, classes=[top], num_examples=6))
    assert only and all(o[0].predicted[0].label == top for o in only)
    # A filter nothing matches answers nothing (captum's loop never ended).
    assert vis.visualize(FilterConfig(classes=["durian"], attribution_arguments={"n_steps": 2})) == []


def test_visualize_answers_each_model_attributed_to_its_own_top_prediction():
    torch.manual_seed(11)
    two = orchard_visualizer(n=4)
    other = PhotoAndSensor()
    both = AttributionVisualizer(
        models=[two.models[0], other], classes=FRUITS, features=two.features, dataset=two.store.dataset
    )
    outputs = both.visualize(FilterConfig(attribution_arguments={"n_steps": 2}, num_examples=4))
    assert len(outputs) == 4
    for per_model in outputs:
        assert [o.model_index for o in per_model] == [0, 1]
        assert all(o.active_index == o.predicted[0].index for o in per_model)
        assert all(sum(abs(f.contribution) for f in o.feature_outputs) == pytest.approx(1.0) for o in per_model)
    assert any(a.predicted[0].index != b.predicted[0].index for a, b in outputs) or any(
        a.predicted[0].score != b.predicted[0].score for a, b in outputs
    )


def test_get_insights_config_lists_classes_methods_and_their_arguments():
    vis = orchard_visualizer()
    cfg = vis.get_insights_config()
    assert set(cfg) == {"classes", "methods", "method_arguments", "selected_method"}
    assert cfg["classes"] == FRUITS and cfg["selected_method"] == "IntegratedGradients"
    assert {"IntegratedGradients", "Saliency", "Occlusion", "FeatureAblation"} <= set(cfg["methods"])
    ig = cfg["method_arguments"]["IntegratedGradients"]
    assert ig["n_steps"] == {"value": 50, "limit": (1, 1000), "type": "number"}
    assert ig["method"]["type"] == "enum" and "riemann_left" in ig["method"]["limit"]
    assert cfg["method_arguments"]["Occlusion"]["window"] == {"value": "", "type": "string"}
    vis.filter_config = FilterConfig(attribution_method="Saliency")
    assert vis.get_insights_config()["selected_method"] == "Saliency"


def test_captums_occlusion_argument_names_are_understood():
    vis = orchard_visualizer(n=2)
    config = FilterConfig("Occlusion", {"sliding_window_shapes": "3 4 4", "strides": 2}, num_examples=2)
    outputs = vis.visualize(config)
    assert len(outputs) == 2 and all(o[0].feature_outputs[0].type == "image" for o in outputs)


def test_each_feature_names_its_visualization_type():
    assert [f.visualization_type() for f in (ImageFeature, TextFeature, GeneralFeature, EmptyFeature)] == [
        "image",
        "text",
        "general",
        "empty",
    ]
    assert feature_type(Sensor("s", None, None)) == "real" and Sensor("s", None, None).describe()["type"] == "real"


def _png(text: str) -> tuple[int, int]:
    from PIL import Image

    return Image.open(_io.BytesIO(_b64.b64decode(text))).size


def test_image_visualize_draws_a_batch_of_one_with_captums_visualize_image_attr():
    feature = ImageFeature("leaf", baseline_transforms=None, input_transforms=None)
    g = torch.Generator().manual_seed(1)
    out = feature.visualize(torch.randn(1, 3, 6, 6, generator=g), torch.rand(1, 3, 6, 6, generator=g), 0.25)
    assert out.name == "leaf" and out.type == "image" and out.contribution == 0.25
    assert _png(out.base) == _png(out.modified) and out.base != out.modified
    gray = feature.visualize(torch.randn(1, 1, 6, 6, generator=g), torch.rand(1, 1, 6, 6, generator=g), 1.0)
    assert _png(gray.base)[0] > 0
    # What is drawn is what captum's visualize_image_attr draws: the original, then the absolute heat map.
    from matplotlib.figure import Figure

    figures = {"original_image": Figure(figsize=(2, 2)), "heat_map": Figure(figsize=(3, 3))}
    calls = []

    def drawn(attr, image, method, sign="absolute_value", use_pyplot=True, **kw):
        calls.append((attr.shape, image.shape, method, sign, use_pyplot))
        return figures[method], None

    with mock.patch("captum.attr.visualization.visualize_image_attr", drawn):
        out = feature.visualize(torch.zeros(1, 3, 5, 7), torch.ones(1, 3, 5, 7), 1.0)
    assert out.base == _convert_figure_base64(figures["original_image"])
    assert out.modified == _convert_figure_base64(figures["heat_map"])
    assert [c[2] for c in calls] == ["original_image", "heat_map"] and calls[1][3] == "absolute_value"
    assert {c[0] for c in calls} == {(5, 7, 3)} and not any(c[4] for c in calls)


def test_text_visualize_gives_one_value_per_token_scaled_to_100():
    words = ["tart", "sweet", "ripe", "sour", "dry"]
    feature = TextFeature("review", None, None, lambda ids: [words[i] for i in ids.flatten().tolist()])
    ids = torch.tensor([[4, 0, 2]])
    out = feature.visualize(torch.tensor([[0.5, -2.0, 1.0]]), ids, 0.5)
    assert out.base == ["dry", "tart", "ripe"] and out.type == "text"
    assert out.modified == pytest.approx([25.0, -100.0, 50.0])
    per_dim = feature.visualize(torch.tensor([[[1.0, 1.0], [0.0, -4.0], [2.0, 0.0]]]), ids, 0.5)
    assert per_dim.modified == pytest.approx([50.0, -100.0, 50.0])  # an embedding's dimensions summed per token
    plain = TextFeature("review", None, None, None)
    zero = plain.visualize(torch.zeros(1, 3), ids, 0.0)
    assert zero.base is ids and zero.modified == [0.0, 0.0, 0.0]


def test_general_visualize_names_each_value_and_scales_by_the_norm():
    feature = GeneralFeature("soil", ["ph", "moisture", "nitrogen"])
    out = feature.visualize(torch.tensor([[3.0, 0.0, -4.0]]), torch.tensor([[6.5, 0.125, 12.0]]), 0.75)
    assert out.base == ["ph: 6.50", "moisture: 0.12", "nitrogen: 12.00"]
    assert out.modified == pytest.approx([60.0, 0.0, -80.0]) and out.type == "general" and out.contribution == 0.75
    assert feature.visualize(torch.zeros(1, 3), torch.ones(1, 3), 0.0).modified == [0.0, 0.0, 0.0]


def test_empty_visualize_shows_nothing():
    assert EmptyFeature().visualize(None, None, 0.3) == FeatureOutput("empty", None, None, "empty", 0.3)


def test_a_users_feature_type_is_published_and_shown_by_the_fallback_renderer():
    from insights_app.page.feature_kinds import renderer_for
    from insights_app.transport.server import create_app

    vis = orchard_visualizer(n=2)
    client = create_app(vis).test_client()
    config = client.get("/api/v1/config").get_json()
    assert config["features"] == [{"name": "Photo", "type": "image"}, {"name": "Sensor", "type": "real"}]
    page = client.post("/api/v1/examples", json={"method": "Saliency", "page_size": 1}).get_json()
    (ex,) = page["examples"]
    assert [f["type"] for f in ex["features"]] == ["image", "real"]
    sensor = ex["models"][0]["attributions"][1]
    assert sensor["type"] == "real" and sensor["name"] == "Sensor" and len(sensor["scores"]) == 3
    assert renderer_for(vis.features[1], vis.presenter.renderers).kind == "base"

    class XRay(ImageFeature):
        @staticmethod
        def visualization_type() -> str:
            return "xray"

    assert renderer_for(XRay("x", None, None), vis.presenter.renderers).kind == "image"
    assert np.isfinite(sensor["scores"]).all()


@pytest.mark.slow
def test_a_users_feature_type_is_drawn_on_the_page(ui):
    from ui_helpers import open_app, serve

    vis = orchard_visualizer(n=2)
    handle = serve(vis)
    try:
        open_app(ui, handle.url + "?method=Saliency&size=2")
        shown = ui.page.locator(".ia-card .ia-values-attr[data-type=real]")
        assert shown.count() == 2
        assert shown.first.locator(".ia-barchart-row").count() == 3
        assert 'of a "real" feature' in shown.first.inner_text()
    finally:
        handle.close()
        vis.stop()
