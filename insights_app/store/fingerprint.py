"""What makes a stored result the right one: fingerprints of the model, the example and the software.

A result is looked up by content, never by position or file name alone: the model's
parameters and buffers (and its class names and score function), the example's input bytes,
the method with its canonical arguments and the target, and the versions of captum, torch
and this package. Change any of them and the old result is simply not found (it stays until
pruned), so a store never serves a stale map.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where a fingerprint is made: the command line opens a store before it
    import torch


def _update_tensor(h: hashlib._Hash, t: torch.Tensor) -> None:
    import torch

    from ..tensors import plain

    t = plain(t).detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    # The array itself, not a copy of its bytes (the same digest): half the CPU time for a large model.
    h.update((t.numpy() if t.dtype != torch.bfloat16 else t.float().numpy()).data)


def model_fingerprint(model: torch.nn.Module, classes: Sequence[str], score_func: Callable[..., Any] | None) -> str:
    """A hash of the model's parameters and buffers (by name), its class names and its score function."""
    return _model_digest(model, classes, score_kind(score_func))


def _model_digest(model: torch.nn.Module, classes: Sequence[str], score: str) -> str:
    import torch

    h = hashlib.sha256(b"insights-app model v1")
    h.update(type(model).__qualname__.encode())
    if isinstance(model, torch.nn.Module):
        for name, t in sorted(model.state_dict().items()):
            h.update(name.encode())
            _update_tensor(h, t)
    h.update("\x00".join(classes).encode())
    h.update(score.encode())
    return h.hexdigest()


class ModelFingerprint:
    """A model's :func:`model_fingerprint`, begun when its store is opened (the visualizer is built).

    Made on first use, it was made on the first stored page's path: every weight hashed there
    (resnet50: about 0.25 s) and the score function probed on the model's compute thread, where
    torch's first call started an OpenMP team whose spinning thread took the second core for
    about 10 ms (on two cores, a 64-example page of 16x16 maps: 9 ms of CPU, up to 30 ms of
    wall time). Now the probe runs here, on the thread that builds the visualizer, and the
    weights are hashed on a thread of their own (hashlib releases the GIL); :meth:`value` waits
    for it, so a request that comes first gets the same fingerprint, only later.
    """

    def __init__(self, model: torch.nn.Module, classes: Sequence[str], score_func: Callable[..., Any] | None) -> None:
        self._future: Future[str] = Future()
        score = score_kind(score_func)
        thread = threading.Thread(
            target=self._hash, args=(model, list(classes), score), name="insights-app model fingerprint", daemon=True
        )
        thread.start()

    def _hash(self, model: torch.nn.Module, classes: list[str], score: str) -> None:
        try:
            self._future.set_result(_model_digest(model, classes, score))
        except BaseException as exc:  # raised again by value(), where the fingerprint is needed
            self._future.set_exception(exc)

    def value(self) -> str:
        """The fingerprint (waits for the hashing thread when it is not done)."""
        return self._future.result()


def score_kind(score_func: Callable[..., Any] | None) -> str:
    """A score function by what it computes on a probe (softmax, sigmoid, ...), else by its name."""
    if score_func is None:
        return "none"
    import torch

    probe = torch.linspace(-2.0, 2.0, 12).reshape(3, 4)
    try:
        out = torch.as_tensor(score_func(probe.clone())).float()
    except Exception:
        return f"callable:{getattr(score_func, '__qualname__', type(score_func).__name__)}"
    h = hashlib.sha256()
    h.update(out.numpy().round(6).tobytes())
    return f"probe:{h.hexdigest()[:16]}"


def example_fingerprints(inputs: Sequence[torch.Tensor], additional_args: Any = None) -> list:
    """One hash per row of a batch's display-space inputs (and additional arguments)."""
    import torch

    n = int(inputs[0].shape[0]) if inputs and inputs[0].dim() else 0
    out = []
    for j in range(n):
        h = hashlib.sha256(b"insights-app example v1")
        for x in inputs:
            _update_tensor(h, x[j])
        if additional_args is not None:
            from ..tensors import select_rows

            row = select_rows(additional_args, [j], n)
            for t in row if isinstance(row, (tuple, list)) else (row,):
                if isinstance(t, torch.Tensor):
                    _update_tensor(h, t)
                else:
                    h.update(repr(t).encode())
        out.append(h.hexdigest())
    return out


def software_versions() -> str:
    """captum's, torch's and this package's versions: a result made by other code is another result."""
    import captum
    import torch

    from .. import __version__

    return f"captum {captum.__version__}; torch {torch.__version__}; insights-app {__version__}"
