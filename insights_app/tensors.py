"""Small tensor helpers every layer needs: plain tensors, a model's device, per-example rows of extra args.

The lowest layer of the package: it imports nothing of ours, so the dataset, the adapters
and the engine can all use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def plain(t: Any) -> Any:
    """Strip tensor subclasses (fastai's TensorImage, TensorCategory) so they reach neither captum nor JSON."""
    if isinstance(t, torch.Tensor) and type(t) is not torch.Tensor:
        return t.as_subclass(torch.Tensor)
    return t


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a module's parameters (else its buffers) live; the CPU for anything else."""
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
        for b in model.buffers():
            return b.device
    return torch.device("cpu")


def as_tuple(args: Any) -> Any:
    """Additional forward arguments as the tuple captum expects (None stays None)."""
    if args is None or isinstance(args, tuple):
        return args
    return (args,)


def select_rows(args: Any, index: Sequence[int], batch_size: int) -> Any:
    """The rows ``index`` of additional args whose first dimension is the batch (others as they are)."""
    if args is None:
        return None
    if isinstance(args, torch.Tensor):
        return args[list(index)] if args.dim() > 0 and args.shape[0] == batch_size else args
    if isinstance(args, tuple):
        return tuple(select_rows(a, index, batch_size) for a in args)
    if isinstance(args, list):
        return [select_rows(a, index, batch_size) for a in args]
    return args


def concat_rows(items: list[Any]) -> Any:
    """Per-example additional args (each with a batch of one) -> one batch; other values from the first."""
    first = items[0]
    if isinstance(first, torch.Tensor):
        if first.dim() > 0 and first.shape[0] == 1:
            return torch.cat(items)
        return first
    if isinstance(first, (tuple, list)):
        return type(first)(concat_rows([it[i] for it in items]) for i in range(len(first)))
    return first
