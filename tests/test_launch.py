"""The launcher end to end: each way of starting it, as a subprocess serving on 127.0.0.1.

The demo is trained once per test session into a temporary cache (``INSIGHTS_APP_CACHE``);
the other modes reuse its exported learner and digit images as "the user's files".
Argument errors are checked in-process through ``launch.main`` (no server starts).
"""

from __future__ import annotations

import csv
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import torch
from launch_helpers import (
    ROOT,
    TESTS,
    Launched,
    get_config,
    launch_env,
    post_examples,
    run,
    start,
)

import launch
from insights_app.cli.arguments import parse_args
from insights_app.cli.build import build_visualizer, names_preview

DIGITS = [str(d) for d in range(10)]


def demo_dir(tmp_path_factory) -> Path:
    """One demo cache per test session (every module that needs it finds the same folder)."""
    return tmp_path_factory.getbasetemp() / "insights-cache"


@pytest.fixture(scope="module")
def fresh_demo(tmp_path_factory):
    """The demo started on an empty cache: it trains, exports, serves."""
    cache = demo_dir(tmp_path_factory)
    if cache.exists():
        shutil.rmtree(cache)
    launched = start(["--port", "0"], launch_env(cache), timeout=240)
    yield cache, launched
    launched.stop()


def valid_folder(cache: Path) -> Path:
    return cache / "digits-v1" / "images" / "valid"


def assert_serves_digits(launched: Launched, token=None, page_size: int = 8) -> dict:
    """The page's two calls: config, then a page of examples with predictions and heat maps."""
    config = get_config(launched, token)
    assert config["classes"] == DIGITS
    page = post_examples(launched, {"page_size": page_size, "method": "Saliency"}, token)
    assert len(page["examples"]) == page_size
    for ex in page["examples"]:
        model = ex["models"][0]
        assert model["error"] is None
        assert len(model["predictions"]) >= 1 and model["predictions"][0]["label"] in DIGITS
        assert model["attributions"][0]["image"]  # a PNG heat map
    return page


@pytest.mark.slow
def test_demo_first_start_trains_caches_and_serves(fresh_demo):
    cache, launched = fresh_demo
    out = launched.output
    print(f"\ndemo, fresh cache: URL after {launched.seconds_to_url:.1f}s")
    assert "training the demo model: epoch 1/" in out and "accuracy" in out
    assert (cache / "digits-v1" / "export.pkl").is_file()
    page = assert_serves_digits(launched, page_size=16)
    labels = [ex["label"]["name"] for ex in page["examples"]]
    assert len(set(labels)) >= 5, labels  # a page mixes the digits
    correct = sum(ex["models"][0]["predictions"][0]["label"] == ex["label"]["name"] for ex in page["examples"])
    assert correct >= 13, f"the demo model gets only {correct}/16 right"


@pytest.mark.slow
def test_demo_cached_start_loads_without_training_and_opens_the_browser(fresh_demo, tmp_path):
    cache, _ = fresh_demo
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.py"
    browser.write_text(f"import sys\nopen({str(opened)!r}, 'w').write(sys.argv[1])\n")
    env = launch_env(cache, BROWSER=f"{sys.executable} {browser} %s")
    launched = start(["--port", "0", "--open"], env, timeout=180)
    try:
        print(f"\ndemo, cached: URL after {launched.seconds_to_url:.1f}s")
        assert "training" not in launched.output
        assert_serves_digits(launched)
        assert launched.wait_for("Press Ctrl+C to stop."), launched.output  # printed once the browser was asked
        assert opened.is_file() and opened.read_text().strip() == launched.url, launched.output
    finally:
        assert launched.stop() in (0, -15)
    assert "stopped" in launched.output  # SIGTERM stops it cleanly


@pytest.mark.slow
def test_exported_learner_on_a_folder_behind_a_token(fresh_demo):
    cache, _ = fresh_demo
    learner = cache / "digits-v1" / "export.pkl"
    launched = start(
        ["--learner", str(learner), "--data", str(valid_folder(cache)), "--token", "s3cret", "--port", "0"],
        launch_env(cache),
    )
    try:
        assert launched.url.endswith("?token=s3cret")
        assert requests.get(launched.base + "api/v1/config", timeout=30).status_code == 401
        page = assert_serves_digits(launched, token="s3cret")
        assert all(ex["label"] is not None for ex in page["examples"])  # fastai labelled the sub-folders
    finally:
        launched.stop()


@pytest.mark.slow
def test_exported_learner_has_no_validation_set_one_line_error(fresh_demo):
    cache, _ = fresh_demo
    result = run(["--learner", str(cache / "digits-v1" / "export.pkl"), "--valid"], launch_env(cache))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("insights-app: error:"), result.stderr
    assert "items" in lines[0] or "--data" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_learner_saved_with_its_data_shows_its_validation_set(fresh_demo, tmp_path):
    from fastai.learner import Learner, load_learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.vision.core import PILImageBW
    from fastai.vision.data import ImageDataLoaders

    cache, _ = fresh_demo
    exported = load_learner(cache / "digits-v1" / "export.pkl")
    dls = ImageDataLoaders.from_folder(
        cache / "digits-v1" / "images", train="train", valid="valid", img_cls=PILImageBW, bs=64, num_workers=0
    )
    path = tmp_path / "with-data.pkl"
    torch.save(Learner(dls, exported.model, loss_func=CrossEntropyLossFlat()), path)  # a learner that kept its data
    launched = start(["--learner", str(path), "--valid", "--port", "0"], launch_env(cache))
    try:
        assert "showing 359 images of its validation set" in launched.output
        assert_serves_digits(launched)
    finally:
        launched.stop()


@pytest.mark.slow
def test_model_factory_on_an_image_folder(fresh_demo):
    cache, _ = fresh_demo
    # run from the tests folder: `launch_helpers` is importable from the current directory, as a user's module
    launched = start(
        [
            "--model",
            "launch_helpers:digits_net",
            "--data",
            str(valid_folder(cache)),
            "--channels",
            "1",
            "--size",
            "32",
            "--device",
            "cpu",
            "--port",
            "0",
        ],
        launch_env(cache),
        cwd=TESTS,
    )
    try:
        assert "scanning" in launched.output and "found 359 images (359 labeled)" in launched.output
        config = get_config(launched)
        assert config["models"][0]["name"] == "digits_net"
        page = assert_serves_digits(launched)
        assert [ex["label"]["name"] for ex in page["examples"]][:1] == ["0"]  # sub-folder labels, sorted files
    finally:
        launched.stop()


def _flat_csv_folder(cache: Path, root: Path, n: int = 24) -> Path:
    """Images without sub-folders, labelled by a CSV (a common layout for new data)."""
    root.mkdir()
    rows = []
    for i, f in enumerate(sorted(valid_folder(cache).glob("*/*.png"), key=lambda p: p.name)[:n]):
        shutil.copy(f, root / f"img{i:03d}.png")
        rows.append((f"img{i:03d}.png", f.parent.name))
    with open(root / "labels.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("file", "label"), *rows])
    return root


@pytest.mark.slow
def test_weights_file_with_torchvision_arch_csv_labels_and_normalization(fresh_demo, tmp_path):
    import torchvision

    cache, _ = fresh_demo
    data = _flat_csv_folder(cache, tmp_path / "new")
    torch.manual_seed(0)
    weights = tmp_path / "resnet18-digits.pt"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=10).state_dict(), weights)
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(DIGITS) + "\n")
    launched = start(
        [
            "--model",
            str(weights),
            "--arch",
            "resnet18",
            "--data",
            str(data),
            "--classes",
            str(classes),
            "--labels",
            "labels.csv",
            "--size",
            "32",
            "--mean",
            "0.5",
            "0.5",
            "0.5",
            "--std",
            "0.25",
            "0.25",
            "0.25",
            "--port",
            "0",
        ],
        launch_env(cache),
    )
    try:
        assert "found 24 images (24 labeled)" in launched.output
        assert get_config(launched)["models"][0]["name"] == "resnet18-digits"  # the weights file's stem
        page = assert_serves_digits(launched, page_size=4)
        truth = [ex["label"]["name"] for ex in page["examples"]]
        assert truth == [r[1] for r in list(csv.reader(open(data / "labels.csv")))[1:5]]
    finally:
        launched.stop()


# ---------------------------------------------------------------------- argument errors (in-process)


def one_line_error(capsys, argv) -> str:
    assert launch.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("insights-app: error: "), err
    return err


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--learner", "missing.pkl"], "no such file: missing.pkl"),
        (["--learner", "."], "not a file"),
        (["--model", "x:y"], "--model needs --data"),
        (["--data", "."], "--data needs a model"),
        (["--model", "m:f", "--data", "launch.py"], "not a folder"),
        (["--model", "m:f", "--data", ".", "--mean", "0.5"], "--mean and --std together"),
        (["--model", "m:f", "--data", ".", "--size", "1", "2", "3"], "--size takes N or H W"),
        (["--size", "32"], "only apply to --model"),
        (["--valid"], "--valid goes with --learner"),
        (["--port", "70000"], "--port must be between"),
        (["--device", "tpu9"], "--device"),
        (["--host", "0.0.0.0", "--token", ""], "needs a token"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(capsys, monkeypatch, argv, expected):
    monkeypatch.chdir(ROOT)
    assert expected in one_line_error(capsys, argv)


def test_cuda_device_without_cuda_is_a_usage_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert "CUDA is not available" in one_line_error(capsys, ["--device", "cuda"])


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory) -> Path:
    """A few digit images in sub-folders (no training needed)."""
    from insights_app.demos.digits import write_digit_images

    root = tmp_path_factory.mktemp("digits")
    write_digit_images(root, size=16, valid_fraction=0.05, limit=90)  # the validation images only
    return root / "valid"


def test_model_errors_name_the_problem(capsys, monkeypatch, tmp_path, digit_folder):
    import torchvision

    monkeypatch.chdir(TESTS)
    data = str(digit_folder)
    assert "cannot import 'no_such_module'" in one_line_error(capsys, ["--model", "no_such_module:f", "--data", data])
    assert "no attribute 'nope'" in one_line_error(capsys, ["--model", "launch_helpers:nope", "--data", data])
    assert "returned str, not a torch nn.Module" in one_line_error(
        capsys, ["--model", "launch_helpers:not_a_model", "--data", data]
    )
    weights = tmp_path / "w.pt"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=10).state_dict(), weights)
    assert "say which architecture with --arch" in one_line_error(capsys, ["--model", str(weights), "--data", data])
    assert "did you mean resnet18" in one_line_error(
        capsys, ["--model", str(weights), "--arch", "resnet19", "--data", data]
    )
    five = tmp_path / "five.txt"
    five.write_text("a\nb\nc\nd\ne\n")
    err = one_line_error(
        capsys, ["--model", str(weights), "--arch", "resnet18", "--data", data, "--classes", str(five)]
    )  # the weights are right, the class list is not
    assert f"--classes {five}: 5 classes given but the model outputs 10 per example" in err
    err = one_line_error(capsys, ["--model", str(weights), "--arch", "resnet34", "--data", data])
    assert "missing keys" in err
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    assert "is not a torch file" in one_line_error(capsys, ["--model", str(text), "--arch", "resnet18", "--data", data])
    # the adapter's own checks come through as one line too: 3 class names for a 10-output model
    three = tmp_path / "three.txt"
    three.write_text("x\ny\nz\n")
    assert f"--classes {three}: 3 classes given but the model outputs 10 per example" in one_line_error(
        capsys, ["--model", "launch_helpers:digits_net", "--data", data, "--classes", str(three), "--labels", "none"]
    )


def test_whole_pickled_module_and_regex_labels_build_a_visualizer(tmp_path, digit_folder, monkeypatch):
    from launch_helpers import digits_net

    flat = tmp_path / "flat"
    flat.mkdir()
    for f in sorted(digit_folder.glob("*/*.png"), key=lambda p: p.name)[:12]:
        shutil.copy(f, flat / f"digit{f.parent.name}_{f.name}")
    path = tmp_path / "whole.pt"
    torch.save(digits_net(), path)
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps(DIGITS))
    monkeypatch.chdir(TESTS)  # unpickling the module needs launch_helpers importable, as for any pickle
    args = parse_args(
        [
            "--model",
            str(path),
            "--data",
            str(flat),
            "--labels",
            r"digit(\d)_",
            "--channels",
            "1",
            "--classes",
            str(classes),
        ]
    )
    vis = build_visualizer(args, out=lambda _m: None)
    page = vis.page({"page_size": 12, "method": "Saliency"})
    names = [ex["label"]["name"] for ex in page["examples"]]
    assert names == [f.name[5] for f in sorted(flat.iterdir())]


def test_busy_port_is_a_one_line_error(capsys, monkeypatch, digit_folder):
    monkeypatch.chdir(TESTS)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        err = one_line_error(
            capsys,
            [
                "--model",
                "launch_helpers:digits_net",
                "--data",
                str(digit_folder),
                "--channels",
                "1",
                "--port",
                str(port),
            ],
        )
    assert f"port {port} on 127.0.0.1 is already in use" in err


def test_help_lists_every_flag():
    exe = shutil.which("insights-app")
    cmd = [exe, "--help"] if exe else [sys.executable, str(ROOT / "launch.py"), "--help"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("usage: insights-app")
    for flag in (
        "--learner",
        "--valid",
        "--model",
        "--arch",
        "--data",
        "--labels",
        "--classes",
        "--size",
        "--mean",
        "--std",
        "--host",
        "--port",
        "--token",
        "--device",
        "--open",
    ):
        assert flag in result.stdout


# ---------------------------------------------------------------------- what an adversarial pass tried


@pytest.fixture
def undecodable(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café\nthé\n".encode("latin-1"))
    return path


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--classes", "{bad}"], "is not UTF-8 text"),
        (["--labels", "{bad_csv}"], "is not UTF-8 text"),
        (["--mean", "0.5", "--std", "nan"], "--std must be finite and non-zero numbers, not nan"),
        (["--mean", "0.5", "--std", "inf"], "--std must be finite and non-zero numbers, not inf"),
        (["--mean", "0.5", "--std", "0"], "--std must be finite and non-zero numbers, not 0"),
        (["--mean", "nan", "--std", "1"], "--mean must be finite numbers, not nan"),
        (["--device", "cpu:5"], "--device cpu:5: there is one CPU device"),
        (["--size", "5000"], "--size must be at most 4096"),
    ],
)
def test_bad_values_and_files_are_one_line_errors(
    capsys, monkeypatch, tmp_path, digit_folder, undecodable, extra, expected
):
    csv = tmp_path / "labels.csv"
    csv.write_bytes(undecodable.read_bytes())
    extra = [a.replace("{bad}", str(undecodable)).replace("{bad_csv}", str(csv)) for a in extra]
    monkeypatch.chdir(TESTS)
    err = one_line_error(
        capsys, ["--model", "launch_helpers:digits_net", "--data", str(digit_folder), "--channels", "1", *extra]
    )
    assert expected in err


def test_a_pickle_that_is_not_a_torch_file_is_one_line_without_a_warning(tmp_path, digit_folder):
    import pickle

    path = tmp_path / "dict.pkl"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=4))  # torch warns about the protocol before failing
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "launch.py"),
            "--model",
            str(path),
            "--arch",
            "resnet18",
            "--data",
            str(digit_folder),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("insights-app: error: --model: cannot load")


# ---------------------------------------------------------------------- what a user sees (subprocesses)


def _with_misc(digit_folder: Path, root: Path, n_misc: int = 3) -> Path:
    """The digit folder plus a ``misc/`` sub-folder that is no class (a common leftover in real data)."""
    shutil.copytree(digit_folder, root)
    (root / "misc").mkdir()
    for f in sorted(digit_folder.glob("*/*.png"))[:n_misc]:
        shutil.copy(f, root / "misc" / f"extra_{f.name}")
    return root


def _fails(args, tmp_path, cwd=TESTS) -> tuple:
    """``launch.py ARGS`` in a subprocess that must fail: (its one stderr line, its stdout, seconds)."""
    t0 = time.monotonic()
    result = run(args, launch_env(tmp_path / "cache"), cwd=cwd, timeout=120)
    seconds = time.monotonic() - t0
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("insights-app: error: "), result.stderr
    return lines[0], result.stdout, seconds


def test_a_sub_folder_that_is_not_a_class_is_shown_unlabeled_with_a_warning(digit_folder, tmp_path):
    data = _with_misc(digit_folder, tmp_path / "data")
    n = sum(1 for _ in data.glob("*/*.png"))
    launched = start(
        ["--model", "launch_helpers:digits_net", "--data", str(data), "--classes", ",".join(DIGITS), "--port", "0"],
        launch_env(tmp_path / "cache"),
        cwd=TESTS,
    )
    try:
        out = launched.output
        assert (
            "WARNING data_adapters.folder: showing 3 images unlabeled: sub-folder 'misc' (3 images) is not one "
            "of the 10 classes"
        ) in out
        assert f"found {n} images ({n - 3} labeled)" in out
        assert "Traceback" not in out and "note:" not in out  # the classes were given: nothing to announce
        assert get_config(launched)["classes"] == DIGITS
    finally:
        launched.stop()


def test_class_names_from_sub_folders_are_announced_with_their_origin(digit_folder, tmp_path):
    launched = start(
        ["--model", "launch_helpers:digits_net", "--data", str(digit_folder), "--port", "0"],
        launch_env(tmp_path / "cache"),
        cwd=TESTS,
    )
    try:
        assert (
            f"insights-app: note: 10 classes, the sorted sub-folder names of {digit_folder}: 0, 1, 2, 3, 4, 5, 6, "
            "7, 8, 9. A model trained with another class order needs --classes"
        ) in launched.output
    finally:
        launched.stop()


def test_many_class_names_are_shown_truncated():
    names = [f"c{i:02d}" for i in range(25)]
    assert names_preview(names) == "c00, c01, c02, c03, c04, c05, c06, c07, c08, c09, ... (25 in all)"
    assert names_preview(names[:3]) == "c00, c01, c02"


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory) -> Path:
    """A torchvision resnet18 state dict for 10 classes (random weights: only their shapes matter here)."""
    import torchvision

    path = tmp_path_factory.mktemp("weights") / "weights.pt"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None, num_classes=10).state_dict(), path)
    return path


def test_a_class_list_of_the_wrong_length_names_classes_and_both_counts(digit_folder, resnet_weights, tmp_path):
    three = tmp_path / "three.txt"
    three.write_text("x\ny\nz\n")
    err, _, _ = _fails(
        ["--model", str(resnet_weights), "--arch", "resnet18", "--data", str(digit_folder), "--classes", str(three)],
        tmp_path,
    )
    assert err == (
        f"insights-app: error: --classes {three}: 3 classes given but the model outputs 10 per example; "
        "give its 10 class names, in its output order"
    )
    # no --classes: the sub-folders (with misc, 11) against the model's 10 outputs
    err, _, _ = _fails(
        ["--model", "launch_helpers:digits_net", "--data", str(_with_misc(digit_folder, tmp_path / "d"))], tmp_path
    )
    assert (
        "11 classes found (the sorted sub-folder names of" in err
        and ": 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ... (11 in all))" in err
        and "the model outputs 10 per example" in err
        and "with --classes" in err
    )


def test_a_class_file_that_is_not_valid_json_is_refused_before_anything_loads(digit_folder, tmp_path):
    bad = tmp_path / "classes.txt"  # a JSON list, cut short, whatever the file is called
    bad.write_text('["a", "b"')
    err, out, _ = _fails(
        ["--model", "launch_helpers:digits_net", "--data", str(digit_folder), "--classes", str(bad)], tmp_path
    )
    assert err == (
        f"insights-app: error: --classes: class file {bad} is not valid JSON: Expecting ',' delimiter: "
        "line 1 column 10 (char 9)"
    )
    assert "loading" not in out


def test_a_state_dict_given_as_a_learner_points_to_model_and_arch(resnet_weights, tmp_path, digit_folder):
    err, _, _ = _fails(["--learner", str(resnet_weights), "--data", str(digit_folder)], tmp_path)
    assert err == (
        f"insights-app: error: --learner {resnet_weights} is a state dict (model weights only), not an "
        f"exported fastai Learner; to show those weights use --model {resnet_weights} --arch NAME (e.g. "
        "--arch resnet18) --data FOLDER"
    )


def test_grayscale_images_for_an_rgb_model_name_the_channels_flag(digit_folder, tmp_path):
    err, _, _ = _fails(["--model", "launch_helpers:rgb_net", "--data", str(digit_folder), "--channels", "1"], tmp_path)
    assert err == (
        "insights-app: error: the model expects 3-channel (RGB) images but --channels 1 reads them as "
        "1-channel (grayscale): use --channels 3"
    )


def test_rgb_images_for_a_grayscale_model_name_the_channels_flag(capsys, monkeypatch, tmp_path, digit_folder):
    (tmp_path / "gray_models.py").write_text(
        "from insights_app.testing import ConvNet, seeded\n\n\ndef gray():\n    return seeded(ConvNet, 1, 10)\n"
    )
    monkeypatch.chdir(tmp_path)
    assert one_line_error(capsys, ["--model", "gray_models:gray", "--data", str(digit_folder)]) == (
        "insights-app: error: the model expects 1-channel (grayscale) images but --channels 3 (the default) reads "
        "them as 3-channel (RGB): use --channels 1"
    )


def test_a_busy_port_and_a_missing_model_fail_before_the_model_loads(digit_folder, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        err, out, seconds = _fails(
            ["--model", "launch_helpers:digits_net", "--data", str(digit_folder), "--port", str(port)], tmp_path
        )
    print(f"\nbusy port: exit 2 after {seconds:.2f}s")
    assert err == (
        f"insights-app: error: port {port} on 127.0.0.1 is already in use; pick another with --port "
        "(--port 0: any free port)"
    )
    assert out == ""  # nothing loaded, nothing scanned
    err, out, _ = _fails(["--model", "missing.pt", "--arch", "resnet18", "--data", str(digit_folder)], tmp_path)
    assert err == "insights-app: error: --model: no such file: missing.pt" and out == ""


def test_an_address_of_another_machine_is_refused_at_once(capsys):
    err = one_line_error(capsys, ["--host", "192.0.2.1", "--token", "t"])  # TEST-NET-1: never this machine's
    assert err.startswith("insights-app: error: cannot listen on 192.0.2.1:0: ")
