"""A torch model from what a user names on the command line: a weights file or ``module:callable``.

``load_model(spec, arch, n_classes)`` is what ``insights-app --model ... [--arch NAME]`` loads:

- ``module:callable`` (or ``module:attr.path``): imported from the current folder like ``python -m``
  would, and called unless it already is an ``nn.Module``;
- a file: a state dict (bare, or under a usual checkpoint key) for a torchvision architecture named
  by ``arch``, built without pretrained weights (nothing is downloaded) with as many outputs as the
  weights' classifier, or a whole pickled ``nn.Module`` (pickles run code: load files you trust).

Every mistake is an :class:`~data_adapters.errors.AdapterError` with a one-line message, phrased in
the command line's terms (``--model``, ``--arch``, ``--classes``), since the command line is the
caller that cannot show a traceback; weights whose class count disagrees with the class names are a
:class:`~data_adapters.errors.ClassCountError`. torch is imported only when a model loads: the
command line checks ``--model`` with :func:`model_spec` before the slow work.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import AdapterError, ClassCountError

if TYPE_CHECKING:
    from torch import Tensor, nn

__all__ = [
    "SOURCE_NAME",
    "WEIGHT_SUFFIXES",
    "build_arch",
    "check_state_dict",
    "fits",
    "load_model",
    "model_spec",
    "source_name",
    "source_name_of",
]

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
SpecKind = Literal["file", "factory"]
# The attribute load_model sets on the model it returns: what the page calls it unless named (the weights
# file's stem), so that from_folder(path, load_model("pets.pt", "resnet18")) shows "pets", not "ResNet".
SOURCE_NAME = "insights_source_name"


def model_spec(spec: str) -> tuple[SpecKind, Path | str]:
    """``--model`` read as ("file", Path) or ("factory", spec); anything else is a one-line error."""
    path = Path(spec).expanduser()
    if path.is_file():
        return "file", path
    if ":" in spec and path.suffix.lower() not in WEIGHT_SUFFIXES:
        return "factory", spec
    if path.exists():
        raise AdapterError(f"--model: not a file: {spec}")
    if path.suffix or os.sep in spec or "/" in spec:
        raise AdapterError(f"--model: no such file: {spec}")
    raise AdapterError(f"--model {spec!r}: expected a weights file or module:callable (e.g. mymodels:build_model)")


def load_model(spec: str, arch: str | None = None, n_classes: int | None = None) -> nn.Module:
    """The model ``spec`` names: a file (weights for ``arch``, or a pickled module) or ``module:callable``.

    ``n_classes`` (the length of the class list, when given) sizes the architecture; without it, the
    weights' classifier does.
    """
    kind, target = model_spec(spec)
    if kind == "file":
        assert isinstance(target, Path)
        model = model_from_file(target, arch, n_classes)
    else:
        if arch:
            raise AdapterError("--arch goes with a weights file, not with --model module:callable")
        check_importable(spec)  # a typo in the module's name fails before torch is imported
        model = model_from_factory(spec)
    try:
        setattr(model, SOURCE_NAME, source_name(spec))
    except (AttributeError, TypeError):  # a module that refuses new attributes keeps its class's name
        log.debug("cannot record the source name on %s", type(model).__name__)
    return model


def source_name(spec: str) -> str:
    """What a model loaded from ``spec`` is called unless named: the weights file's stem ("pets" for
    pets.pt, whatever its architecture), or the callable's name ("build_model" for mymodels:build_model)."""
    path = Path(spec).expanduser()
    if ":" in spec and path.suffix.lower() not in WEIGHT_SUFFIXES and not path.is_file():
        return spec.rpartition(":")[2].rpartition(".")[2] or spec
    return path.stem or spec


def source_name_of(model: object) -> str | None:
    """The name :func:`load_model` recorded on ``model`` (None for a model built otherwise)."""
    name = getattr(model, SOURCE_NAME, None)
    return name if isinstance(name, str) and name else None


def cwd_importable() -> None:
    """Like ``python -m``: the user's own modules in the current folder can be imported (and unpickled)."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())


def check_importable(spec: str) -> None:
    """The top-level module of ``--model module:callable`` can be found (nothing is imported yet)."""
    import importlib.util

    module_name = spec.partition(":")[0]
    top = module_name.split(".")[0]
    if not top:
        return  # model_from_factory explains
    cwd_importable()
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return  # a name find_spec cannot look up: importing it says why
    if found is None:
        raise AdapterError(
            f"--model: cannot import {module_name!r}: no module named {top!r} (the current folder is importable)"
        )


def model_from_factory(spec: str) -> nn.Module:
    """Import ``module:attr.path`` and call it (or take it, if it already is a module)."""
    import torch

    module_name, _, attr_path = spec.partition(":")
    if not module_name or not attr_path:
        raise AdapterError(f"--model {spec!r}: expected module:callable")
    cwd_importable()
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise AdapterError(f"--model: cannot import {module_name!r}: {exc}") from None
    except Exception as exc:
        raise AdapterError(f"--model: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise AdapterError(f"--model: {module_name!r} has no attribute {attr_path!r}")
        obj = getattr(obj, part)
    if isinstance(obj, torch.nn.Module):
        return obj
    if not callable(obj):
        raise AdapterError(f"--model: {spec} is neither an nn.Module nor callable")
    try:
        model = obj()
    except Exception as exc:
        raise AdapterError(f"--model: {spec}() failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, torch.nn.Module):
        raise AdapterError(f"--model: {spec}() returned {type(model).__name__}, not a torch nn.Module")
    return model


def _strip_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Weights saved from DataParallel / torch.compile carry a 'module.' / '_orig_mod.' prefix."""
    for prefix in ("module.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _output_width(state: dict[str, Tensor]) -> int | None:
    """The class count a state dict was trained for: rows of its last 2-D weight (the classifier)."""
    last = None
    for key, value in state.items():
        if key.endswith("weight") and getattr(value, "dim", lambda: 0)() == 2:
            last = value
    return int(last.shape[0]) if last is not None else None


def build_arch(arch: str, n_classes: int) -> nn.Module:
    """A torchvision architecture by name, without pretrained weights (nothing is downloaded)."""
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if arch not in names:
        close = difflib.get_close_matches(arch, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else " (see torchvision.models.list_models())"
        raise AdapterError(f"--arch: unknown torchvision architecture {arch!r}{hint}")
    try:
        model: nn.Module = torchvision.models.get_model(arch, weights=None, num_classes=n_classes)
    except Exception as exc:
        raise AdapterError(
            f"--arch {arch}: cannot build it with {n_classes} classes: {type(exc).__name__}: {exc}"
        ) from exc
    return model


def _load_file(path: Path) -> Any:
    """What ``path`` holds: tensors only when it can (no code runs), else the whole pickle."""
    import pickle

    import torch

    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: the one-line error says enough
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" not in str(exc).lower():
            raise AdapterError(f"--model: {path} is not a torch file ({_first_line(exc)})") from None
    except Exception as exc:
        raise AdapterError(f"--model: {path} is not a torch file ({type(exc).__name__}: {_first_line(exc)})") from exc
    # A pickle of more than tensors: a whole nn.Module (pickles run code: the user vouches for the file).
    cwd_importable()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=False)
    except pickle.UnpicklingError as exc2:
        raise AdapterError(f"--model: {path} is not a torch file ({_first_line(exc2)})") from None
    except (AttributeError, ImportError) as exc2:
        raise AdapterError(
            f"--model: cannot load {path}: the model's class must be importable from here "
            f"({type(exc2).__name__}: {_first_line(exc2)}); save a state dict and use --arch, or "
            "use --model module:callable"
        ) from exc2
    except Exception as exc2:
        raise AdapterError(f"--model: cannot load {path}: {type(exc2).__name__}: {_first_line(exc2)}") from exc2


def model_from_file(path: Path, arch: str | None, n_classes: int | None) -> nn.Module:
    """Weights for ``arch`` (a state dict, possibly inside a checkpoint dict) or a whole pickled module."""
    import torch

    from .base import state_dict_of

    obj = _load_file(path)
    if isinstance(obj, torch.nn.Module):
        if arch:
            log.info("%s holds a whole model; --arch %s is not needed", path, arch)
        return obj
    state = state_dict_of(obj)
    if state is None:
        raise AdapterError(f"--model: {path} holds neither a state dict nor an nn.Module ({type(obj).__name__})")
    if not arch:
        raise AdapterError(
            f"--model: {path} holds weights only; say which architecture with --arch NAME "
            "(e.g. --arch resnet18), or use --model module:callable"
        )
    state = _strip_prefix(state)
    width = _output_width(state)
    if n_classes is None:
        n_classes = width
    if n_classes is None:
        raise AdapterError(f"--model: cannot tell how many classes {path} was trained for; pass --classes FILE")
    model = build_arch(arch, n_classes)
    try:
        check_state_dict(model, state, f"{path.name} does not fit {arch} with {n_classes} classes")
    except AdapterError:
        if width is not None and width != n_classes and fits(build_arch(arch, width), state):
            # The weights are fine: the class list has the wrong length (said in --classes' terms by the caller).
            raise ClassCountError(
                f"{n_classes} class names but {path.name} was trained for {width} classes", n_classes, width
            ) from None
        raise
    model.load_state_dict(state)
    return model


def fits(model: nn.Module, state: dict[str, Tensor]) -> bool:
    """Whether ``state`` loads into ``model`` (same keys, same shapes)."""
    try:
        check_state_dict(model, state, "")
    except AdapterError:
        return False
    return True


def check_state_dict(model: nn.Module, state: dict[str, Tensor], what: str) -> None:
    """Missing / unexpected keys and shape mismatches, summarised on one line."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches (file vs model)", mismatched),
    ):
        if items:
            shown = ", ".join(items[:3]) + (", ..." if len(items) > 3 else "")
            parts.append(f"{len(items)} {label}: {shown}")
    if parts:
        raise AdapterError(f"--model: {what}: " + "; ".join(parts))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""
