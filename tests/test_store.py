"""The persistent store (store=DIR): results survive a restart, keyed by content so never stale,
a foreign or damaged file is refused and left alone, a killed writer leaves it consistent."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from reliability_helpers import Digits, TinyCNN, make_visualizer

from insights_app import Batch
from insights_app.store import FILE_NAME, Store, StoreError
from insights_app.testing import seeded

PAGE = {"method": "IntegratedGradients", "arguments": {"n_steps": 8}, "page_size": 6}


def calls(vis):
    """Count the captum calls and model forward passes of every engine."""
    counter = {"attribute": 0, "forward": 0}
    for engine in vis.engines:
        attribute, forward = engine.attribute, engine.forward

        def counted_attribute(*a, _f=attribute, **k):
            counter["attribute"] += 1
            return _f(*a, **k)

        def counted_forward(*a, _f=forward, **k):
            counter["forward"] += 1
            return _f(*a, **k)

        engine.attribute, engine.forward = counted_attribute, counted_forward
    return counter


def maps(page):
    return [m["attributions"][0]["image"] for ex in page["examples"] for m in ex["models"]]


@pytest.mark.parametrize("method", ["IntegratedGradients", "Saliency", "Occlusion"])
def test_a_restarted_visualizer_serves_what_is_stored_without_computing(tmp_path, method):
    body = dict(PAGE, method=method, arguments=PAGE["arguments"] if method == "IntegratedGradients" else {})
    first = make_visualizer(models=seeded(TinyCNN, seed=0), store=tmp_path)
    want = first.page(body)
    assert first.results_store.counts()["explanations"] == 6 and first.results_store.counts()["predictions"] >= 6
    again = make_visualizer(models=seeded(TinyCNN, seed=0), store=tmp_path)  # a new process would do the same
    counter = calls(again)
    got = again.page(body)
    assert counter == {"attribute": 0, "forward": 0}
    assert maps(got) == maps(want)
    assert [ex["models"][0]["predictions"] for ex in got["examples"]] == [
        ex["models"][0]["predictions"] for ex in want["examples"]
    ]


@pytest.mark.parametrize("change", ["weights", "arguments", "example", "target"])
def test_anything_changed_is_computed_again(tmp_path, change):
    make_visualizer(models=seeded(TinyCNN, seed=0), store=tmp_path).page(PAGE)
    model = seeded(TinyCNN, seed=0)
    body = dict(PAGE)
    dataset = Digits()
    if change == "weights":
        with torch.no_grad():
            next(model.parameters())[0].add_(0.01)
    elif change == "arguments":
        body["arguments"] = {"n_steps": 9}
    elif change == "example":
        for b in dataset.batches:
            b.inputs[:, 0, 0, 0] += 0.5
    vis = make_visualizer(models=model, dataset=dataset, store=tmp_path)
    counter = calls(vis)
    if change == "target":
        vis.attribute({"example_id": 0, "target": 7, "method": "IntegratedGradients", "arguments": {"n_steps": 8}})
        assert counter["attribute"] == 1
        return
    vis.page(body)
    assert counter["attribute"] >= 1
    if change in ("weights", "example"):
        assert counter["forward"] >= 1  # the predictions are not the stored ones either


def test_a_foreign_or_damaged_file_is_refused_and_left_alone(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    conn = sqlite3.connect(foreign / FILE_NAME)
    conn.execute("CREATE TABLE songs (title TEXT)")
    conn.commit()
    conn.close()
    before = (foreign / FILE_NAME).read_bytes()
    with pytest.raises(StoreError, match="not an insights-app store"):
        Store(foreign)
    assert (foreign / FILE_NAME).read_bytes() == before
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / FILE_NAME).write_bytes(b"this is not a database" * 100)
    before = (damaged / FILE_NAME).read_bytes()
    with pytest.raises(StoreError, match="is not an SQLite database") as err:
        Store(damaged)
    assert "\n" not in str(err.value) and (damaged / FILE_NAME).read_bytes() == before
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        Store(tmp_path / "a-file")


WRITER = """
import sys, numpy as np
from insights_app.store import Store
s = Store(sys.argv[1])
i = 0
print("ready", flush=True)
while True:
    s.put_explanations("m", "v", [((f"ex{i}-{j}", "k", j), [np.full((32, 32), i, np.float32)], [1.0]) for j in range(50)])
    i += 1
"""


def test_a_writer_killed_mid_write_leaves_a_consistent_store(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    store = Store(tmp_path)
    n = store.counts()["explanations"]
    assert n > 0 and n % 50 == 0  # whole transactions only
    conn = sqlite3.connect(tmp_path / FILE_NAME)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    got = store.get_explanations("m", "v", [("ex0-3", "k", 3)])
    assert got[("ex0-3", "k", 3)][0][0].shape == (32, 32)


def test_readers_read_while_a_writer_writes(tmp_path):
    store = Store(tmp_path)
    store.put_explanations("m", "v", [(("seed", "k", None), [np.zeros(4, np.float32)], [1.0])])
    stop = threading.Event()
    errors = []

    def write():
        i = 0
        while not stop.is_set() and i < 400:
            try:
                store.put_explanations("m", "v", [((f"w{i}", "k", None), [np.ones(1024, np.float32)], [1.0])])
            except Exception as exc:  # noqa: BLE001 - the test reports any
                errors.append(exc)
            i += 1

    writer = threading.Thread(target=write)
    writer.start()
    reads = 0
    deadline = time.monotonic() + 3
    while writer.is_alive() and time.monotonic() < deadline:
        assert ("seed", "k", None) in store.get_explanations("m", "v", [("seed", "k", None)])
        reads += 1
    stop.set()
    writer.join(10)
    assert not errors and reads > 10


def test_the_size_bound_drops_the_oldest_first(tmp_path):
    store = Store(tmp_path, max_bytes=10**9)
    for i in range(10):
        store.put_explanations("m", "v", [((f"e{i}", "k", None), [np.zeros(1000, np.float32)], [1.0])])
        time.sleep(0.002)
    total = store.stored_bytes()
    removed = store.prune(total // 2)
    assert removed >= 5 and store.stored_bytes() <= total // 2
    left = store.get_explanations("m", "v", [(f"e{i}", "k", None) for i in range(10)])
    assert sorted(k[0] for k in left) == [f"e{i}" for i in range(10 - len(left), 10)]


def test_two_processes_share_a_store(tmp_path):
    """The CLI and a notebook on one store: what one stored, the other reads."""
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from reliability_helpers import make_visualizer, TinyCNN; "
        f"from insights_app.testing import seeded; v = make_visualizer(models=seeded(TinyCNN, seed=0), store={str(tmp_path)!r}); "
        f"v.page({PAGE!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env=dict(os.environ))
    vis = make_visualizer(models=seeded(TinyCNN, seed=0), store=tmp_path)
    counter = calls(vis)
    vis.page(PAGE)
    assert counter["attribute"] == 0


def test_the_command_line_serves_from_a_store_across_restarts(tmp_path):
    """insights-app --store DIR: the second start serves the first one's maps; a foreign file is one line."""
    import requests
    from launch_helpers import TESTS, launch_env, run, start

    from insights_app.demos.digits import write_digit_images

    write_digit_images(tmp_path / "digits", size=16, valid_fraction=0.05, limit=90)
    data = tmp_path / "digits" / "valid"
    store = tmp_path / "store"
    args = ["--model", "launch_helpers:digits_net", "--data", str(data), "--channels", "1", "--store", str(store)]
    env = launch_env(tmp_path / "cache")
    body = {"method": "IntegratedGradients", "arguments": {"n_steps": 8}, "page_size": 4}
    answers = []
    for _ in range(2):
        launched = start(args, env, cwd=TESTS)
        try:
            r = requests.post(f"{launched.url.split('?')[0].rstrip('/')}/api/v1/examples", json=body, timeout=60)
            answers.append(r.json())
        finally:
            launched.stop()
        if len(answers) == 1:
            assert Store(store).counts()["explanations"] == 4
    assert maps(answers[0]) == maps(answers[1])
    (tmp_path / "foreign").mkdir()
    conn = sqlite3.connect(tmp_path / "foreign" / FILE_NAME)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    done = run(args[:-1] + [str(tmp_path / "foreign")], env, cwd=TESTS)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "--store:" in done.stderr and "not an insights-app store" in done.stderr and done.stdout == ""


def test_precompute_fills_the_store_and_resumes(tmp_path):
    """insights-app precompute: maps for every example; a second run finds them stored; a server reads them."""
    import requests
    from launch_helpers import TESTS, launch_env, run, start

    from insights_app.demos.digits import write_digit_images

    write_digit_images(tmp_path / "digits", size=16, valid_fraction=0.05, limit=90)
    data = tmp_path / "digits" / "valid"
    store = tmp_path / "store"
    source = ["--model", "launch_helpers:digits_net", "--data", str(data), "--channels", "1"]
    pre = [
        "precompute",
        *source,
        "--store",
        str(store),
        "--methods",
        "IntegratedGradients,Saliency",
        "--arguments",
        '{"IntegratedGradients": {"n_steps": 8}}',
        "--limit",
        "12",
    ]
    env = launch_env(tmp_path / "cache")
    first = run(pre, env, cwd=TESTS)
    assert first.returncode == 0, first.stderr
    assert "12 examples: 24 maps stored, 0 already stored, 0 failed" in first.stdout
    again = run(pre[:-1] + ["20"], env, cwd=TESTS)  # resumes: the first 12 are found, 8 more computed
    assert "20 examples: 16 maps stored, 24 already stored, 0 failed" in again.stdout, again.stdout
    launched = start([*source, "--store", str(store)], env, cwd=TESTS)
    try:
        body = {"method": "IntegratedGradients", "arguments": {"n_steps": 8}, "page_size": 4}
        page = requests.post(f"{launched.url.split('?')[0].rstrip('/')}/api/v1/examples", json=body, timeout=60).json()
        assert len(page["examples"]) == 4 and all(m["attributions"] for ex in page["examples"] for m in ex["models"])
    finally:
        launched.stop()
    assert Store(store).counts()["explanations"] == 40  # the server found every map it showed
    bad = run(["precompute", *source, "--store", str(store), "--methods", "Nope"], env, cwd=TESTS)
    last = bad.stderr.strip().splitlines()[-1]
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert last.startswith("insights-app: error: methods: unknown method 'Nope'")
    bad = run(["precompute", *source, "--methods", "Saliency"], env, cwd=TESTS)
    assert bad.returncode == 2 and "precompute needs --store DIR" in bad.stderr


def test_a_restarted_dataset_pass_reads_its_rows_from_the_store(tmp_path):
    """Triage after a restart: the pass covers the dataset again without one forward pass, and
    answers exactly what the first run answered (confusion matrix, losses, the loss it ranks by)."""
    first = make_visualizer(models=seeded(TinyCNN, seed=0), store=tmp_path)
    want = first.interpretation()
    assert first.results_store.counts()["pass_rows"] == want.n_examples == 48
    again = make_visualizer(models=seeded(TinyCNN, seed=0), store=tmp_path)
    counter = calls(again)
    got = again.interpretation()
    assert counter["forward"] == 0
    assert got.n_examples == want.n_examples
    assert np.array_equal(got.confusion_matrix(), want.confusion_matrix())
    assert np.allclose(got.losses, want.losses, equal_nan=True)
    assert again.dataset_pass.losses[0].name == first.dataset_pass.losses[0].name == "cross-entropy"
    assert again.dataset_pass.losses[0].fn is not None
    # Another model's rows are its own: a retrained model runs its pass.
    other = make_visualizer(models=seeded(TinyCNN, seed=1), store=tmp_path)
    counter = calls(other)
    other.interpretation()
    assert counter["forward"] > 0


def test_a_relabeled_example_or_another_loss_is_passed_again(tmp_path):
    first = make_visualizer(models=seeded(TinyCNN, seed=0), store=tmp_path)
    first.interpretation()
    shifted = Digits()
    shifted.batches = [Batch(b.inputs, (b.labels + 1) % 10) for b in shifted.batches]
    relabeled = make_visualizer(models=seeded(TinyCNN, seed=0), dataset=shifted, store=tmp_path)
    counter = calls(relabeled)
    relabeled.interpretation()
    assert counter["forward"] > 0

    def halved(out, labels):
        return torch.nn.functional.cross_entropy(out, labels, reduction="none") / 2

    own_loss = make_visualizer(models=seeded(TinyCNN, seed=0), store=tmp_path, loss_func=halved)
    counter = calls(own_loss)
    got = own_loss.interpretation()
    assert counter["forward"] > 0
    assert np.allclose(got.losses, first.interpretation().losses / 2, rtol=1e-5)


def test_a_store_of_the_first_format_gains_the_new_tables(tmp_path):
    """A store written before the dataset pass and the metrics were stored keeps its maps and gains them."""
    vis = make_visualizer(models=seeded(TinyCNN, seed=0), store=tmp_path)
    vis.page(PAGE)
    vis.results_store.close()
    conn = sqlite3.connect(tmp_path / FILE_NAME)
    for table in ("pass_rows", "pass_losses", "metrics"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = Store(tmp_path)
    assert store.counts()["explanations"] == 6 and store.counts()["pass_rows"] == 0
    assert sqlite3.connect(tmp_path / FILE_NAME).execute("PRAGMA user_version").fetchone()[0] == 2


def test_the_prune_command_drops_other_versions_then_the_oldest(tmp_path, capsys):
    import launch

    vis = make_visualizer(models=seeded(TinyCNN, seed=0), store=tmp_path)
    vis.page(PAGE)
    store = vis.results_store
    row = store._connect().execute("SELECT model, example, key, target FROM explanations LIMIT 1").fetchone()
    store.put_explanations(
        row[0],
        "captum 0.1; torch 1.0; insights-app 0.0",
        [((row[1], row[2], row[3]), [np.zeros((4, 4), np.float32)], [1.0])],
    )
    assert store.counts()["explanations"] == 7
    store.close()
    assert launch.main(["prune", "--store", str(tmp_path)]) == 0
    assert "1 rows of other versions deleted; 0 oldest maps deleted; maps: 7 -> 6" in capsys.readouterr().out
    assert launch.main(["prune", "--store", str(tmp_path), "--max-size", "1"]) == 0
    assert "maps: 6 -> 0" in capsys.readouterr().out
    assert Store(tmp_path).counts()["predictions"] >= 6  # predictions are small: the size bound is of maps
    assert launch.main(["prune", "--store", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert launch.main(["prune", "--store", str(tmp_path), "--max-size", "lots"]) == 2
    assert "is not a size" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_precompute_killed_then_rerun_while_two_servers_read_the_store(tmp_path):
    """Two servers serve pages from one store while precompute writes to it; precompute killed with
    SIGKILL mid-run leaves a consistent store; the rerun completes with every entry there and intact."""
    import requests
    from launch_helpers import ROOT, TESTS, launch_env, run, start

    from insights_app.demos.digits import write_digit_images

    write_digit_images(tmp_path / "digits", size=16, valid_fraction=0.2, limit=800)
    data = tmp_path / "digits" / "valid"
    n = sum(1 for _ in data.rglob("*.png"))
    store = tmp_path / "store"
    source = ["--model", "launch_helpers:digits_net", "--data", str(data), "--channels", "1"]
    pre = [
        "precompute",
        *source,
        "--store",
        str(store),
        "--methods",
        "IntegratedGradients,Saliency",
        "--arguments",
        '{"IntegratedGradients": {"n_steps": 200}}',
    ]
    env = launch_env(tmp_path / "cache")
    Store(store)  # created before the servers and the writer start
    servers = [start([*source, "--store", str(store)], env, cwd=TESTS) for _ in range(2)]
    writer = subprocess.Popen(
        [sys.executable, "-u", str(ROOT / "launch.py"), *pre],
        cwd=TESTS,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        body = {"method": "Saliency", "page_size": 4}
        served = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (served < 6 or Store(store).counts()["explanations"] < 20):
            for s in servers:
                page = requests.post(
                    f"{s.url.split('?')[0].rstrip('/')}/api/v1/examples", json=dict(body, page=served % 5), timeout=60
                )
                assert page.status_code == 200 and all(
                    m["attributions"] for ex in page.json()["examples"] for m in ex["models"]
                )
                served += 1
            assert writer.poll() is None, "precompute ended before it could be killed"
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
    finally:
        if writer.poll() is None:
            writer.kill()
        for s in servers:
            s.stop()
    conn = sqlite3.connect(store / FILE_NAME)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    before = Store(store).counts()["explanations"]
    assert 0 < before < 2 * n + 40  # killed halfway (the servers' Saliency pages are in there too)
    again = run(pre, env, cwd=TESTS, timeout=400)
    assert again.returncode == 0, again.stderr
    assert f"{n} examples:" in again.stdout and " 0 failed" in again.stdout, again.stdout
    counts = Store(store).counts()
    assert counts["explanations"] >= 2 * n and counts["predictions"] >= n
    # Every entry decodes to a whole map of the image's size, finite.
    rows = sqlite3.connect(store / FILE_NAME).execute("SELECT maps FROM explanations").fetchall()
    from insights_app.store.sqlite import decode_maps

    for (blob,) in rows:
        (m,) = decode_maps(blob)
        assert m.shape == (16, 16) and np.isfinite(m).all()
    third = run(pre, env, cwd=TESTS, timeout=400)
    assert f"{n} examples: 0 maps stored, {2 * n} already stored, 0 failed" in third.stdout, third.stdout


def test_the_first_stored_page_neither_probes_the_score_function_nor_hashes_the_model(tmp_path):
    """Issue 29: a restarted server's first stored page paid for the model's fingerprint (every weight
    hashed, the score function probed on the compute thread, whose first torch call started an OpenMP
    team spinning on the second core). The fingerprint is begun when the visualizer is built."""
    import hashlib

    from insights_app.store import fingerprint

    make_visualizer(models=seeded(TinyCNN, seed=0), store=tmp_path).page(PAGE)
    probes: list[str] = []

    def score(out):
        probes.append(threading.current_thread().name)
        return torch.softmax(out, dim=1)

    hashed: list[str] = []
    digest = fingerprint._update_tensor

    def counted(h, t):
        hashed.append(threading.current_thread().name)
        digest(h, t)

    fingerprint._update_tensor = counted
    try:
        vis = make_visualizer(models=seeded(TinyCNN, seed=0), store=tmp_path, score_func=score)
        assert probes == [threading.current_thread().name]  # probed once, where the visualizer is built
        assert vis.engines[0].store.model  # the hashing thread's fingerprint (waited for when not done)
        weights_hashed = len(hashed)
        counter = calls(vis)
        page = vis.page(PAGE)
    finally:
        fingerprint._update_tensor = digest
    assert counter == {"attribute": 0, "forward": 0} and len(page["examples"]) == 6  # all from the store
    assert len(probes) == 1 and set(hashed[:weights_hashed]) == {"insights-app model fingerprint"}
    assert hashed[weights_hashed:] == [vis.engines[0].compute.name] * 6  # the page hashed its 6 examples' inputs
    vis.stop()

    # The same digest as the lazy one it replaces (a store's rows stay found): the weights' bytes by name.
    model = seeded(TinyCNN, seed=0)
    h = hashlib.sha256(b"insights-app model v1")
    h.update(type(model).__qualname__.encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode() + f"{t.dtype}{tuple(t.shape)}".encode() + t.numpy().tobytes())
    h.update("\x00".join(["a", "b"]).encode() + fingerprint.score_kind(score).encode())
    want = h.hexdigest()
    assert fingerprint.model_fingerprint(model, ["a", "b"], score) == want
    assert fingerprint.ModelFingerprint(model, ["a", "b"], score).value() == want


def test_a_failing_fingerprint_fails_where_it_is_needed():
    from insights_app.store.fingerprint import ModelFingerprint

    class Odd(torch.nn.Module):
        def state_dict(self, *a, **k):
            raise RuntimeError("no state")

    fp = ModelFingerprint(Odd(), ["a"], None)
    with pytest.raises(RuntimeError, match="no state"):
        fp.value()
