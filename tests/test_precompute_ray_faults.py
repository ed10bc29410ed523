"""Faults on the ray executor's path: a worker that dies mid-run, an address where no cluster answers.

A worker dies as a crash, ``kill -9`` or the OOM killer would end it: the test model ends its own
process (``os._exit``) when it meets one given example in a Ray worker (never in this process,
so the local executor's run of the same model is the reference). The dead worker's chunk is
computed again by the others, or fails alone when it kills every worker it is sent to; either
way the run ends with its summary. Joining an address where nothing answers is one error within
seconds, where ``ray.init`` alone retries for about ten minutes. The Ray tests start a local
instance of 2 CPUs (``ray.init(num_cpus=2)``), as :mod:`test_precompute_ray` does; the address tests
contact 127.0.0.1 only.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest
import torch
from reliability_helpers import Digits, digits, make_visualizer
from test_precompute_ray import ARGUMENTS, METHODS, TESTS, N, rows

from insights_app.executors.ray_address import host_and_port, probe
from insights_app.precompute import precompute
from insights_app.testing import TinyCNN, seeded

TRIP = 20  # the example that kills a worker: in the second chunk (examples 16-31) of N = 40


class DyingCNN(TinyCNN):
    """TinyCNN that ends its own process when it meets ``trip`` in a Ray worker: the first time only
    when ``marker`` is given (the file records that it happened), else every time."""

    def __init__(self, trip: torch.Tensor, marker: str | None) -> None:
        super().__init__()
        self.trip = trip  # a plain attribute, not a buffer: the model's weights are TinyCNN's
        self.marker = marker
        self.home = os.getpid()  # this process: never here (the local executor's run is the reference)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if os.getpid() != self.home and any(torch.equal(row, self.trip) for row in x):
            if self.marker is None:
                os._exit(1)
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                os._exit(1)
        return super().forward(x)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray instance of 2 CPUs, as :mod:`test_precompute_ray` starts it."""
    ray = pytest.importorskip("ray", reason="the ray executor's tests need Ray (pip install 'insights-app[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def dying(store, marker):
    return make_visualizer(models=seeded(DyingCNN, digits(N)[0][TRIP], marker, seed=0), dataset=Digits(N), store=store)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_worker_that_dies_mid_run_costs_only_a_recomputed_chunk(tmp_path, ray_cluster):
    """Before: "unexpected ActorDiedError", no summary, the run's other chunks lost. Now: the dead
    worker's chunk is computed again and the store ends exactly as the local executor leaves it."""
    marker = tmp_path / "died"
    local = precompute(dying(tmp_path / "local", str(marker)), METHODS, ARGUMENTS, progress=False)
    said: list[str] = []
    on_ray = precompute(
        dying(tmp_path / "ray", str(marker)),
        METHODS,
        ARGUMENTS,
        progress=False,
        executor="ray",
        workers=2,
        report=said.append,
    )
    assert marker.exists(), "no worker died: the test proves nothing"
    wanted = N * len(METHODS)
    for summary in (local, on_ray):
        assert (summary.examples, summary.stored, summary.already, summary.failed) == (N, wanted, 0, 0), summary
    assert rows(tmp_path / "ray") == rows(tmp_path / "local")
    deaths = [line for line in said if "died" in line]
    assert len(deaths) == 1 and deaths[0].startswith("a Ray worker died (ActorDiedError"), said
    assert "16-31" in deaths[0] and "computed again" in deaths[0], deaths


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_chunk_that_kills_every_worker_it_meets_fails_alone(tmp_path, ray_cluster):
    """A crash on an example, every time: its chunk is tried on two workers, then its maps are
    failures (listed); every other chunk is stored as the local executor stores it; the run ends."""
    local = precompute(dying(tmp_path / "local", None), ["Saliency"], progress=False)
    said: list[str] = []
    on_ray = precompute(
        dying(tmp_path / "ray", None), ["Saliency"], progress=False, executor="ray", workers=2, report=said.append
    )
    assert (local.examples, local.stored, local.failed) == (N, N, 0)
    assert (on_ray.examples, on_ray.stored, on_ray.already, on_ray.failed) == (N, N - 16, 0, 16), on_ray
    assert len(on_ray.failures) == 5, on_ray.failures
    for line in on_ray.failures:
        assert "the Ray worker computing examples 16-31 died 2 times (ActorDiedError" in line, line
    assert [f.split(",")[0] for f in on_ray.failures] == [f"example {i}" for i in range(16, 21)]
    assert sum("a Ray worker died" in line for line in said) == 2, said
    want_maps, want_predictions = rows(tmp_path / "local")
    got_maps, got_predictions = rows(tmp_path / "ray")
    assert len(got_maps) == N - 16 and set(got_maps) <= set(want_maps)
    assert len(got_predictions) == N - 16 and set(got_predictions) <= set(want_predictions)


# ---------------------------------------------------------------------- an address where no cluster answers


def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A socket of 127.0.0.1 that accepts connections (the kernel does) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        yield s


def test_addresses_are_read_as_ray_reads_them():
    assert host_and_port("127.0.0.1:1") == ("127.0.0.1", 1)
    assert host_and_port("head") == ("head", 6379)
    assert host_and_port("ray://head") == ("head", 10001)
    assert host_and_port("ray://10.0.0.5:10002") == ("10.0.0.5", 10002)
    assert host_and_port("[::1]:6380") == ("::1", 6380)
    assert host_and_port("::1") == ("::1", 6379)
    for resolved_by_ray in ("auto", "local", "", "anyscale://cluster"):
        assert host_and_port(resolved_by_ray) is None


def test_the_probe_names_what_is_wrong_within_its_timeout(listener):
    port = closed_port()
    assert probe(f"127.0.0.1:{port}") == (
        "nothing accepts connections there (connection refused): is the cluster running (ray start --head)?"
    )
    assert probe("127.0.0.1:70000") == "70000 is not a port number"
    started = time.monotonic()
    silent = probe(f"127.0.0.1:{listener.getsockname()[1]}", timeout=0.5)
    assert time.monotonic() - started < 5
    assert silent == "something accepts connections there but gave no gRPC answer within 0.5 s: not a Ray cluster"

    with socket.socket() as http:  # a server that answers, but not in HTTP/2
        http.bind(("127.0.0.1", 0))
        http.listen(1)

        def answer_http() -> None:
            conn, _ = http.accept()
            with conn:
                conn.recv(64)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        server = threading.Thread(target=answer_http, daemon=True)
        server.start()
        assert probe(f"127.0.0.1:{http.getsockname()[1]}", timeout=5) == (
            "something answers there, but not as a Ray cluster does (no gRPC)"
        )
        server.join(5)


PYTHON_API = """
import sys, time
sys.path.insert(0, {tests!r})
from reliability_helpers import Digits, make_visualizer
from insights_app.errors import ValidationError
from insights_app.precompute import precompute
vis = make_visualizer(dataset=Digits(8), store={store!r})
started = time.monotonic()
try:
    precompute(vis, ["Saliency"], progress=False, executor="ray", ray_address={address!r})
except ValidationError as exc:
    print(f"{{time.monotonic() - started:.1f}}")
    print(exc)
"""


@pytest.mark.timeout(120)
def test_joining_an_address_where_nothing_answers_is_an_error_within_seconds(tmp_path):
    """Before: ``ray.init`` retried for about ten minutes (580 s and counting, SIGTERM held off)."""
    pytest.importorskip("ray", reason="the ray executor's tests need Ray")
    address = f"127.0.0.1:{closed_port()}"
    code = PYTHON_API.format(tests=str(TESTS), store=str(tmp_path / "store"), address=address)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2, done.stderr[-2000:]
    assert float(lines[0]) < 30
    assert lines[1] == (
        f"ray_address: cannot join the Ray cluster at {address}: nothing accepts connections there "
        "(connection refused): is the cluster running (ray start --head)?"
    )


@pytest.mark.timeout(120)
def test_the_command_line_refuses_an_address_where_nothing_answers_in_one_line(tmp_path):
    from launch_helpers import launch_env

    from insights_app.demos.digits import write_digit_images

    pytest.importorskip("ray", reason="the ray executor's tests need Ray")
    write_digit_images(tmp_path / "digits", size=16, valid_fraction=0.05, limit=90)
    address = f"127.0.0.1:{closed_port()}"
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
        "--ray-address",
        address,
    ]
    code = f"import sys, launch; sys.exit(launch.main({argv!r}))"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=TESTS,
        env=launch_env(tmp_path / "cache"),
    )
    assert time.monotonic() - started < 30
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        f"insights-app: error: --ray-address {address}: nothing accepts connections there (connection refused): "
        "is the cluster running (ray start --head)?"
    ]
    assert done.stdout == ""


def test_the_probe_imports_neither_ray_nor_torch():
    """The command line checks --ray-address before loading the model (and torch)."""
    code = textwrap.dedent("""
        import sys
        from insights_app.cli.preflight import check_ray_address
        from insights_app.cli.errors import CliError
        try:
            check_ray_address("127.0.0.1:1")
        except CliError:
            pass
        print(sorted(m for m in ("ray", "torch") if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr[-2000:]
