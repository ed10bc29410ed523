"""``precompute(..., executor="ray")`` (``insights-app precompute --executor ray``): Ray actors compute,
the driver writes, and the store ends up exactly as the local executor leaves it.

The Ray tests share one local Ray instance of 2 CPUs (``ray.init(num_cpus=2)``, what the
executor starts itself for ``workers=2``; starting one takes 15-20 s on two cores), except the
Ctrl+C test, whose own process starts and stops its own. They are skipped where Ray is not
installed (CI installs it: it is in the ``test`` extra).
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import Digits, make_visualizer

from insights_app.precompute import precompute
from insights_app.store import FILE_NAME, Store
from insights_app.testing import TinyCNN, seeded

METHODS = ["Saliency", "IntegratedGradients"]
ARGUMENTS = {"IntegratedGradients": {"n_steps": 8}}
N = 40  # examples: two full chunks of 16 and a short one
TESTS = Path(__file__).resolve().parent


def two_models(store, **kwargs):
    """Two digits models that disagree on some examples (each is attributed to its own target)."""
    return make_visualizer(
        models=[seeded(TinyCNN, seed=0), seeded(TinyCNN, seed=1)], dataset=Digits(N), store=store, **kwargs
    )


def rows(store_dir):
    """Every stored prediction and map, as the bytes the store holds (so equality is bit-equality)."""
    conn = sqlite3.connect(Path(store_dir) / FILE_NAME)
    try:
        explanations = conn.execute(
            "SELECT model, example, key, target, software, maps, contributions "
            "FROM explanations ORDER BY model, example, key, target"
        ).fetchall()
        predictions = conn.execute(
            "SELECT model, example, software, indices, scores FROM predictions ORDER BY model, example"
        ).fetchall()
    finally:
        conn.close()
    return explanations, predictions


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="the ray executor's tests need Ray (pip install 'insights-app[ray]')")
    started = time.monotonic()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    assert time.monotonic() - started < 120, "Ray took over two minutes to start"
    yield ray
    ray.shutdown()


def test_the_local_executor_never_imports_ray(tmp_path):
    """Ray is an optional extra, imported on its own path only."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from reliability_helpers import Digits, make_visualizer
        from insights_app.precompute import precompute
        vis = make_visualizer(dataset=Digits(8), store={str(tmp_path)!r})
        summary = precompute(vis, ["Saliency"], progress=False)
        assert summary.stored == 8, summary
        assert "ray" not in sys.modules, "the local executor imported ray"
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_bad_executor_arguments_are_one_validation_error(tmp_path):
    from insights_app.errors import ValidationError

    vis = make_visualizer(dataset=Digits(8), store=tmp_path)
    with pytest.raises(ValidationError, match="executor: must be one of local, ray"):
        precompute(vis, ["Saliency"], executor="dask", progress=False)
    with pytest.raises(ValidationError, match="workers: must be a whole number"):
        precompute(vis, ["Saliency"], executor="ray", workers=0, progress=False)
    with pytest.raises(ValidationError, match="go with executor='ray'"):
        precompute(vis, ["Saliency"], workers=2, progress=False)
    assert Store(tmp_path).counts()["explanations"] == 0


def test_without_ray_the_ray_executor_says_how_to_install_it(tmp_path, monkeypatch):
    from insights_app.errors import ValidationError

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    vis = make_visualizer(dataset=Digits(8), store=tmp_path)
    with pytest.raises(ValidationError, match=r'ray needs Ray: pip install "insights-app\[ray\]"'):
        precompute(vis, ["Saliency"], executor="ray", progress=False)


def test_the_command_line_without_ray_is_one_line(tmp_path):
    from launch_helpers import launch_env

    from insights_app.demos.digits import write_digit_images

    write_digit_images(tmp_path / "digits", size=16, valid_fraction=0.05, limit=90)
    argv = [
        "precompute",
        "--model",
        "launch_helpers:digits_net",
        "--data",
        str(tmp_path / "digits" / "valid"),
        "--channels",
        "1",
        "--store",
        str(tmp_path / "store"),
        "--methods",
        "Saliency",
        "--executor",
        "ray",
    ]
    code = f"import sys; sys.modules['ray'] = None; import launch; sys.exit(launch.main({argv!r}))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=TESTS,
        env=launch_env(tmp_path / "cache"),
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last == 'insights-app: error: --executor ray needs Ray: pip install "insights-app[ray]"'
    assert "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_stores_what_the_local_executor_stores_and_a_rerun_computes_nothing(tmp_path, ray_cluster, monkeypatch):
    targets = "top1"
    local = precompute(two_models(tmp_path / "local"), METHODS, ARGUMENTS, targets=targets, progress=False)
    on_ray = precompute(
        two_models(tmp_path / "ray"), METHODS, ARGUMENTS, targets=targets, progress=False, executor="ray", workers=2
    )
    wanted = N * len(METHODS) * 2
    for summary in (local, on_ray):
        assert (summary.examples, summary.stored, summary.already, summary.failed) == (N, wanted, 0, 0), summary
    # Bit-equal: the same engine calls on the same chunks. The actors run torch with one thread
    # each and this process with two (conftest.py); on these models the maps came out bit-equal
    # across thread counts when measured, so no tolerance is needed (none is given).
    want_maps, want_predictions = rows(tmp_path / "local")
    got_maps, got_predictions = rows(tmp_path / "ray")
    assert len(want_maps) == wanted and len(want_predictions) == N * 2
    assert got_predictions == want_predictions
    assert got_maps == want_maps
    # A rerun finds everything stored: no cluster is joined, no actor started, nothing computed.
    from insights_app.executors import ray_executor

    def no_cluster(*args, **kwargs):
        raise AssertionError("a rerun over a full store started Ray actors")

    monkeypatch.setattr(ray_executor, "Cluster", no_cluster)
    again = precompute(
        two_models(tmp_path / "ray"), METHODS, ARGUMENTS, targets=targets, progress=False, executor="ray", workers=2
    )
    assert (again.examples, again.stored, again.already, again.failed) == (N, 0, wanted, 0), again
    assert rows(tmp_path / "ray") == (want_maps, want_predictions)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_resumes_a_partly_stored_run_as_the_local_executor_does(tmp_path, ray_cluster):
    """A store that has the first 20 examples (a chunk boundary falls inside), and a new method for
    all of them: the actors compute what is missing, with the targets of the stored predictions
    (here the labels: ``targets="label"``), and the store ends as the local executor's does on the
    same start."""
    for side in ("local", "ray"):
        precompute(two_models(tmp_path / side), ["Saliency"], targets="label", limit=20, progress=False)
    local = precompute(two_models(tmp_path / "local"), METHODS, ARGUMENTS, targets="label", progress=False)
    on_ray = precompute(
        two_models(tmp_path / "ray"), METHODS, ARGUMENTS, targets="label", progress=False, executor="ray", workers=2
    )
    for summary in (local, on_ray):
        assert (summary.examples, summary.stored, summary.already, summary.failed) == (
            N,
            (N * 2 - 20) * 2,
            20 * 2,
            0,
        ), summary
    assert rows(tmp_path / "ray") == rows(tmp_path / "local")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_failures_are_counted_as_the_local_executor_counts_them(tmp_path, ray_cluster):
    from reliability_helpers import make_faulty_model

    def faulty(store):
        return make_visualizer(models=make_faulty_model(), dataset=Digits(N, poison=(3, 17)), store=store)

    local = precompute(faulty(tmp_path / "local"), ["Saliency"], progress=False)
    on_ray = precompute(faulty(tmp_path / "ray"), ["Saliency"], progress=False, executor="ray", workers=2)
    assert (on_ray.stored, on_ray.failed) == (local.stored, local.failed) == (N - 2, 2)
    assert sorted(f.split(",")[0] for f in on_ray.failures) == ["example 17", "example 3"]
    assert rows(tmp_path / "ray") == rows(tmp_path / "local")


INTERRUPTED = """
import sys
sys.path.insert(0, {tests!r})
from reliability_helpers import Digits, make_visualizer
from insights_app.precompute import precompute
from insights_app.testing import SlowNet, seeded
vis = make_visualizer(models=seeded(SlowNet, delay=1.0), dataset=Digits(160, batch_size=16), store={store!r})
print("ready", flush=True)
try:
    precompute(vis, ["Saliency"], progress=False, executor="ray", workers=2)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ctrl_c_keeps_what_arrived_and_stops_ray(tmp_path):
    """Ctrl+C: the run stops, the chunks that arrived are stored whole, Ray's processes are gone."""
    pytest.importorskip("ray", reason="the ray executor's tests need Ray")
    psutil = pytest.importorskip("psutil")
    store = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED.format(tests=str(TESTS), store=str(store))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 200
        while Store(store).counts()["explanations"] == 0 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "no Ray process was started"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted" in out, err[-2000:]
    n = Store(store).counts()["explanations"]
    assert 0 < n < 160 and n % 16 == 0  # whole chunks only, and not all of them
    conn = sqlite3.connect(store / FILE_NAME)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    gone = time.monotonic() + 30
    while time.monotonic() < gone and any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children):
        time.sleep(0.2)
    assert not [c.name() for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_a_recording_store_answers_what_it_was_given_and_keeps_what_is_saved():
    from insights_app.executors.ray_executor import RecordingStore

    rec = RecordingStore()
    rec.begin({"a": ([1, 2], [0.5, 0.25])}, {("a", "k", 1)})
    assert rec.predictions(["a", "b"]) == {"a": ([1, 2], [0.5, 0.25])}
    assert set(rec.explanations([("a", "k", 1), ("a", "k", 2)])) == {("a", "k", 1)}
    rec.save_predictions([("b", [0], [1.0])])
    rec.save_explanations([(("b", "k", 0), [np.zeros(2, np.float32)], [1.0])])
    assert rec.predictions(["b"]) == {"b": ([0], [1.0])} and set(rec.explanations([("b", "k", 0)])) == {("b", "k", 0)}
    assert rec.saved_predictions == [("b", [0], [1.0])] and len(rec.saved_explanations) == 1


USER_MODULE = '''
import torch
import torch.nn as nn


class UsersOwnNet(nn.Module):
    """A model class only this folder defines: the actors find it on the driver's import path."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def build():
    torch.manual_seed(0)
    return UsersOwnNet().eval()
'''


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_command_line_on_a_running_cluster(tmp_path, ray_cluster):
    """insights-app precompute --executor ray --ray-address ADDRESS: the user's own model module, on the
    cluster given (left running), stores what the local executor stores; a rerun finds it all."""
    from launch_helpers import launch_env, run

    from insights_app.demos.digits import write_digit_images

    (tmp_path / "mymodels.py").write_text(USER_MODULE)
    write_digit_images(tmp_path / "digits", size=16, valid_fraction=0.05, limit=90)
    source = [
        "--model",
        "mymodels:build",
        "--data",
        str(tmp_path / "digits" / "valid"),
        "--channels",
        "1",
        "--classes",
        ",".join(map(str, range(10))),
    ]
    common = [
        "--methods",
        "IntegratedGradients,Saliency",
        "--arguments",
        '{"IntegratedGradients": {"n_steps": 8}}',
        "--limit",
        "20",
    ]
    env = launch_env(tmp_path / "cache")
    address = ray_cluster.get_runtime_context().gcs_address
    local = run(["precompute", *source, "--store", str(tmp_path / "local"), *common], env, cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    on_ray = run(
        [
            "precompute",
            *source,
            "--store",
            str(tmp_path / "ray"),
            *common,
            "--executor",
            "ray",
            "--ray-address",
            address,
            "--workers",
            "2",
        ],
        env,
        cwd=tmp_path,
        timeout=240,
    )
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    assert "20 examples: 40 maps stored, 0 already stored, 0 failed" in on_ray.stdout, on_ray.stdout
    assert rows(tmp_path / "ray") == rows(tmp_path / "local")
    again = run(
        [
            "precompute",
            *source,
            "--store",
            str(tmp_path / "ray"),
            *common,
            "--executor",
            "ray",
            "--ray-address",
            address,
        ],
        env,
        cwd=tmp_path,
        timeout=240,
    )
    assert "20 examples: 0 maps stored, 40 already stored, 0 failed" in again.stdout, again.stdout
    # The cluster was joined, not started: it is still up, its CPUs free again (the actors are gone).
    deadline = time.monotonic() + 30
    while ray_cluster.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray_cluster.available_resources().get("CPU", 0) == 2
    bad = run(
        ["precompute", *source, "--store", str(tmp_path / "x"), "--methods", "Saliency", "--workers", "2"],
        env,
        cwd=tmp_path,
    )
    assert (
        bad.returncode == 2
        and bad.stderr.strip().splitlines()[-1]
        == "insights-app: error: --ray-address and --workers go with --executor ray"
    )
