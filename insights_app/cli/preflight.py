"""Checks that need no model, run before the slow work (importing torch, loading weights, scanning).

Files exist and can be read, ``--classes`` parses, the store opens, the port can be bound and the
device exists: the usual mistakes are reported in a fraction of a second, as one line.
"""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CliError

if TYPE_CHECKING:
    from insights_app.store.sqlite import Store


def preflight(args: argparse.Namespace) -> None:
    """Everything that can be checked before the slow work (importing torch, loading weights, scanning).

    Files exist and can be read, ``--model`` names a file or ``module:callable``, ``--classes``
    parses, and the port can be bound on ``--host``: a mistake there is reported in a fraction of a
    second instead of after the model has loaded. (Whether the module imports is asked first thing
    when the model loads, before torch: parsing the arguments imports nothing of the user's.) The checks are repeated where the work happens
    (a file can vanish, a port be taken meanwhile); these only make the usual mistakes fast.
    """
    if args.learner:
        check_readable(check_file(args.learner, "--learner"), "--learner")
    if args.data is not None:
        check_dir(args.data, "--data")
    if args.model:
        from data_adapters.errors import AdapterError
        from data_adapters.weights import model_spec

        try:
            kind, target = model_spec(args.model)
        except AdapterError as exc:
            raise CliError(str(exc)) from None
        if kind == "file":
            check_readable(Path(target), "--model")
        elif args.arch:
            raise CliError("--arch goes with a weights file, not with --model module:callable")
    args.class_names = parse_classes(args.classes) if args.classes else None
    if args.demo == "text":
        from .build import text_demo_module

        text_demo_module()
    if args.labels and args.labels.lower().endswith(".csv"):
        csv_path = Path(args.labels).expanduser()
        if not csv_path.is_file():
            csv_path = Path(args.data).expanduser() / csv_path
        if not csv_path.is_file():
            raise CliError(f"--labels: CSV file not found: {args.labels}")
        check_readable(csv_path, "--labels")
    if args.store is not None:
        args.results_store = open_store(args.store)
    if getattr(args, "command", "serve") == "serve":
        check_port(args.host, args.port)
    if getattr(args, "executor", None) == "ray" and getattr(args, "ray_address", None):
        check_ray_address(args.ray_address)


def check_ray_address(address: str) -> None:
    """``--ray-address`` answers as a Ray cluster does, checked within seconds: joining an address where
    nothing answers would retry for about ten minutes (Ray's own retries)."""
    from insights_app.executors.ray_address import probe

    problem = probe(address)
    if problem:
        raise CliError(f"--ray-address {address}: {problem}")


def check_readable(path: Path, flag: str) -> None:
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise CliError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None


def parse_classes(spec: str) -> list[str] | None:
    """``--classes``: a file (one name per line, or JSON), or names separated by commas (``cat,dog``)."""
    from data_adapters.classes import read_classes
    from data_adapters.errors import AdapterError

    path = Path(spec).expanduser()
    if not path.exists() and "," in spec:
        names = [name.strip() for name in spec.split(",")]
        if not all(names):
            raise CliError(f"--classes {spec!r}: an empty class name (give names separated by commas, or a file)")
        return names
    check_file(spec, "--classes")
    try:
        return read_classes(path)
    except AdapterError as exc:
        raise CliError(f"--classes: {exc}") from None


def check_port(host: str, port: int) -> None:
    """Bind ``host:port`` and let it go, as waitress will bind it (every address, SO_REUSEADDR)."""
    try:
        addresses = socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, socket.IPPROTO_TCP, socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise CliError(
            f"--host {host}: not an address of this machine ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    seen = set()
    for family, kind, proto, _, address in addresses:
        if (family, address[:2]) in seen:
            continue
        seen.add((family, address[:2]))
        with socket.socket(family, kind, proto) as probe:
            if family == getattr(socket, "AF_INET6", None) and hasattr(socket, "IPV6_V6ONLY"):
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if os.name != "nt":  # waitress's setting; on Windows it would let two servers share a port
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise port_error(exc, host, port) from None


def port_error(exc: OSError, host: str, port: int) -> CliError:
    """The one-line message for a port that cannot be bound (at the early check and when serving)."""
    if exc.errno in (98, 48, 10048) or "in use" in str(exc).lower():
        return CliError(f"port {port} on {host} is already in use; pick another with --port (--port 0: any free port)")
    return CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def check_file(path: str, flag: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise CliError(f"{flag}: no such file: {path}")
    if not p.is_file():
        raise CliError(f"{flag}: not a file: {path}")
    return p


def check_out(out: str, flag: str = "--out") -> None:
    """The file ``out`` can be written where it is named: its folder exists, and it is not a folder itself
    (found before the work, not after it)."""
    path = Path(out).expanduser()
    if path.is_dir():
        raise CliError(f"{flag} {out}: is a folder; name the file to write")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise CliError(f"{flag}: no such folder: {parent}")
    if not os.access(parent, os.W_OK):
        raise CliError(f"{flag}: cannot write in {parent}")


def check_dir(path: str, flag: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise CliError(f"{flag}: no such folder: {path}")
    if not p.is_dir():
        raise CliError(f"{flag}: not a folder: {path}")
    return p


def parse_device(spec: str | None) -> str | None:
    """``--device`` checked against this machine (a typo or a missing GPU is a usage error)."""
    if spec is None:
        return None
    import torch

    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise CliError(f"--device: unknown device {spec!r} (use cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CliError(f"--device {spec}: CUDA is not available on this machine (torch {torch.__version__})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CliError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise CliError(f"--device {spec}: MPS is not available on this machine")
    elif device.type != "cpu":
        raise CliError(f"--device: unsupported device type {device.type!r} (use cpu, cuda, cuda:N or mps)")
    elif device.index not in (None, 0):
        raise CliError(f"--device {spec}: there is one CPU device; use cpu")
    return str(device)


def open_store(directory: str) -> Store:
    """The --store directory's store, opened before the slow work (a foreign or damaged file is refused)."""
    from insights_app.errors import StoreError
    from insights_app.store.sqlite import Store

    try:
        return Store(directory)
    except StoreError as exc:
        raise CliError(f"--store: {exc}") from None
