"""What makes a stored result the right one: fingerprints of the model, the example and the software.

A result is looked up by content, never by position or file name alone: the model's
parameters and buffers (and its class names and score function), the example's input bytes,
the method with its canonical arguments and the target, and the versions of captum, torch
and this package. Change any of them and the old result is simply not found (it stays until
pruned), so a store never serves a stale map.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where a fingerprint is made: the command line opens a store before it
    import torch


def _update_tensor(h: hashlib._Hash, t: torch.Tensor) -> None:
    import torch

    from ..tensors import plain

    t = plain(t).detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())


def model_fingerprint(model: torch.nn.Module, classes: Sequence[str], score_func: Callable[..., Any] | None) -> str:
    """A hash of the model's parameters and buffers (by name), its class names and its score function."""
    import torch

    h = hashlib.sha256(b"insights-app model v1")
    h.update(type(model).__qualname__.encode())
    if isinstance(model, torch.nn.Module):
        for name, t in sorted(model.state_dict().items()):
            h.update(name.encode())
            _update_tensor(h, t)
    h.update("\x00".join(classes).encode())
    h.update(score_kind(score_func).encode())
    return h.hexdigest()


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
