"""``data_adapters.fastai.CaptumInterpretation``: fastai's captum docs, cell for cell, with our import.

A small RGB learner (fastai's docs use colour photos) over scikit-learn's digits written as PNG
files (conftest's ``digits``): its CNN is the one conftest's ``digits_learner`` trained, spread over
three channels, and it keeps its own image-folder DataLoaders, so it loads files exactly like a
learner trained with ``ImageDataLoaders.from_folder``. Figures are drawn with matplotlib's Agg
backend (no display).
"""

from __future__ import annotations

import json
import urllib.request

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from adapters_helpers import digit_cnn, pil_pixels, rgb_copy

fastai_vision = pytest.importorskip("fastai.vision.all")
pytestmark = pytest.mark.timeout(240)

MEAN, STD = [0.3, 0.3, 0.3], [0.4, 0.4, 0.4]
STEPS = 16  # integration steps where the default (1000) is not the point


@pytest.fixture(scope="module")
def learn(digits, digits_learner):
    """A trained single-label RGB CNN learner with a Normalize in its batch transforms.

    Its CNN is conftest's grey ``digits_learner`` with the first convolution spread over three
    channels (``rgb_copy``): the same predictions on these grey files opened as RGB, no second training.
    """
    fv = fastai_vision
    root, _ = digits
    dls = fv.ImageDataLoaders.from_folder(
        root,
        train="train",
        valid="valid",
        img_cls=fv.PILImage,
        bs=64,
        num_workers=0,
        batch_tfms=fv.Normalize.from_stats(MEAN, STD, cuda=False),
    )
    learn = fv.Learner(dls, rgb_copy(digits_learner.model), loss_func=fv.CrossEntropyLossFlat(), metrics=fv.accuracy)
    with learn.no_bar():
        preds, targets = learn.get_preds()
    assert float((preds.argmax(1) == targets).float().mean()) > 0.5  # a real, trained learner
    return learn


@pytest.fixture(scope="module")
def fname(digits):
    return digits[1]["valid"][0]


@pytest.fixture(scope="module")
def fnames(digits):
    return digits[1]["valid"][:6]


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def model_input(learn, path) -> torch.Tensor:
    """The learner's test-time input for a file, built with fastai directly (not through our class)."""
    x = learn.dls.test_dl([path]).one_batch()[0]
    return x.as_subclass(torch.Tensor)


def predicted(learn, x) -> int:
    with torch.no_grad():
        return int(learn.model.eval()(x).argmax(1)[0])


def expected_heat_map(attr: torch.Tensor, sign: str = "positive", outlier_perc: float = 1) -> np.ndarray:
    """What captum's ``visualize_image_attr(method='heat_map')`` draws for an attribution."""
    from captum.attr import visualization as viz

    return viz._normalize_attr(attr[0].detach().sum(0).numpy(), sign, outlier_perc)


def test_the_import_works_from_both_places():
    import data_adapters
    from data_adapters.captum_interpretation import CaptumInterpretation as Ours
    from data_adapters.fastai import CaptumInterpretation

    assert CaptumInterpretation is Ours is data_adapters.CaptumInterpretation


def test_every_cell_of_fastais_captum_docs_runs(learn, fname, fnames):
    from data_adapters.fastai import CaptumInterpretation

    interp = CaptumInterpretation(learn)
    figs = [
        interp.visualize(fname),
        interp.visualize(fname, baseline_type="uniform"),
        interp.visualize(fname, baseline_type="gauss"),
        interp.visualize(fname, metric="NT", baseline_type="uniform"),
        interp.visualize(fname, metric="Occl", baseline_type="gauss"),
    ]
    pred = predicted(learn, model_input(learn, fname))
    for fig, metric in zip(figs, ["IG", "IG", "IG", "NT", "Occl"]):
        axes = image_axes(fig)
        assert len(axes) == 2
        assert axes[0].get_title().startswith(f"Original Image - ({learn.dls.vocab[pred]}")
        assert axes[1].get_title() == metric
        assert fig.insights_attribution.metric == metric and fig.insights_attribution.target == pred
        assert np.isfinite(np.asarray(axes[1].images[0].get_array(), dtype=float)).all()
    vis = interp.insights(fnames)
    try:
        assert vis.url is not None
    finally:
        vis.stop()


def test_heat_map_is_captums_integrated_gradients_of_the_learners_input(learn, fname):
    from captum.attr import IntegratedGradients

    from data_adapters.fastai import CaptumInterpretation

    x = model_input(learn, fname)
    target = predicted(learn, x)
    expected = IntegratedGradients(learn.model).attribute(
        x, baselines=torch.zeros_like(x), target=target, n_steps=STEPS
    )
    fig = CaptumInterpretation(learn).visualize(fname, n_steps=STEPS)
    original, heat = image_axes(fig)
    drawn = fig.insights_attribution
    assert torch.equal(drawn.inputs, x)
    torch.testing.assert_close(drawn.attributions, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(heat.images[0].get_array()), expected_heat_map(expected), atol=1e-5)
    # the original is the file's pixels, decoded from the model's input
    shown = np.asarray(original.images[0].get_array())
    np.testing.assert_array_equal(shown, np.asarray(pil_pixels(fname, "RGB").permute(1, 2, 0) * 255).round())


def test_random_baselines_are_fastais_draws(learn, fname):
    from captum.attr import IntegratedGradients

    from data_adapters.fastai import CaptumInterpretation

    interp = CaptumInterpretation(learn)
    x = model_input(learn, fname)
    target = predicted(learn, x)
    for kind in ("uniform", "gauss"):
        drawn = interp.visualize(fname, n_steps=STEPS, baseline_type=kind).insights_attribution
        again = interp.attribute(fname, n_steps=STEPS, baseline_type=kind)
        noise = drawn.baseline if kind == "uniform" else 2 * drawn.baseline - x  # fastai: (uniform noise + x) / 2
        assert drawn.baseline.shape == x.shape and not torch.equal(drawn.baseline, again.baseline)
        assert float(noise.min()) >= -1e-6 and float(noise.max()) < 1 + 1e-6 and float(noise.std()) > 0.2
        expected = IntegratedGradients(learn.model).attribute(x, baselines=drawn.baseline, target=target, n_steps=STEPS)
        torch.testing.assert_close(drawn.attributions, expected, rtol=1e-5, atol=1e-7)


def test_n_steps_is_honoured(learn, fname, monkeypatch):
    from captum.attr import IntegratedGradients

    from data_adapters.fastai import CaptumInterpretation

    calls = []
    original = IntegratedGradients.attribute

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("n_steps"))
        return original(self, *args, **kwargs)

    def unlogged(self, *args, **kwargs):  # what NoiseTunnel calls (captum's attribute.__wrapped__)
        calls.append(kwargs.get("n_steps"))
        return original.__wrapped__(self, *args, **kwargs)

    spy.__wrapped__ = unlogged
    monkeypatch.setattr(IntegratedGradients, "attribute", spy)
    interp = CaptumInterpretation(learn)
    few = interp.visualize(fname, n_steps=2).insights_attribution.attributions
    many = interp.visualize(fname, n_steps=STEPS).insights_attribution.attributions
    interp.visualize(fname, metric="NT", n_steps=5)
    interp.visualize(fname)
    assert calls == [2, STEPS, 5, 1000]
    assert not torch.allclose(few, many)


def test_pil_images_and_tensors_go_through_the_learners_pipeline(learn, fname):
    from PIL import Image

    from data_adapters.fastai import CaptumInterpretation

    interp = CaptumInterpretation(learn)
    by_file = interp.attribute(fname, n_steps=STEPS)
    pixels = pil_pixels(fname, "RGB")
    with Image.open(fname) as im:  # a grey PNG: the learner's pipeline opens it as RGB
        inputs = [
            im.copy(),
            im,
            pixels,
            (pixels * 255).round().to(torch.uint8),
            pil_pixels(fname, "L"),
            pixels[None],
            fastai_vision.TensorImage(pixels),
        ]
        for inp in inputs:
            got = interp.attribute(inp, n_steps=STEPS)
            assert torch.equal(got.inputs, by_file.inputs), type(inp).__name__
            torch.testing.assert_close(got.attributions, by_file.attributions)
            assert got.label is None and by_file.label == int(fname.parent.name)
        fig = interp.visualize(im, n_steps=STEPS)
    assert len(image_axes(fig)) == 2
    assert interp.visualize(pixels, metric="Occl").insights_attribution.attributions.shape == (1, 3, 16, 16)


def test_wrong_arguments_are_clear_errors(learn, fname, tmp_path):
    from data_adapters.fastai import CaptumInterpretation

    interp = CaptumInterpretation(learn)
    with pytest.raises(ValueError, match="metric must be one of 'IG', 'NT', 'Occl', not 'GradCAM'"):
        interp.visualize(fname, metric="GradCAM")
    with pytest.raises(ValueError, match="baseline_type must be one of 'zeros', 'uniform', 'gauss', not 'ones'"):
        interp.visualize(fname, baseline_type="ones")
    with pytest.raises(ValueError, match="nt_type must be one of 'smoothgrad', 'smoothgrad_sq', 'vargrad'"):
        interp.visualize(fname, metric="NT", nt_type="noise")
    with pytest.raises(ValueError, match="n_steps must be a positive integer"):
        interp.visualize(fname, n_steps=0)
    with pytest.raises(TypeError, match="an image file name .* a PIL image or an image tensor, not int"):
        interp.visualize(3)
    with pytest.raises(ValueError, match="no such image file"):
        interp.visualize(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="image tensor must be"):
        interp.visualize(torch.zeros(2, 16, 16))
    with pytest.raises(ValueError, match="target must be"):
        interp.visualize(fname, n_steps=STEPS, target=10)
    with pytest.raises(ValueError, match="sliding_window_shapes and strides need 3 values"):
        interp.visualize(fname, metric="Occl", sliding_window_shapes=(15, 15))
    with pytest.raises(ValueError, match="expected a fastai Learner"):
        CaptumInterpretation(learn.model)


def test_target_colormap_methods_and_signs(learn, fname):
    from data_adapters.fastai import CaptumInterpretation

    interp = CaptumInterpretation(
        learn,
        cmap_name="reds",
        colors=[(0, "#ffffff"), (1, "#ff0000")],
        N=16,
        methods=("heat_map", "original_image", "blended_heat_map"),
        signs=("absolute_value", "all", "positive"),
        outlier_perc=2,
    )
    x = model_input(learn, fname)
    other = (predicted(learn, x) + 1) % 10
    fig = interp.visualize(fname, n_steps=STEPS, target=str(other))
    heat, original, _blended = image_axes(fig)
    assert heat.get_title() == f"IG - ({other})" and original.get_title().startswith("Original Image - (")
    assert heat.images[0].get_cmap().name == "reds" and heat.images[0].get_cmap().N == 16
    drawn = fig.insights_attribution
    assert drawn.target == other != drawn.predicted
    np.testing.assert_allclose(
        np.asarray(heat.images[0].get_array()), expected_heat_map(drawn.attributions, "absolute_value", 2), atol=1e-5
    )


def test_a_grey_learner_with_fastais_occlusion_defaults(digits, fname):
    """fastai's Occl defaults are for RGB images; on a grey one the window is clipped to one channel."""
    from data_adapters.fastai import CaptumInterpretation

    fv = fastai_vision
    root, _ = digits
    dls = fv.ImageDataLoaders.from_folder(
        root, train="train", valid="valid", img_cls=fv.PILImageBW, bs=64, num_workers=0
    )
    learn = fv.Learner(dls, digit_cnn(10, channels=1), loss_func=fv.CrossEntropyLossFlat())
    interp = CaptumInterpretation(learn)
    for metric in ("IG", "Occl"):
        fig = interp.visualize(fname, metric=metric, n_steps=STEPS)
        assert len(image_axes(fig)) == 2
        assert fig.insights_attribution.attributions.shape == (1, 1, 16, 16)


def test_insights_outside_a_notebook_serves_the_page(learn, fnames, capsys):
    from data_adapters.fastai import CaptumInterpretation

    vis = CaptumInterpretation(learn).insights(fnames)
    try:
        assert vis.url and vis.url in capsys.readouterr().out
        with urllib.request.urlopen(vis.url.rstrip("/") + "/api/v1/config", timeout=30) as resp:
            assert resp.status == 200
            config = json.load(resp)
        assert config["classes"] == [str(v) for v in learn.dls.vocab]
    finally:
        assert vis.stop()


def test_insights_in_a_notebook_renders_the_widget(learn, fnames, monkeypatch):
    from data_adapters import captum_interpretation
    from data_adapters.fastai import CaptumInterpretation
    from insights_app import AttributionVisualizer

    rendered = []
    monkeypatch.setattr(captum_interpretation, "_in_notebook", lambda: True)
    monkeypatch.setattr(AttributionVisualizer, "render", lambda self, debug=False, height=900: rendered.append(debug))
    vis = CaptumInterpretation(learn).insights(fnames, debug=False)
    assert isinstance(vis, AttributionVisualizer) and rendered == [False] and vis.url is None
    from PIL import Image

    with Image.open(fnames[0]) as im:  # images and tensors too, through the learner's pipeline
        mixed = CaptumInterpretation(learn).insights([fnames[1], im, pil_pixels(fnames[2], "RGB")])
    assert isinstance(mixed, AttributionVisualizer) and rendered == [False, True] and mixed.url is None
