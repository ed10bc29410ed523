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


class Crash(BaseException):
    """A worker's process ending, in :class:`FakeRay` (no ``except Exception`` stops it)."""


class DyingCNN(TinyCNN):
    """TinyCNN that ends its own process when it meets ``trip`` in a Ray worker: the first time only
    when ``marker`` is given (the file records that it happened), else every time. ``in_process``:
    raise :class:`Crash` instead, in this process too (the workers of :class:`FakeRay` are here)."""

    def __init__(self, trip: torch.Tensor, marker: str | None, in_process: bool = False) -> None:
        super().__init__()
        self.trip = trip  # a plain attribute, not a buffer: the model's weights are TinyCNN's
        self.marker = marker
        self.in_process = in_process
        self.home = os.getpid()  # this process: never here (the local executor's run is the reference)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        armed = self.in_process or os.getpid() != self.home
        if armed and any(torch.equal(row, self.trip) for row in x) and self.first_time():
            if self.in_process:
                raise Crash
            os._exit(1)
        return super().forward(x)

    def first_time(self) -> bool:
        if self.marker is None:
            return True
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return False
        return True


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray instance of 2 CPUs, as :mod:`test_precompute_ray` starts it."""
    ray = pytest.importorskip("ray", reason="the ray executor's tests need Ray (pip install 'insights-app[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def dying(store, marker, in_process=False):
    model = seeded(DyingCNN, digits(N)[0][TRIP], marker, in_process, seed=0)
    return make_visualizer(models=model, dataset=Digits(N), store=store)


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


# ---------------------------------------------------------------------- the same, on a Ray of this process


class FakeRay:
    """The part of Ray the executor uses, its actors computing in this process as each task is sent
    (in order, as an actor does): deterministic and fast, so the driver's handling of a dead actor is
    checked on every run, not only where a Ray instance starts. A :class:`Crash` kills its actor: that
    task and every later one answer ``ActorDiedError``, as Ray's do."""

    class exceptions:  # noqa: N801  (ray.exceptions)
        class RayError(Exception):
            pass

        class RayActorError(RayError):
            pass

        class ActorDiedError(RayActorError):
            pass

    class Ref:
        def __init__(self, value=None, error=None):
            self.value, self.error = value, error

    class Actor:
        def __init__(self, cls, args):
            self.dead = self.crashed = False  # crashed: died of a Crash (not killed)
            self.body = cls(*args)

        def __getattr__(self, name):
            actor = self

            class Method:
                @staticmethod
                def remote(*args):
                    if not actor.dead:
                        try:
                            return FakeRay.Ref(getattr(actor.body, name)(*args))
                        except Crash:
                            actor.dead = actor.crashed = True
                    return FakeRay.Ref(error=FakeRay.exceptions.ActorDiedError("The actor died unexpectedly."))

            return Method

    def __init__(self) -> None:
        self.actors: list[FakeRay.Actor] = []

    def remote(self, cls):
        actors = self.actors

        class ActorClass:
            @staticmethod
            def options(**_):
                return ActorClass

            @staticmethod
            def remote(*args):
                actors.append(FakeRay.Actor(cls, args))
                return actors[-1]

        return ActorClass

    def is_initialized(self):
        return True

    def available_resources(self):
        return {"CPU": 2.0}

    def put(self, value):
        return value

    def wait(self, refs, num_returns=1, timeout=None):
        return list(refs)[:num_returns], list(refs)[num_returns:]

    def get(self, ref, timeout=None):
        if ref.error is not None:
            raise ref.error
        return ref.value

    def kill(self, actor):
        actor.dead = True

    def shutdown(self):
        pass


@pytest.fixture
def fake_ray(monkeypatch):
    ray = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", ray)
    return ray


def test_a_dead_workers_chunk_is_computed_again_by_another(tmp_path, fake_ray):
    """Before: "unexpected ActorDiedError", exit 1, no summary."""
    local = precompute(dying(tmp_path / "local", None), METHODS, ARGUMENTS, progress=False)
    said: list[str] = []
    marker = tmp_path / "died"
    on_fake = precompute(
        dying(tmp_path / "fake", str(marker), in_process=True),
        METHODS,
        ARGUMENTS,
        progress=False,
        executor="ray",
        workers=2,
        report=said.append,
    )
    assert marker.exists() and sum(actor.crashed for actor in fake_ray.actors) == 1
    wanted = N * len(METHODS)
    for summary in (local, on_fake):
        assert (summary.examples, summary.stored, summary.already, summary.failed) == (N, wanted, 0, 0), summary
    assert rows(tmp_path / "fake") == rows(tmp_path / "local")
    assert said == [
        "a Ray worker died (ActorDiedError: The actor died unexpectedly.); its examples 16-31 are computed again, "
        "and a new worker is starting"
    ]
    assert len(fake_ray.actors) == 3  # two, and the replacement


def test_a_chunk_that_kills_two_workers_fails_and_the_run_goes_on(tmp_path, fake_ray):
    on_fake = precompute(
        dying(tmp_path / "fake", None, in_process=True), ["Saliency"], progress=False, executor="ray", workers=2
    )
    assert (on_fake.examples, on_fake.stored, on_fake.already, on_fake.failed) == (N, N - 16, 0, 16), on_fake
    assert on_fake.failures[0].endswith(
        ", Saliency: the Ray worker computing examples 16-31 died 2 times (ActorDiedError: The actor died unexpectedly.)"
    ), on_fake.failures
    assert [f.split(",")[0] for f in on_fake.failures] == [f"example {i}" for i in range(16, 21)]
    assert sum(actor.crashed for actor in fake_ray.actors) == 2 and len(fake_ray.actors) == 4


def test_when_every_worker_is_dead_the_run_stops_with_what_is_stored(tmp_path, fake_ray, monkeypatch):
    from insights_app.errors import ComputationError
    from insights_app.executors import ray_executor

    monkeypatch.setattr(ray_executor, "MAX_ATTEMPTS", 5)  # the chunk is tried until no worker is left
    with pytest.raises(ComputationError, match=r"every Ray worker died \(4 deaths, the last: ActorDiedError"):
        precompute(
            dying(tmp_path / "fake", None, in_process=True), ["Saliency"], progress=False, executor="ray", workers=2
        )
    assert len(fake_ray.actors) == 4


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
