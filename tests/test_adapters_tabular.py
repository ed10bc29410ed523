"""fastai tabular learners: a real ``tabular_learner`` on a slice of scikit-learn's breast cancer data.

The learner is trained once per module (a few hundred rows, three epochs: about a second), with
missing values in one continuous column of the training rows so that fastai's FillMissing adds
a ``*_na`` categorical column. The page is read through Flask's test client and compared with
the DataFrame (decoded values), with ``learn.get_preds`` (scores) and with fastai's
``ClassificationInterpretation`` (the confusion matrix). The demo trains into a temporary cache.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from launch_helpers import get_config, launch_env, post_examples, start

import launch

fastai_tabular = pytest.importorskip("fastai.tabular.all")

from data_adapters import AdapterError, from_learner, source_from_export, source_from_learner  # noqa: E402
from data_adapters.fastai_tabular import EmbeddedTabularModel  # noqa: E402
from insights_app.demos import tabular as demo_tabular  # noqa: E402
from insights_app.transport.server import create_app  # noqa: E402

API = "/api/v1"
N_ROWS, N_VALID = 260, 40
CATS = ["size", "texture", "worst area_na"]  # FillMissing's column comes after the given ones
CONTS = demo_tabular.CONTINUOUS


@pytest.fixture(scope="module")
def frame():
    df = demo_tabular.breast_cancer_frame().iloc[:N_ROWS].reset_index(drop=True)
    train, valid = demo_tabular.split(len(df), valid_fraction=N_VALID / N_ROWS)
    df.loc[train[:12], "worst area"] = np.nan  # FillMissing: 'worst area_na' (all False in the valid rows)
    return df, valid


@pytest.fixture(scope="module")
def learner(frame):
    df, valid = frame
    dls = demo_tabular.tabular_dls(df, valid, bs=16)  # several batches per page
    torch.manual_seed(0)
    learn = fastai_tabular.tabular_learner(dls, layers=[16, 8], metrics=fastai_tabular.accuracy)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with learn.no_bar(), learn.no_logging():
            learn.fit_one_cycle(3, 1e-2)
    finally:
        torch.set_num_threads(threads)
    return learn


@pytest.fixture(scope="module")
def vis(learner):
    return from_learner(learner, name="tabular")


@pytest.fixture(scope="module")
def client(vis):
    return create_app(vis).test_client()


def page(client, method: str, page_size: int = N_VALID, top_k: int = 2) -> list:
    resp = client.post(
        API + "/examples",
        data=json.dumps({"method": method, "page_size": page_size, "top_k": top_k}),
        content_type="application/json",
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["examples"]


def test_config_describes_the_categorical_and_continuous_columns(client, learner):
    cfg = client.get(API + "/config").get_json()
    assert cfg["classes"] == list(learner.dls.vocab) == ["benign", "malignant"]
    cat, cont = cfg["features"]
    assert (cat["name"], cat["type"], cat["categories"]) == ("categorical", "general", CATS)
    assert cat["vocabs"]["size"] == ["#na#", "large", "medium", "small"]
    assert (cont["name"], cont["type"], cont["categories"]) == ("continuous", "general", CONTS)


def test_the_learner_is_dispatched_to_the_tabular_adapter(learner):
    source = source_from_learner(learner)
    assert isinstance(source.model, EmbeddedTabularModel) and source.model.tabular is learner.model
    assert source.info["tabular"] and source.info["length"] == N_VALID
    assert source.loss_func is not None and source.loss_func.insights_name == type(learner.loss_func).__name__


def test_values_are_shown_decoded_as_the_dataframe_has_them(client, frame):
    df, valid = frame
    rows = df.iloc[valid].reset_index(drop=True)
    examples = page(client, "Saliency")
    assert [e["id"] for e in examples] == list(range(N_VALID))
    for ex in examples:
        row = rows.iloc[ex["id"]]
        cat, cont = ex["features"]
        assert cat["original"] == [row["size"], row["texture"], "False"]
        np.testing.assert_allclose(cont["original"], row[CONTS].to_numpy(dtype=float), rtol=1e-5, atol=1e-6)
        assert ex["label"]["name"] == row[demo_tabular.TARGET]


@pytest.mark.parametrize("method", ["IntegratedGradients", "Saliency", "FeatureAblation", "DeepLift"])
def test_every_column_gets_one_finite_attribution(client, method):
    examples = page(client, method, page_size=6)
    for ex in examples:
        (model,) = ex["models"]
        assert model["error"] is None, model["error"]
        cat, cont = model["attributions"]
        assert cat["categories"] == CATS and len(cat["scores"]) == len(CATS)
        assert cont["categories"] == CONTS and len(cont["scores"]) == len(CONTS)
        scores = cat["scores"] + cont["scores"]
        assert all(math.isfinite(s) for s in scores) and any(s != 0 for s in scores)
        assert abs(cat["contribution"] + cont["contribution"] - 1) < 1e-6


def test_integrated_gradients_completeness_holds_on_the_embeddings(vis):
    """IG's per-column values sum to f(row) - f(baseline): the embedded codes are what it differentiates,
    and the baseline is the #na# category's embedding and the raw value 0."""
    from insights_app.dataset import Example

    engine = vis.engines[0]
    batch = next(iter(vis.store.dataset))
    examples = [Example(i, tuple(x[i] for x in batch.inputs), None, None) for i in range(4)]
    spec = vis.methods["IntegratedGradients"]
    results = engine.run(examples, spec, spec.validate({"n_steps": 200}))
    rows = engine.model_inputs([x[:4] for x in batch.inputs])
    zeros = engine.model_inputs([torch.zeros_like(x[:4]) for x in batch.inputs])
    with torch.no_grad():
        out, out0 = engine.forward(*rows), engine.forward(*zeros)
    for i, r in enumerate(results):
        t = r.explanation.target
        total = sum(float(m.sum()) for m in r.explanation.maps)
        assert total == pytest.approx(float(out[i, t] - out0[i, t]), rel=0.03, abs=5e-3)  # ReLU kinks


def test_predictions_equal_the_learners_get_preds(client, learner):
    with learner.no_bar():
        preds, _ = learner.get_preds(dl=learner.dls.valid)
    examples = page(client, "Saliency")
    for ex in examples:
        (model,) = ex["models"]
        shown = {p["index"]: p["score"] for p in model["predictions"]}
        np.testing.assert_allclose([shown[0], shown[1]], preds[ex["id"]].numpy(), atol=1e-5)


def test_interpretation_equals_fastais(vis, learner):
    interp = vis.interpretation(progress=False)
    with learner.no_bar():
        theirs = fastai_tabular.ClassificationInterpretation.from_learner(learner)
        _, _, losses = learner.get_preds(dl=learner.dls.valid, with_loss=True)
    np.testing.assert_array_equal(interp.confusion_matrix(), theirs.confusion_matrix())
    values, ids = interp.top_losses(5)
    np.testing.assert_allclose(values.numpy(), losses[ids].numpy(), rtol=1e-4, atol=1e-6)


def test_new_rows_go_through_test_dl_with_or_without_labels(learner, frame):
    df, valid = frame
    rows = df.iloc[valid[:5]]
    labelled = source_from_learner(learner, items=rows)
    unlabelled = source_from_learner(learner, items=rows.drop(columns=[demo_tabular.TARGET]))
    (b1,), (b2,) = list(labelled.batches()), list(unlabelled.batches())
    assert b1.labels == [learner.dls.vocab.o2i[v] for v in rows[demo_tabular.TARGET]]
    assert b2.labels == [None] * 5
    for x, y in zip(b1.inputs, b2.inputs):
        torch.testing.assert_close(x, y)
    with pytest.raises(AdapterError, match="lacks the learner's column 'size'"):
        source_from_learner(learner, items=rows.drop(columns=["size"]))
    with pytest.raises(AdapterError, match="with_labels=True"):
        source_from_learner(learner, items=rows.drop(columns=[demo_tabular.TARGET]), with_labels=True)


def test_an_exported_learner_shows_new_rows(learner, frame, tmp_path):
    df, valid = frame
    path = tmp_path / "export.pkl"
    learner.export(path)
    with pytest.raises(AdapterError, match="keeps no data"):
        source_from_export(path)
    source = source_from_export(path, df.iloc[valid])
    examples = page(create_app(source.visualizer()).test_client(), "Saliency", page_size=3)
    assert examples[0]["features"][0]["original"][:2] == df.iloc[valid[0]][["size", "texture"]].tolist()


# ---------------------------------------------------------------------- the demo


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("tabular-demo-cache")
    said: list = []
    source = demo_tabular.demo_source(cache, progress=said.append)
    assert any("first start: training" in s for s in said), said
    assert source.info["length"] == len(demo_tabular.split(569)[1])
    return cache


def test_the_demo_is_loaded_from_its_cache_without_training(demo_cache, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("the cached demo was trained again")

    monkeypatch.setattr(demo_tabular, "train_tabular_demo", no_training)
    monkeypatch.setenv("INSIGHTS_APP_CACHE", str(demo_cache))
    said: list = []
    vis = demo_tabular.demo_visualizer(progress=said.append)
    assert not any("training" in s for s in said), said
    assert vis.title == demo_tabular.DEMO_TITLE
    cm = vis.interpretation(progress=False).confusion_matrix()
    assert cm.sum() == 114 and np.trace(cm) / cm.sum() > 0.85


def test_the_command_line_serves_the_tabular_demo(demo_cache):
    launched = start(["--demo", "tabular", "--port", "0"], launch_env(demo_cache))
    try:
        assert "training" not in launched.output and "Warning" not in launched.output, launched.output
        cfg = get_config(launched)
        assert [f["name"] for f in cfg["features"]] == ["categorical", "continuous"]
        assert cfg["features"][0]["categories"] == demo_tabular.CATEGORICAL
        assert cfg["features"][1]["categories"] == demo_tabular.CONTINUOUS
        ex = post_examples(launched, {"method": "Saliency", "page_size": 2})["examples"][0]
        assert ex["features"][0]["original"][0] in ("small", "medium", "large")
    finally:
        launched.stop()


def one_line_error(capsys, argv) -> str:
    assert launch.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("insights-app: error: "), err
    return err


def test_an_unknown_demo_is_one_line_and_exit_2(capsys):
    assert "invalid choice: 'nosuch'" in one_line_error(capsys, ["--demo", "nosuch"])
    assert "--demo goes without" in one_line_error(capsys, ["--demo", "tabular", "--learner", "launch.py"])


def test_the_text_demo_is_one_line_while_it_is_not_installed(capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "insights_app.demos.text", None)  # importing it raises ModuleNotFoundError
    assert one_line_error(capsys, ["--demo", "text"]).endswith("the text demo is not available")
