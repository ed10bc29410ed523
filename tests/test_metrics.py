"""Quality metrics next to every map: deletion / insertion, infidelity, max-sensitivity, and the
model-randomization sanity check, checked against direct and independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import Saliency
from captum.metrics import infidelity, sensitivity_max
from engine_helpers import register_edge_map
from reliability_helpers import TinyCNN, make_visualizer
from ui_helpers import digits_batches, train_digits_cnn

from insights_app import AttributionVisualizer
from insights_app.dataset import ExampleBatch
from insights_app.features import ImageFeature
from insights_app.metrics import MetricOptions
from insights_app.metrics.sanity import sanity_check
from insights_app.testing import seeded
from insights_app.transport.server import create_app

ALL = ("deletion", "insertion", "infidelity", "sensitivity")


@pytest.fixture(scope="module")
def trained():
    return train_digits_cnn()


def visualizer(model, **kwargs):
    return AttributionVisualizer(
        model,
        [str(i) for i in range(10)],
        [ImageFeature("digit")],
        digits_batches(limit=24),
        score_func=lambda o: torch.softmax(o, dim=1),
        **kwargs,
    )


def first(vis, n, method="Saliency", arguments=None, names=ALL, **options):
    """The first ``n`` examples' results and metrics under model 0."""
    engine = vis.engines[0]
    spec = vis.methods[method]
    params = spec.validate(arguments or {})
    examples = [vis.store.get(i) for i in range(n)]
    results = engine.run(examples, spec, params)
    values = engine.metrics(examples, results, spec, params, MetricOptions(tuple(names), **options))
    return examples, results, values


def test_infidelity_and_sensitivity_equal_direct_captum_calls(trained):
    vis = visualizer(trained)
    examples, results, values = first(
        vis, 4, names=("infidelity", "sensitivity"), samples=5, noise=0.2, radius=0.05, seed=7
    )
    x = torch.stack([ex.inputs[0] for ex in examples])
    targets = torch.tensor([r.explanation.target for r in results])
    saliency = Saliency(trained)
    attributions = saliency.attribute(x, target=targets, abs=True)

    def perturb(inputs):
        noise = torch.randn_like(inputs) * 0.2
        return noise, inputs - noise

    torch.manual_seed(7)
    want_inf = infidelity(
        trained,
        perturb,
        x,
        attributions,
        target=targets,
        n_perturb_samples=5,
        normalize=True,
        max_examples_per_batch=20,
    )
    torch.manual_seed(7)
    want_sens = sensitivity_max(
        lambda inp, target: saliency.attribute(inp, target=target, abs=True),
        x,
        perturb_radius=0.05,
        n_perturb_samples=5,
        target=targets,
    )
    got_inf = [v["infidelity"] for v in values]
    got_sens = [v["sensitivity"] for v in values]
    np.testing.assert_allclose(got_inf, want_inf.numpy(), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(got_sens, want_sens.numpy(), rtol=1e-5)
    # Another seed draws other perturbations: other values (the seed is part of the result's key).
    _, _, other = first(vis, 4, names=("infidelity",), samples=5, noise=0.2, seed=8)
    assert [v["infidelity"] for v in other] != got_inf


def plain_curves(model, x, saliency_map, target, steps):
    """Deletion and insertion written out plainly: one image, one step at a time, zeros baseline."""
    flat = saliency_map.reshape(-1)
    order = sorted(range(flat.numel()), key=lambda i: (-float(flat[i]), i))
    deletion, insertion = [], []
    for s in range(steps + 1):
        k = round(s * len(order) / steps)
        mask = torch.zeros(flat.numel(), dtype=torch.bool)
        mask[order[:k]] = True
        mask = mask.reshape(saliency_map.shape)
        removed = x.clone()
        removed[:, mask] = 0.0
        revealed = torch.zeros_like(x)
        revealed[:, mask] = x[:, mask]
        with torch.no_grad():
            deletion.append(float(torch.softmax(model(removed[None]), 1)[0, target]))
            insertion.append(float(torch.softmax(model(revealed[None]), 1)[0, target]))
    area = lambda c: sum((a + b) / 2 for a, b in zip(c[:-1], c[1:])) / steps  # noqa: E731
    return deletion, insertion, area(deletion), area(insertion)


@pytest.mark.parametrize("method,arguments", [("IntegratedGradients", {"n_steps": 8}), ("Saliency", {})])
def test_deletion_and_insertion_equal_a_plain_implementation(trained, method, arguments):
    vis = visualizer(trained)
    examples, results, values = first(vis, 5, method, arguments, names=("deletion", "insertion"), steps=10)
    for ex, r, v in zip(examples, results, values):
        want = plain_curves(trained, ex.inputs[0], torch.from_numpy(r.explanation.maps[0]), r.explanation.target, 10)
        np.testing.assert_allclose(v["deletion"]["curve"], want[0], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(v["insertion"]["curve"], want[1], rtol=1e-4, atol=1e-6)
        assert v["deletion"]["area"] == pytest.approx(want[2], rel=1e-4, abs=1e-6)
        assert v["insertion"]["area"] == pytest.approx(want[3], rel=1e-4, abs=1e-6)
        assert len(v["deletion"]["curve"]) == 11
    # On a trained model, removing what the map ranks first lowers the score faster than revealing it raises it
    # from nothing: the mean deletion area is below the mean insertion area.
    assert np.mean([v["deletion"]["area"] for v in values]) < np.mean([v["insertion"]["area"] for v in values])


class IgnoresInput(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.linspace(-1, 1, 10))

    def forward(self, x):
        return self.bias.expand(x.shape[0], -1) + 0 * x.reshape(x.shape[0], -1).sum(1, keepdim=True)


def test_a_model_that_ignores_its_input_gives_flat_curves():
    vis = visualizer(IgnoresInput())
    _, _, values = first(vis, 3, "Occlusion", {"window": [3, 3], "stride": [2, 2]}, names=("deletion", "insertion"))
    for v in values:
        for kind in ("deletion", "insertion"):
            curve = v[kind]["curve"]
            assert max(curve) - min(curve) < 1e-6 and v[kind]["area"] == pytest.approx(curve[0], abs=1e-6)


def test_large_images_are_judged_by_patches():
    options = MetricOptions(("deletion",))
    assert options.patch_for((32, 32)) == 1 and options.patch_for((224, 224)) == 4
    assert MetricOptions(("deletion",), patch=8).patch_for((224, 224)) == 8


@pytest.mark.slow
def test_the_sanity_check_flags_a_method_that_ignores_the_model(trained):
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    vis = visualizer(trained)
    register_edge_map(vis)
    engine = vis.engines[0]
    examples = [vis.store.get(i) for i in range(8)]
    verdicts = {}
    for method, arguments in (("EdgeMap", {}), ("IntegratedGradients", {"n_steps": 16}), ("Saliency", {})):
        spec = vis.methods[method]
        params = spec.validate(arguments)
        results = engine.run(examples, spec, params)
        checked = sanity_check(
            engine,
            spec,
            params,
            ExampleBatch.stack(examples),
            [r.explanation.target for r in results],
            [r.explanation.maps for r in results],
        )
        assert all(len(c.steps) == 3 and c.steps[0] == "fc (Linear)" for c in checked)  # last layer first, then down
        verdicts[method] = sum(c.insensitive for c in checked)
    assert verdicts == {"EdgeMap": 8, "IntegratedGradients": 0, "Saliency": 0}
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())  # the user's model is untouched


def test_metrics_over_the_api_and_their_refusals(trained):
    vis = visualizer(trained)
    client = create_app(vis, token="").test_client()
    body = {
        "method": "Saliency",
        "page_size": 2,
        "metrics": ["deletion", "insertion"],
        "metric_arguments": {"steps": 5},
    }
    page = client.post("/api/v1/examples", json=body).get_json()
    m = page["examples"][0]["models"][0]["metrics"]
    assert set(m) == {"deletion", "insertion"} and len(m["deletion"]["curve"]) == 6
    assert (
        "metrics" not in client.post("/api/v1/examples", json={"page_size": 1}).get_json()["examples"][0]["models"][0]
    )
    one = client.post("/api/v1/attribute", json={"example_id": 0, "method": "Saliency", "metrics": ["infidelity"]})
    assert isinstance(one.get_json()["example"]["models"][0]["metrics"]["infidelity"], float)
    for bad, field in (
        ({"metrics": ["nope"]}, "metrics"),
        ({"metrics": "deletion"}, "metrics"),
        ({"metrics": ["deletion", "deletion"]}, "metrics"),
        ({"metrics": ["deletion"], "metric_arguments": {"steps": 1}}, "metric_arguments.steps"),
        ({"metric_arguments": {"steps": 5}}, "metric_arguments"),
        (
            {
                "method": "IntegratedGradients",
                "arguments": {"n_steps": 1000},
                "metrics": ["sensitivity"],
                "metric_arguments": {"samples": 64},
            },
            "metrics",
        ),
    ):
        answer = client.post("/api/v1/examples", json=bad)
        assert answer.status_code == 400 and answer.get_json()["error"].startswith(field), (bad, answer.get_json())
    # Each key has one type: an explicit null is refused (the fuzzer sent these to the report)
    report = {"methods": ["Saliency"], "sample": 1, "sanity": 0}
    for route, bad, field in (
        ("/api/v1/examples", {"metrics": ["deletion"], "metric_arguments": None}, "metric_arguments"),
        ("/api/v1/examples", {"metrics": None}, "metrics"),
        ("/api/v1/method_report", {**report, "metric_arguments": None}, "metric_arguments"),
        ("/api/v1/method_report", {**report, "metrics": None}, "metrics"),
        ("/api/v1/method_report", {**report, "methods": None}, "methods"),
        ("/api/v1/method_report", {**report, "arguments": None}, "arguments"),
    ):
        answer = client.post(route, json=bad)
        assert answer.status_code == 400 and answer.get_json()["error"].startswith(field), (bad, answer.get_json())


def test_a_metric_is_computed_once_and_read_from_the_store(tmp_path):
    body = {"method": "Saliency", "page_size": 3, "metrics": list(ALL), "metric_arguments": {"samples": 3}}
    vis = make_visualizer(models=seeded(TinyCNN, seed=0), store=tmp_path)
    want = vis.page(body)
    assert vis.results_store.counts()["metrics"] == 3 * 4
    again = make_visualizer(models=seeded(TinyCNN, seed=0), store=tmp_path)
    calls = []
    forward = again.engines[0].forward
    again.engines[0].forward = lambda *a: calls.append(1) or forward(*a)
    got = again.page(body)
    assert not calls
    assert [ex["models"][0]["metrics"] for ex in got["examples"]] == [
        ex["models"][0]["metrics"] for ex in want["examples"]
    ]


def test_with_a_store_each_example_is_hashed_once(tmp_path, monkeypatch):
    """The store's keys hash every input's bytes (224x224 images: ~0.2 ms each): a page that
    predicts, explains and scores its examples hashes each once, and a later page of them none."""
    import insights_app.engine.keys as engine_module

    hashed = []
    real = engine_module.example_fingerprints
    monkeypatch.setattr(
        engine_module,
        "example_fingerprints",
        lambda inputs, extra=None: hashed.extend(real(inputs, extra)) or real(inputs, extra),
    )
    vis = make_visualizer(models=seeded(TinyCNN, seed=0), store=tmp_path)
    body = {"method": "Saliency", "page_size": 3, "metrics": ["deletion"]}
    first = vis.page(body)
    assert len(hashed) == 3 and len(set(hashed)) == 3
    assert all("deletion" in ex["models"][0]["metrics"] for ex in first["examples"])
    vis.page({**body, "method": "IntegratedGradients"})
    assert len(hashed) == 3


def test_infidelity_reuses_the_attributions_its_page_computed(trained):
    """Infidelity needs the full-resolution attribution, which the page's own run keeps: asking
    for it costs no second captum call, and gives what attributing again gives."""
    body = {
        "method": "IntegratedGradients",
        "arguments": {"n_steps": 8},
        "page_size": 4,
        "metrics": ["infidelity"],
        "metric_arguments": {"samples": 4},
    }
    vis = visualizer(trained)
    engine = vis.engines[0]
    calls = []
    attribute = engine.attribute
    engine.attribute = lambda *a, **k: calls.append(len(a[2])) or attribute(*a, **k)
    page = vis.page(body)
    assert sum(calls) == 4  # the page's attributions, and nothing more
    kept = [ex["models"][0]["metrics"]["infidelity"] for ex in page["examples"]]
    again = visualizer(trained)
    examples = [again.store.get(i) for i in range(4)]
    spec = again.methods["IntegratedGradients"]
    params = spec.validate({"n_steps": 8})
    results = again.engines[0].run(examples, spec, params)
    fresh = again.engines[0].metrics(examples, results, spec, params, MetricOptions(("infidelity",), samples=4))
    assert np.allclose(kept, [v["infidelity"] for v in fresh], rtol=1e-4)


def test_the_sanity_and_method_report_views(trained):
    vis = visualizer(trained)
    register_edge_map(vis)
    client = create_app(vis, token="").test_client()
    answer = client.post("/api/v1/sanity", json={"example_id": 2, "method": "EdgeMap"}).get_json()
    s = answer["sanity"]
    assert s["insensitive"] is True and len(s["steps"]) == 3 and s["steps"][-1]["spearman"] == 1.0
    assert s["steps"][0]["attributions"][0]["image"].startswith("data:image/png;base64,")
    report = client.post(
        "/api/v1/method_report",
        json={"methods": ["Saliency", "EdgeMap"], "sample": 8, "sanity": 4, "metrics": ["deletion", "insertion"]},
    ).get_json()
    rows = {r["method"]: r for r in report["models"][0]["methods"]}
    assert report["examples"] == 8 and rows["EdgeMap"]["sanity"]["flag"] and not rows["Saliency"]["sanity"]["flag"]
    assert rows["Saliency"]["metrics"]["deletion"]["n"] == 8
    assert client.post("/api/v1/method_report", json={"sample": 2, "sanity": 3}).status_code == 400


@pytest.mark.slow
def test_the_method_report_command(tmp_path):
    from launch_helpers import TESTS, launch_env, run

    from insights_app.demos.digits import write_digit_images

    write_digit_images(tmp_path / "digits", size=16, valid_fraction=0.05, limit=90)
    source = ["--model", "launch_helpers:digits_net", "--data", str(tmp_path / "digits" / "valid"), "--channels", "1"]
    env = launch_env(tmp_path / "cache")
    args = [
        "method-report",
        *source,
        "--methods",
        "Saliency,Occlusion",
        "--sample",
        "6",
        "--sanity",
        "2",
        "--metric",
        "deletion,insertion",
        "--store",
        str(tmp_path / "store"),
        "--out",
        str(tmp_path / "r.md"),
    ]
    done = run(args, env, cwd=TESTS)
    assert done.returncode == 0, done.stderr
    assert "| Saliency |" in done.stdout and "| Occlusion |" in done.stdout and "deletion ↓" in done.stdout
    assert (tmp_path / "r.md").read_text(encoding="utf-8").strip() in done.stdout
    bad = run(["method-report", *source, "--methods", "Nope"], env, cwd=TESTS)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("insights-app: error: methods:")
    bad = run(["method-report", *source, "--metrics", "speed"], env, cwd=TESTS)
    assert bad.returncode == 2 and "unknown metric 'speed'" in bad.stderr


def test_a_second_method_report_is_read_from_the_store(tmp_path, trained, monkeypatch):
    from insights_app.metrics import report
    from insights_app.metrics.report import method_report

    options = MetricOptions(("deletion", "insertion", "infidelity"), samples=2)
    first_vis = visualizer(trained, store=tmp_path)
    want = method_report(first_vis, ["Saliency", "IntegratedGradients"], sample=6, options=options, sanity=2)
    again = visualizer(trained, store=tmp_path)
    calls = []
    forward = again.engines[0].forward
    again.engines[0].forward = lambda *a: calls.append(1) or forward(*a)
    monkeypatch.setattr(report, "sanity_check", lambda *a, **k: pytest.fail("the sanity check ran again"))
    got = method_report(again, ["Saliency", "IntegratedGradients"], sample=6, options=options, sanity=2)
    assert calls == []  # predictions, maps, metrics and the sanity checks all come from the store
    assert got["models"] == want["models"]
