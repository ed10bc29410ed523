"""Faults in the user's data and model that must stay local (issue 29, item 5): a NaN output, a model
failing on one image, labels outside the classes, class names a spreadsheet would run, and command-line
outputs and filters that cannot work, refused before the work."""

from __future__ import annotations

import csv
import importlib
import io
import logging
import math

import numpy as np
import pytest
import torch
from reliability_helpers import POISON, Digits, make_visualizer

from insights_app import AttributionVisualizer, Batch
from insights_app.features import ImageFeature
from insights_app.page.export import csv_text
from insights_app.testing import TinyCNN, seeded
from insights_app.triage.losses import choose_loss

SOFTMAX = lambda o: torch.softmax(o, dim=1)  # noqa: E731


class NaNOnPoison(TinyCNN):
    """A model whose output is NaN for a poisoned example (first pixel POISON), finite for the others."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        bad = (x[:, 0, 0, 0] <= POISON + 1e-6)[:, None]
        return torch.where(bad, torch.full_like(out, float("nan")), out)


# ---------------------------------------------------------------- the loss, chosen on finite rows


def test_one_nan_output_in_the_first_batch_costs_that_example_its_loss_not_the_dataset():
    vis = make_visualizer(seeded(NaNOnPoison), dataset=Digits(n=32, batch_size=16, poison=[1]))
    interp = vis.interpretation(progress=False)
    assert interp.has_losses and interp.loss_name == "cross-entropy", interp.note
    assert "neither softmax nor sigmoid" not in interp.note
    losses = vis.dataset_pass.snapshot().losses[0]
    assert math.isnan(losses[1]) and np.isfinite(np.delete(losses, 1)).all()
    assert interp.failed == 1 and len(interp.top_losses()[1]) == 31
    rows = list(csv.DictReader(io.StringIO(csv_text(vis)[0])))
    assert rows[1]["loss"] == "" and "not finite" in rows[1]["error"]
    assert all(float(r["loss"]) >= 0 for i, r in enumerate(rows) if i != 1)


def test_the_choice_ignores_non_finite_rows_and_waits_for_a_finite_one():
    out = torch.randn(6, 4)
    out[0] = float("nan")
    out[3, 2] = float("inf")
    choice = choose_loss(SOFTMAX, None, out)
    assert choice is not None and choice.name == "cross-entropy"
    assert choose_loss(SOFTMAX, None, torch.full((4, 4), float("nan"))) is None  # nothing to judge by: next batch


def test_a_batch_of_nan_outputs_first_leaves_the_choice_to_the_next_batch():
    vis = make_visualizer(seeded(NaNOnPoison), dataset=Digits(n=32, batch_size=8, poison=range(8)))
    interp = vis.interpretation(progress=False)
    losses = vis.dataset_pass.snapshot().losses[0]
    assert interp.loss_name == "cross-entropy" and np.isnan(losses[:8]).all() and np.isfinite(losses[8:]).all()


class OneOutput(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_a_one_output_softmax_model_is_told_why_it_has_no_loss():
    vis = AttributionVisualizer(seeded(OneOutput), ["yes"], [ImageFeature("digit")], Digits(n=16), score_func=SOFTMAX)
    interp = vis.interpretation(progress=False)
    assert not interp.has_losses
    assert "one output" in interp.note and "sigmoid" in interp.note
    assert "neither softmax nor sigmoid" not in interp.note


# ---------------------------------------------------------------- a model failing on one image of a folder


class FailsOnWhite(torch.nn.Module):
    """A model that raises on an all-white image (any batch holding one), like a model that cannot
    take some input; its other images are fine."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 3)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x.flatten(1).amin(dim=1) > 0.99).any()):
            raise ValueError("cannot take an all-white image")
        return self.pool(self.conv(x)).flatten(1)


@pytest.fixture
def folder_with_a_white_second_image(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for j in range(2):
            pixels = rng.integers(0, 200, (12, 12, 3), dtype=np.uint8)
            if (cls, j) == ("a", 1):
                pixels[:] = 255
            Image.fromarray(pixels).save(tmp_path / cls / f"{j}.png")
    return tmp_path


def test_a_model_failing_on_the_second_image_opens_the_folder_with_that_card_failed(
    folder_with_a_white_second_image, tmp_path_factory
):
    from data_adapters import source_from_folder

    source = source_from_folder(folder_with_a_white_second_image, seeded(FailsOnWhite), size=12)  # not refused
    vis = source.visualizer(store=str(tmp_path_factory.mktemp("store")))
    page = vis.page({"method": "Saliency", "page_size": 4})
    models = [ex["models"][0] for ex in page["examples"]]
    assert [ex["id"] for ex in page["examples"]] == [0, 1, 2, 3]
    assert "cannot take an all-white image" in models[1]["error"]
    assert all(m["predictions"] and not m["error"] for i, m in enumerate(models) if i != 1)

    from insights_app.precompute import precompute

    summary = precompute(vis, ["Saliency"], progress=False, report=lambda line: None)
    assert summary.examples == 4 and summary.failed == 1 and summary.stored + summary.already == 3
    assert any("all-white" in f for f in summary.failures)


def test_a_model_failing_on_every_first_image_is_still_refused_with_its_error(folder_with_a_white_second_image):
    from data_adapters import AdapterError, source_from_folder

    class Broken(FailsOnWhite):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ValueError("broken everywhere")

    with pytest.raises(AdapterError, match="the model failed on the first examples.*broken everywhere"):
        source_from_folder(folder_with_a_white_second_image, seeded(Broken), size=12)


# ---------------------------------------------------------------- labels outside the model's classes


def test_labels_outside_the_classes_are_unlabeled_with_one_warning(caplog):
    x = torch.rand(6, 1, 8, 8)
    labels = [0, 2**32, 2**32 + 1, 5, 1, 2]  # a 3-class model
    data = [Batch(x[:3], labels[:3]), Batch(x[3:], torch.tensor(labels[3:]))]
    with caplog.at_level(logging.WARNING, logger="insights_app.dataset"):
        vis = AttributionVisualizer(
            seeded(TinyCNN, n_classes=3), ["x", "y", "z"], [ImageFeature("digit")], data, score_func=SOFTMAX
        )
        interp = vis.interpretation(progress=False)
        page = vis.page({"method": "Saliency", "page_size": 6})
    assert [ex["label"] for ex in page["examples"]][1:4] == [None, None, None]
    assert [ex["label"]["name"] for ex in page["examples"] if ex["label"]] == ["x", "y", "z"]
    assert interp.labels.tolist() == [0, -1, -1, -1, 1, 2]  # not wrapped onto classes 0, 1
    assert interp.labeled == 3 and interp.confusion_matrix().sum() == 3
    warnings = [r.getMessage() for r in caplog.records if r.name == "insights_app.dataset"]
    assert len(warnings) == 1 and "not one of the model's 3 classes" in warnings[0]


def test_labels_outside_the_classes_are_unlabeled_when_the_source_is_read_by_position():
    """The same rule on a map-style torch Dataset, which the pages and the pass read by position."""
    from data_adapters import from_dataset

    x = torch.rand(6, 1, 8, 8)
    labels = torch.tensor([0, 2**32, 5, 1, 2, 7])  # a 3-class model
    vis = from_dataset(torch.utils.data.TensorDataset(x, labels), seeded(TinyCNN, n_classes=3), ["x", "y", "z"])
    assert vis.store.indexed is not None  # read by position, not forward
    page = vis.page({"method": "Saliency", "page": 1, "page_size": 3})
    assert [ex["id"] for ex in page["examples"]] == [3, 4, 5]
    assert [ex["label"] and ex["label"]["name"] for ex in page["examples"]] == ["y", "z", None]
    interp = vis.interpretation(progress=False)
    assert interp.labels.tolist() == [0, -1, -1, 1, 2, -1]


# ---------------------------------------------------------------- CSV cells a spreadsheet would run


def test_csv_cells_that_a_spreadsheet_would_run_as_formulas_are_neutralised():
    """OWASP's CSV injection guidance: a text cell starting with = + - @ tab or carriage return gets a
    leading single quote; numbers and other names are written as they are."""
    classes = ['=HYPERLINK("http://x","y")', "@SUM(A1)", "+1", "-1", "\tcmd", "\rcmd", "plain", "a=b", "8", "9"]
    vis = AttributionVisualizer(seeded(TinyCNN), classes, [ImageFeature("digit")], Digits(n=24), score_func=SOFTMAX)
    rows = list(csv.reader(io.StringIO(csv_text(vis, top_k=5)[0], newline="")))
    expected = {"'" + c if c[0] in "=+-@\t\r" else c for c in classes}
    assert len(rows) == 25
    assert {row[1] for row in rows[1:]} == expected  # the labels: every class (digits 0 to 9)
    assert {name for row in rows[1:] for name in (row[2], *row[7::2])} <= expected  # predictions, top k
    assert all(float(score) >= 0 for row in rows[1:] for score in row[8::2])  # numbers as they are


# ---------------------------------------------------------------- command-line outputs and filters, before the work


CLI = importlib.import_module("insights_app.cli.main")  # the module (the package exports its main())


def one_line_error(capsys, argv) -> str:
    assert CLI.main(argv) == 2
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if "insights-app: note:" not in line]
    assert len(lines) == 1 and lines[0].startswith("insights-app: error: "), lines
    return lines[0]


@pytest.fixture(scope="module")
def digit_source(tmp_path_factory) -> list[str]:
    from insights_app.demos.digits import write_digit_images

    root = tmp_path_factory.mktemp("digits")
    write_digit_images(root, size=16, valid_fraction=0.05, limit=90)
    return ["--model", "launch_helpers:digits_net", "--data", str(root / "valid"), "--channels", "1"]


def test_unwritable_outputs_are_refused_before_the_model_loads(capsys, monkeypatch, digit_source, tmp_path):
    def no_work(args):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(CLI, "build_visualizer", no_work)
    err = one_line_error(capsys, ["method-report", *digit_source, "--out", "/nonexistent/dir/r.md"])
    assert "--out: no such folder: /nonexistent/dir" in err
    err = one_line_error(capsys, ["export", *digit_source, "--format", "csv", "--out", str(tmp_path)])
    assert f"--out {tmp_path}: is a folder" in err
    err = one_line_error(capsys, ["method-report", *digit_source, "--out", str(tmp_path)])
    assert "--out must end in .md" in err


@pytest.mark.parametrize("model", ['"x"', "99", "-1"])
def test_a_filter_naming_no_model_is_refused_before_the_pass(capsys, monkeypatch, digit_source, tmp_path, model):
    def no_pass(*args, **kwargs):
        raise AssertionError("the export ran before its filter was checked")

    monkeypatch.setattr("insights_app.page.export.export", no_pass)
    out = tmp_path / "p.csv"
    err = one_line_error(
        capsys, ["export", *digit_source, "--format", "csv", "--out", str(out), "--filter", f'{{"model": {model}}}']
    )
    assert "model" in err and "unexpected" not in err and not out.exists()
