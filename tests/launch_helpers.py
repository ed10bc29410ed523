"""Helpers for tests that start real servers: the launcher as a subprocess, ports, HTTP, small models."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from torch import nn

from insights_app.testing import DigitsNet, seeded

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
URL_RE = re.compile(r"running at (http://127\.0\.0\.1:\d+/\S*)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers (any status), the process dies, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process exited with {process.returncode} before {url} answered")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@dataclass
class Launched:
    """A running ``launch.py``: its process, the URL it printed, and everything it printed."""

    process: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    url: str | None = None
    seconds_to_url: float | None = None

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def base(self) -> str:
        assert self.url
        return self.url.split("?", 1)[0]

    def wait_for(self, text: str, timeout: float = 60) -> bool:
        """Wait until the process printed ``text`` (True) or ``timeout`` passed / it exited (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return True
            if self.process.poll() is not None:
                time.sleep(0.2)  # let the reader thread drain the pipe
                return text in self.output
            time.sleep(0.1)
        return False

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def launch_env(cache: Path, **extra: str) -> dict[str, str]:
    """The environment of a launched server: its own cache folder, and no browser unless asked."""
    env = {k: v for k, v in os.environ.items() if k != "BROWSER"}
    env.update(INSIGHTS_APP_CACHE=str(cache), PYTHONUNBUFFERED="1", **extra)
    return env


def start(args: Sequence[str], env: dict[str, str], cwd: Path = ROOT, timeout: float = 180) -> Launched:
    """Start ``python launch.py ARGS`` and return once it printed its URL (or fail with its output)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-u", str(ROOT / "launch.py"), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    launched = Launched(proc)
    found = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            launched.lines.append(line)
            m = URL_RE.search(line)
            if m and launched.url is None:
                launched.url = m.group(1)
                launched.seconds_to_url = time.monotonic() - t0
                found.set()
        found.set()

    threading.Thread(target=read, daemon=True).start()
    found.wait(timeout)
    if launched.url is None:
        launched.stop()
        raise AssertionError(f"launch.py {' '.join(args)} printed no URL within {timeout}s:\n{launched.output[-4000:]}")
    return launched


def run(
    args: Sequence[str], env: dict[str, str], cwd: Path = ROOT, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run ``python launch.py ARGS`` to completion (for arguments that must fail)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def get_config(launched: Launched, token: str | None = None) -> dict[str, Any]:
    params = {"token": token} if token else None
    r = requests.get(launched.base + "api/v1/config", params=params, timeout=30)
    r.raise_for_status()
    return r.json()


def post_examples(launched: Launched, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    params = {"token": token} if token else None
    r = requests.post(launched.base + "api/v1/examples", json=dict(body, stream=False), params=params, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------------- models for --model


def digits_net() -> nn.Module:
    """The factory passed as ``--model launch_helpers:digits_net`` (what a user's own model module holds)."""
    return seeded(DigitsNet, 10)


def not_a_model() -> str:
    return "a string, not a torch module"


def slow_net() -> nn.Module:
    """``--model launch_helpers:slow_net``: every forward pass sleeps a second (a page keeps computing)."""
    from insights_app.testing import SlowNet

    return seeded(SlowNet, 1.0)


def busy_net() -> nn.Module:
    """``--model launch_helpers:busy_net``: wide convolutions at full resolution (the CPU stays busy in torch)."""
    from insights_app.testing import ConvNet

    return seeded(ConvNet, 3, 10, ((48, None), (48, "avg4")))


def rgb_net() -> nn.Module:
    """``--model launch_helpers:rgb_net``: a small RGB-only CNN (its first convolution takes 3 channels)."""
    from insights_app.testing import ConvNet

    return seeded(ConvNet, 3, 10)
