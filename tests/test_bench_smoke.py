"""The benchmark (``python -m bench``) runs on a tiny configuration and compares like with like.

No timing is asserted (that is the benchmark's job, not a test's): these tests keep the
benchmark code working and check that its raw captum calls compute what the server
computes, so that its ratios compare the same work.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # bench/ lives at the repository root, next to tests/
    sys.path.insert(0, str(ROOT))

from bench import dataset_pass as pass_bench  # noqa: E402
from bench import rendering  # noqa: E402
from bench.cases import DEFAULT_METHODS, build_cases  # noqa: E402
from bench.memory import child, generate_folder  # noqa: E402
from bench.models import POOL_SIZE, build_model  # noqa: E402
from bench.pages import PageBench, make_visualizer  # noqa: E402
from bench.report import pass_table  # noqa: E402
from insights_app.dataset import ExampleBatch  # noqa: E402
from insights_app.engine import seeded_rngs  # noqa: E402


@pytest.fixture(scope="module")
def cnn():
    return build_model("cnn32")


@pytest.fixture(scope="module")
def lenet():
    return build_model("lenet")


@pytest.mark.parametrize("method", DEFAULT_METHODS)
def test_raw_captum_call_computes_what_the_server_computes(cnn, method):
    check_raw_matches_server(cnn, method)


@pytest.mark.parametrize("method", ("IntegratedGradients", "Saliency", "Occlusion", "GradientShap"))
def test_lenet_raw_captum_call_computes_what_the_server_computes(lenet, method):
    check_raw_matches_server(lenet, method)


def check_raw_matches_server(cnn, method):
    vis = make_visualizer(cnn)
    engine = vis.engines[0]
    (case,) = build_cases(cnn, (method,))
    spec = vis.methods[method]
    params = spec.validate(case.arguments, (cnn.side, cnn.side))
    n = 3
    x, zeros = cnn.model_inputs(n), cnn.baseline_zeros(n)
    with torch.no_grad():
        targets = cnn.model(x).argmax(dim=1)
    raw_images = (cnn.images[:n],)
    if spec.randomized:  # the engine seeds and runs randomized methods one example per call
        for i in range(n):
            (ours,) = engine.attribute(spec, params, ExampleBatch([i], (raw_images[0][i : i + 1],)), [int(targets[i])])
            with seeded_rngs(params["seed"]):
                theirs = case.raw(x[i : i + 1], zeros[i : i + 1], targets[i : i + 1])
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    else:
        (ours,) = engine.attribute(spec, params, ExampleBatch(list(range(n)), raw_images), targets.tolist())
        torch.testing.assert_close(ours, case.raw(x, zeros, targets), rtol=1e-4, atol=1e-5)


def test_page_cell_measures_server_and_raw_on_fresh_pages(cnn):
    bench = PageBench(cnn)
    try:
        (case,) = build_cases(cnn, ("Saliency",))
        first = bench.run(case, 4, repeats=1)
        again = bench.run(case, 4, repeats=1)
        pages_used = bench._next_id
    finally:
        bench.close()
    for r in (first, again):
        assert r.page_size == 4 and r.repeats >= 1
        assert min(r.raw_batched_s, r.raw_per_example_s, r.server_page_s, r.cache_hit_s, r.raw_forward_s) > 0
        assert 0 < r.stream_first_s <= r.stream_total_s
        assert r.ratio == pytest.approx(r.server_page_s / min(r.raw_batched_s, r.raw_per_example_s))
        assert set(r.to_json()) >= {"ratio", "median_ratio", "cpu_ratio", "first_fraction", "cache_hit_s"}
        assert r.median_ratio > 0
    # Seven pages, each one new to the server (one warm-up; two pages and a streamed page per
    # round, as many timed pages as raw calls): the last one starts at the seventh pool-aligned id.
    assert pages_used == 6 * POOL_SIZE + 4


def test_fresh_pages_show_the_raw_inputs_for_any_page_size(cnn):
    bench = PageBench(cnn)
    try:
        for size in (3, 4, 10):
            page = bench.fresh_page(size)
            ids = list(range(page * size, (page + 1) * size))
            shown = torch.stack([bench.vis.store.get(i).inputs[0] for i in ids])
            assert torch.equal(shown, cnn.images[:size])
    finally:
        bench.close()


def test_rendering_section_gives_decodable_pngs_for_every_method():
    results = rendering.run(side=64, number=1, repeat=1, captum_repeat=0)
    assert {(r.method, r.sign) for r in results} == set(rendering.CASES)
    for r in results:
        assert r.total_us > 0 and r.png_kb > 0 and r.captum_matplotlib_us is None


def test_captum_reference_drawing_is_a_png_of_a_figure():
    attr, photo = rendering.sample_inputs(32)
    png = rendering.captum_matplotlib(attr, photo, "blended_heat_map", "absolute_value")
    assert Image.open(io.BytesIO(png)).format == "PNG"


def test_memory_child_pages_a_generated_folder_to_its_last_example(tmp_path):
    big = generate_folder(tmp_path / "big", 45)
    small = generate_folder(tmp_path / "small", 20, source=big)
    assert sum(1 for _ in small.rglob("*.png")) == 20
    assert np.asarray(Image.open(next(small.rglob("*.png")))).shape == (32, 32, 3)
    res = child(big, pages=2, page_size=4, method="Saliency", threads=1)
    assert res["files"] == 45 and res["side"] == 32
    assert res["peak_mb"] >= res["rss_built_mb"] > 0
    # Loaded at another size, the adapter resizes the small files (the model pools them back).
    assert child(small, pages=1, page_size=4, method="Saliency", threads=1, side=48)["side"] == 48


def test_pass_raw_loop_reads_what_the_pass_reads_and_normalizes_as_the_engine(tmp_path):
    import torchvision.transforms as T

    from bench.models import MEAN, STD
    from data_adapters import source_from_folder

    folder = generate_folder(tmp_path / "f", 40)
    model, classes = pass_bench.build_model("cnn32")
    source = source_from_folder(folder, model, classes, size=32, mean=MEAN, std=STD)
    vis = source.visualizer()
    try:
        batch = next(iter(source.dataset))
        ours = vis.engines[0].model_inputs((batch.inputs,))[0]
        torch.testing.assert_close(T.Normalize(MEAN, STD)(batch.inputs), ours, rtol=0, atol=1e-6)
        n, predicted, labels = pass_bench.raw_loop(model, source.dataset, T.Normalize(MEAN, STD))
        interp = vis.interpretation(model=0, progress=False)
    finally:
        vis.stop()
    assert n == interp.n_examples == 40
    np.testing.assert_array_equal(interp.predicted, predicted)
    np.testing.assert_array_equal(interp.labels, labels)  # the labels are the sub-folders c0..c9
    np.testing.assert_array_equal(interp.confusion_matrix(), pass_bench.confusion(labels, predicted, len(classes)))


def test_pass_section_covers_every_example_and_compares_the_same_work(tmp_path):
    folder = generate_folder(tmp_path / "f", 64)
    res = pass_bench.measure(folder, "cnn32", 32, rounds=1, threads=1, batch_size=16)
    assert res.files == res.examples == 64  # the pass's Interpretation.n_examples
    assert res.agree == 64 and res.confusion_equal
    assert len(res.raw_s) == len(res.pass_s) == 1 and min(res.raw_s + res.pass_s) > 0
    assert res.raw_rate > 0 and res.pass_rate > 0 and res.ratio == pytest.approx(res.pass_rate / res.raw_rate)
    assert res.pass_growth_mb >= 0 and 0 < res.records_mb < 1 and res.extra["loss"] == "cross-entropy"
    assert res.to_json()["case"] == "cnn32 32x32"
    table = pass_table([res])
    assert "| case | examples | raw ex/s | pass ex/s | ratio |" in table
    assert "| cnn32 32x32 | 64 |" in table and "| 64/64 |" in table


@pytest.mark.slow
def test_pass_section_from_the_command_line(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--sections",
            "pass",
            "--pass-sizes",
            "64,8",
            "--pass-rounds",
            "1",
            "--memory-dir",
            str(tmp_path),
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "### The dataset pass against a raw `model(x)` loop" in proc.stdout
    assert "| cnn32 32x32 | 64 |" in proc.stdout and "| resnet18 224x224 | 8 |" in proc.stdout
    data = json.loads(out.read_text())
    assert [(r["case"], r["files"], r["examples"], r["agree"], r["confusion_equal"]) for r in data["pass"]] == [
        ("cnn32 32x32", 64, 64, 64, True),
        ("resnet18 224x224", 8, 8, 8, True),
    ]
    targets = {t["target"]: t["met"] for t in data["targets"]}
    assert targets["the dataset pass covers every file and predicts what the raw loop does"] is True
    assert "dataset pass at least 0.9x a raw model(x) loop's throughput" in targets
    assert not list(tmp_path.glob("insights-bench-*"))  # the generated folders are removed


@pytest.mark.slow
def test_command_line_prints_the_tables_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--models",
            "cnn32",
            "--methods",
            "Saliency",
            "--sizes",
            "2",
            "--repeats",
            "1",
            "--memory-sizes",
            "20,40",
            "--memory-sides",
            "32",
            "--memory-pages",
            "1",
            "--memory-dir",
            str(tmp_path),
            "--sections",
            "pages,render,memory",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| cnn32 | Saliency" in proc.stdout
    assert "### Rendering one 224x224 image" in proc.stdout and "### Memory" in proc.stdout
    data = json.loads(out.read_text())
    assert [p["page_size"] for p in data["pages"]] == [2]
    assert [(m["files"], m["side"]) for m in data["memory"]] == [(20, 32), (40, 32)]
    assert "memory flat in the folder size (32x32 images)" in {t["target"] for t in data["targets"]}
    assert not list(tmp_path.glob("insights-bench-*"))  # the generated folders are removed


def test_command_line_rejects_unknown_names():
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--models", "vgg"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0 and "unknown model 'vgg'" in proc.stderr


def test_precompute_section_stores_every_example_and_compares_the_same_work(tmp_path):
    from bench import precompute as pre_bench
    from bench.report import machine, markdown, targets

    res = pre_bench.run(n=32, rounds=1, workers=(), threads=1, workdir=tmp_path)
    assert res.examples == res.stored == res.agree == 32  # the plain loop's argmax is every stored top-1
    assert len(res.plain_s) == len(res.local_s) == 1 and min(res.plain_s + res.local_s) > 0
    assert res.ratio == pytest.approx(min(res.plain_s) / min(res.local_s)) and res.cpu_ratio > 0
    assert res.ray == [] and set(res.to_json()) >= {"ratio", "cpu_ratio", "plain_rate", "local_rate"}
    verdicts = {t["target"]: t["met"] for t in targets(None, None, None, None, res)}
    assert verdicts["precompute stores every example, its top-1 the plain loop's argmax"] is True
    text = markdown(machine(), None, None, None, [], 1.0, None, res)
    assert "| plain captum loop | 32 |" in text and "| precompute, local | 32 |" in text
    # A restarted visualizer's pages come from the store: timed, and without one forward pass.
    assert len(res.stored_page_ms) == 4 and res.stored_page_forwards == 0 and "A stored page of 8" in text
    assert "a page of stored examples under 50 ms of server time, with no forward pass" in verdicts
    assert not list(tmp_path.glob("insights-bench-*"))  # the stores are removed


def test_every_model_key_builds_with_its_four_methods():
    from bench.cases import methods_of
    from bench.models import MODELS

    for key, (_label, side) in MODELS.items():
        bm = build_model(key)
        assert bm.key == key and bm.side == side and bm.images.shape == (POOL_SIZE, 3, side, side)
        assert len(bm.classes) == (10 if side == 32 else 1000)
        assert {"IntegratedGradients", "Saliency", "Occlusion", "GradientShap"} <= set(methods_of(key))
        assert [c.method for c in build_cases(bm, methods_of(key))][:1] == ["IntegratedGradients"]
        with torch.no_grad():
            assert bm.model(bm.model_inputs(1)).shape == (1, len(bm.classes))
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg")


def test_lenet_is_the_captum_tutorial_net():
    net = build_model("lenet").model
    convs = [(m.in_channels, m.out_channels, m.kernel_size) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    fcs = [(m.in_features, m.out_features) for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert convs == [(3, 6, (5, 5)), (6, 16, (5, 5))] and fcs == [(400, 120), (120, 84), (84, 10)]


def test_lenet_runs_one_tiny_cell_with_its_estimate(lenet):
    from bench.pages import Calibration, estimate

    cal = Calibration.measure(lenet)
    assert cal.forward_backward_s > 0 and cal.forward_s > 0
    bench = PageBench(lenet)
    try:
        (case,) = build_cases(lenet, ("Occlusion",))
        est = estimate(case, lenet, 2, cal, 1, 2, 0.0, warm=True)
        assert (est.passes, est.backward) == (2 * (8 * 8 + 1), False)  # 4x4 windows, stride 4, on 32x32
        r = bench.run(case, 2, est.rounds, estimate=est)
    finally:
        bench.close()
    assert r.model == "lenet" and r.page_size == 2 and r.repeats == 1 and r.passes == 130
    assert min(r.raw_best_s, r.server_page_s) > 0


def test_plans_cover_what_was_asked_and_leave_out_what_a_model_lacks():
    from bench.__main__ import parse_args, plan_cells

    four = ["IntegratedGradients", "Saliency", "Occlusion", "GradientShap"]
    assert plan_cells(parse_args([]), "vit_b_16") == [("Saliency", 4), ("Saliency", 16)]
    full = plan_cells(parse_args(["--plan", "full"]), "vit_b_16")
    assert sorted(full) == sorted((m, n) for m in four for n in (4, 16))
    assert plan_cells(parse_args(["--quick"]), "lenet") == [(m, 4) for m in four]
    asked = parse_args(["--models", "lenet", "--methods", "Saliency,NoiseTunnel(Saliency)", "--sizes", "4,16"])
    assert plan_cells(asked, "lenet") == [("Saliency", 4), ("Saliency", 16)]
    assert parse_args(["--models", "all"]).models[-1] == "vit_b_16"


def test_cells_over_the_time_budget_are_skipped_and_reported():
    from bench.__main__ import parse_args, run_pages
    from bench.report import pages_table, targets

    a = parse_args(
        ["--models", "lenet", "--methods", "IntegratedGradients", "--sizes", "2", "--max-cell-seconds", "0.001"]
    )
    (skipped,) = run_pages(a)
    assert skipped.skipped == "skipped: over the time budget" and skipped.passes == 100
    assert "| lenet | IntegratedGradients (steps=50) | 2 | 100 f+b | skipped: over the time budget" in pages_table(
        [skipped]
    )
    assert targets([skipped], None, None) == [] and skipped.to_json()["budget_s"] == 0.001


def test_page_target_is_a_ratio_for_slow_calls_and_an_allowance_for_fast_ones():
    from bench.pages import PageResult
    from bench.report import targets

    def cell(method, n, raw_ms, page_ms):
        s = 1e-3
        return PageResult(
            "m",
            method,
            "",
            n,
            1,
            raw_ms * s,
            raw_ms * 2 * s,
            s,
            page_ms * s,
            s,
            page_ms * s,
            s,
            raw_ms * s,
            page_ms * s,
        )

    ok = [cell("slow", 4, 100.0, 109.0), cell("fast", 4, 10.0, 14.1), cell("fast", 16, 40.0, 47.7)]
    (verdict, *_) = targets(ok, None, None)
    assert verdict["met"] and verdict["target"].startswith("page within 1.10x of raw captum's best where")
    (verdict, *_) = targets(ok + [cell("slow", 4, 50.0, 56.0), cell("fast", 4, 49.0, 53.3)], None, None)
    assert not verdict["met"]
    assert verdict["detail"] == (
        "missed in: m slow n=4 (1.12x of 50 ms); m fast n=4 (+4.3 ms over 49.0 ms, allowed 4.2 ms)"
    )


def test_split_breaks_a_page_into_parts_that_nest_and_leaves_the_engine_as_it_was(cnn):
    from bench.split import COLUMNS, format_row, main, split_cell

    bench = PageBench(cnn)
    try:
        (case,) = build_cases(cnn, ("Saliency",))
        engine = bench.vis.engines[0]
        cell = split_cell(bench, case, 2, 2)
        assert "run" not in engine.__dict__ and "attribute" not in engine.__dict__
    finally:
        bench.close()
    assert set(cell) == set(COLUMNS) and all(0 < v["min"] <= v["median"] for v in cell.values())
    # the page holds the engine's run, which holds its captum call
    assert cell["page"]["min"] >= cell["engine_run"]["min"] >= cell["attribute"]["min"]
    assert "server" in format_row("Saliency", cell)
    assert main(["--model", "cnn32", "--steps", "NoSuchMethod"]) == 2


@pytest.mark.slow
def test_stored_section_times_a_fresh_process_and_reads_only_the_store(tmp_path):
    from bench import stored
    from bench.report import machine, markdown, targets

    res = stored.run(rounds=1, n=16, page_size=8, modes=("page",), settle_s=0.1, workdir=tmp_path)
    (visit,) = res.visits  # one fresh process
    assert visit.mode == "page" and visit.examples == 8 and visit.forwards == 0  # every map from the store
    assert min(visit.first_ms, visit.second_ms, visit.other_ms, visit.first_cpu_ms, visit.import_ms) > 0
    assert res.to_json()["medians"]["page"]["first_ms"] == visit.first_ms
    (verdict,) = targets(None, None, None, None, None, res)
    assert verdict["target"].startswith("first visit of a stored page of 8 in a fresh process under 25 ms")
    assert verdict["detail"].endswith("0 forward passes")
    text = markdown(machine(), None, None, None, [verdict], 1.0, None, None, res)
    assert "### The first visit of a stored page in a fresh process (8 examples, 16x16)" in text
    assert "| vis.page | 1 |" in text
    assert not list(tmp_path.glob("insights-bench-*"))  # the store is removed


def test_stored_section_child_over_http(tmp_path):
    from bench import stored
    from insights_app.precompute import precompute

    vis = stored.build_visualizer(tmp_path, 8)
    precompute(vis, [stored.METHOD], {stored.METHOD: stored.ARGUMENTS}, progress=False)
    vis.stop()
    visit = stored.child(tmp_path, 8, stored.SIDE, 4, "http", 0.0)
    assert visit.mode == "http" and visit.examples == 4 and visit.forwards == 0
    assert min(visit.first_ms, visit.second_ms, visit.other_ms) > 0
