"""insights-app: serve the Insights web app for a model from the command line.

    insights-app                                        the demo (a fastai CNN on digits)
    insights-app --demo tabular                         the tabular demo (a fastai tabular learner)
    insights-app --learner export.pkl --data images/    an exported fastai learner on new images
    insights-app --model mymodels:build --data images/  a torch model (a factory) on an image folder
    insights-app --model weights.pt --arch resnet18 --data images/ --classes classes.txt
    insights-app precompute --model ... --data images/ --store runs/ --methods IntegratedGradients
    insights-app export --model ... --data images/ --format html --out report.html
    insights-app method-report --model ... --data images/ --sample 64
    insights-app prune --store runs/ --max-size 2G

Flags map onto ``data_adapters`` (nothing is re-implemented here); every user mistake
(a missing file, an unknown architecture, weights that do not fit) is one line on stderr
and exit status 2, never a traceback (``--debug`` shows them).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from insights_app.access import is_loopback
from insights_app.limits import MAX_RESIZE_SIDE

PROG = "insights-app"
EXIT_USAGE = 2
STOP_TIMEOUT_S = 10.0  # what stopping waits for running computations
log = logging.getLogger("insights_app.launch")
Say = Callable[[str], None]


class CliError(Exception):
    """A mistake the user can fix: printed as one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line (the usage text is in --help)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{message} (see {PROG} --help)")


def say(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------------- arguments


def build_parser(command: str = "serve") -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=PROG if command == "serve" else f"{PROG} {command}",
        description="Explore a classifier's predictions and captum attributions in the browser.\n"
        "With no source flags: the demo (a small fastai CNN on scikit-learn's digits,\n"
        "trained once in a few seconds, then cached).",
        epilog="Examples:\n"
        f"  {PROG}\n"
        f"  {PROG} --demo tabular\n"
        f"  {PROG} --learner export.pkl --data new_images/\n"
        f"  {PROG} --model mymodels:build_model --data images/ --size 224 --mean 0.485 0.456 0.406 "
        "--std 0.229 0.224 0.225\n"
        f"  {PROG} --model weights.pt --arch resnet18 --data images/ --classes classes.txt --size 224\n"
        "The demo's cache: $INSIGHTS_APP_CACHE, else $XDG_CACHE_HOME/insights-app or ~/.cache/insights-app.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("what to show (default: the demo)")
    src.add_argument(
        "--demo",
        metavar="NAME",
        choices=tuple(DEMOS),
        default=None,
        help="which demo: digits (default: a fastai CNN on scikit-learn's digits), tabular (a fastai "
        "tabular learner on scikit-learn's breast cancer data), text; each is trained once, then cached",
    )
    src.add_argument(
        "--learner",
        metavar="EXPORT.pkl",
        help="a fastai learner saved with learn.export() (a pickle: load only files you trust)",
    )
    src.add_argument(
        "--valid",
        action="store_true",
        help="with --learner: its own validation set (only if the "
        "file kept its data; an exported learner does not, so give --data)",
    )
    src.add_argument(
        "--model",
        metavar="MODULE:CALLABLE | FILE.pt",
        help="a torch model: a module-level callable "
        "returning an nn.Module (the current folder is importable), or a weights file (state dict "
        "with --arch, or a whole pickled nn.Module)",
    )
    src.add_argument(
        "--arch",
        metavar="NAME",
        help="with --model FILE.pt: a torchvision architecture "
        "(resnet18, mobilenet_v3_small, ...) built without pretrained weights",
    )
    src.add_argument("--data", metavar="FOLDER", help="a folder of images (searched recursively)")

    data = p.add_argument_group("images (with --data)")
    data.add_argument(
        "--labels",
        metavar="SPEC",
        default=None,
        help="where labels come from: 'subfolders' "
        "(default: data/<class>/img.png), 'none', a regex matched in file names (its first group "
        "or (?P<label>...)), or a CSV of file,label rows. With --learner only 'none' (fastai "
        "labels the files itself)",
    )
    data.add_argument(
        "--classes",
        metavar="FILE | A,B,C",
        help="class names in the model's output order: a file "
        "(one per line, or a JSON list) or a comma-separated list (default: the sorted label names, "
        "or the learner's vocab). Images whose label is not a class are shown unlabeled",
    )
    data.add_argument(
        "--size",
        metavar="N",
        nargs="+",
        type=int,
        help="resize images to N x N, or H W (default: the first image's size)",
    )
    data.add_argument(
        "--mean",
        metavar="M",
        nargs="+",
        type=float,
        help="per-channel normalization mean the model expects, e.g. 0.485 0.456 0.406 (with --std)",
    )
    data.add_argument("--std", metavar="S", nargs="+", type=float, help="per-channel normalization std")
    data.add_argument(
        "--channels", type=int, choices=(1, 3), default=3, help="read images as RGB (3, default) or grayscale (1)"
    )
    data.add_argument(
        "--resize",
        choices=("squish", "crop"),
        default="squish",
        help="how --size is reached: stretch (default) or scale and centre-crop",
    )
    data.add_argument(
        "--score",
        choices=("softmax", "sigmoid", "none"),
        default="softmax",
        help="with --model: turns outputs into the probabilities shown (default softmax; sigmoid for multi-label)",
    )

    srv = p.add_argument_group("server")
    srv.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine "
        "only); any other address requires a token, generated when not given",
    )
    srv.add_argument("--port", type=int, default=0, help="port (default 0: any free port; the URL is printed)")
    srv.add_argument("--token", default=None, help="require this token (the printed URL carries it)")
    srv.add_argument(
        "--device",
        default=None,
        help="where the model runs: cpu, cuda, cuda:1, mps (default: where the model is; the CPU for loaded files)",
    )
    srv.add_argument("--open", action="store_true", help="open the page in a web browser")
    srv.add_argument("--title", default=None, help="the page title")
    srv.add_argument(
        "--store",
        default=None,
        metavar="DIR",
        help="keep predictions and maps in this directory (an SQLite store, created if missing): a "
        "restart serves what was computed at once; results are keyed by the model's weights, "
        "the image's content, the method and its arguments, so a change is never served stale",
    )
    srv.add_argument("--debug", action="store_true", help="debug logging and full tracebacks")
    if command == "precompute":
        pre = p.add_argument_group("precompute (insights-app precompute ... --store DIR)")
        pre.add_argument(
            "--methods",
            required=True,
            metavar="NAME[,NAME...]",
            help="the methods whose maps to compute, e.g. IntegratedGradients,Saliency",
        )
        pre.add_argument(
            "--arguments",
            metavar="JSON",
            default=None,
            help='per method, e.g. \'{"IntegratedGradients": {"n_steps": 16}}\' (default: each method\'s defaults)',
        )
        pre.add_argument(
            "--targets",
            choices=("top1", "label"),
            default="top1",
            help="attribute to each model's top prediction (default) or to the true label",
        )
        pre.add_argument("--limit", type=int, default=None, metavar="N", help="the first N examples only")
        pre.add_argument(
            "--executor",
            choices=("local", "ray"),
            default="local",
            help="who computes: this process (local, default) or Ray actors (ray: needs the ray extra, "
            'pip install "insights-app[ray]"); this process alone writes the store',
        )
        pre.add_argument(
            "--ray-address",
            metavar="ADDRESS",
            default=None,
            help="with --executor ray: the cluster to join: auto (the one `ray start` started on this "
            "machine) or HEAD:6379 (default: a local Ray instance, stopped at the end)",
        )
        pre.add_argument(
            "--workers",
            type=int,
            default=None,
            metavar="N",
            help="with --executor ray: N actors (default: one per CPU slot, or one per GPU for a model on CUDA)",
        )
    if command == "method-report":
        from insights_app.metrics.options import REPORT_METHODS

        rep = p.add_argument_group("method-report (insights-app method-report ... --sample 64)")
        rep.add_argument(
            "--methods",
            default=None,
            metavar="NAME[,NAME...]",
            help="the methods to judge (default: " + ", ".join(REPORT_METHODS) + ")",
        )
        rep.add_argument(
            "--arguments",
            metavar="JSON",
            default=None,
            help='per method, e.g. \'{"IntegratedGradients": {"n_steps": 16}}\'',
        )
        rep.add_argument(
            "--metrics",
            default="deletion,insertion,infidelity,sensitivity",
            metavar="NAME[,NAME...]",
            help="the metrics (default: all four)",
        )
        rep.add_argument(
            "--sample", type=int, default=64, metavar="N", help="examples, spread evenly over the dataset (default 64)"
        )
        rep.add_argument(
            "--sanity",
            type=int,
            default=8,
            metavar="N",
            help="examples of the sample the model-randomization check runs on (default 8; 0: none)",
        )
        rep.add_argument(
            "--out",
            default=None,
            metavar="PATH",
            help="also write the report there (.md: the table; .json: every figure)",
        )
    if command == "export":
        ex = p.add_argument_group("export (insights-app export ... --format F --out PATH)")
        ex.add_argument(
            "--format",
            required=True,
            choices=("csv", "npz", "html"),
            help="csv: every example's label, top-k, confidence and loss; npz: the raw maps; html: a "
            "self-contained report (images inline)",
        )
        ex.add_argument("--out", required=True, metavar="PATH", help="the file to write")
        ex.add_argument("--method", default=None, help="npz, html: the method of the maps (default: the app's)")
        ex.add_argument("--arguments", metavar="JSON", default=None, help="npz, html: the method's arguments")
        ex.add_argument(
            "--filter",
            metavar="JSON",
            default=None,
            help='npz, html: which examples, as the page filters them, e.g. \'{"prediction": '
            '"incorrect", "order": "loss"}\'',
        )
        ex.add_argument(
            "--limit", type=int, default=None, metavar="N", help="npz, html: at most N examples (html default 100)"
        )
        ex.add_argument(
            "--metrics",
            default=None,
            metavar="NAME[,NAME...]",
            help="html: each map's quality metrics (deletion, insertion, infidelity, sensitivity)",
        )
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv[:1] in (["precompute"], ["export"], ["method-report"]) else "serve"
    args = build_parser(command).parse_args(argv[1:] if command != "serve" else argv)
    args.command = command
    if command == "export":
        args.body = export_body(args)
    if command == "precompute":
        if args.store is None:
            raise CliError("precompute needs --store DIR (where the maps are kept)")
        args.method_names = [m.strip() for m in args.methods.split(",") if m.strip()]
        if not args.method_names:
            raise CliError("--methods names no method")
        if args.limit is not None and args.limit < 1:
            raise CliError("--limit must be at least 1")
    if args.learner and args.model:
        raise CliError("give --learner or --model, not both")
    if args.demo and (args.learner or args.model):
        raise CliError("--demo goes without --learner and --model (a demo brings its own model and data)")
    if args.valid and not args.learner:
        raise CliError("--valid goes with --learner (a learner's own validation set)")
    if args.valid and args.data:
        raise CliError("give --data or --valid, not both")
    if args.arch and not args.model:
        raise CliError("--arch goes with --model FILE.pt (the weights of that architecture)")
    if args.data is not None and not (args.learner or args.model):
        raise CliError("--data needs a model: add --learner EXPORT.pkl or --model ...")
    if args.model and args.data is None:
        raise CliError("--model needs --data FOLDER (the images to show)")
    demo = not (args.learner or args.model)
    image_flags = [
        f
        for f, v in (
            ("--size", args.size),
            ("--mean", args.mean),
            ("--std", args.std),
            ("--channels", args.channels != 3),
            ("--resize", args.resize != "squish"),
            ("--score", args.score != "softmax"),
        )
        if v
    ]
    if image_flags and not args.model:
        what = "a learner brings its own transforms" if args.learner else "the demo has its own data"
        raise CliError(f"{', '.join(image_flags)} only apply to --model ({what})")
    if demo and (args.labels is not None or args.classes):
        raise CliError("--labels and --classes go with --model or --learner")
    if args.learner and args.labels not in (None, "none"):
        raise CliError("with --learner, fastai labels the images itself; --labels accepts only 'none' there")
    if args.size is not None and len(args.size) not in (1, 2):
        raise CliError("--size takes N or H W")
    if args.size is not None and min(args.size) < 1:
        raise CliError("--size must be positive")
    if (args.mean is None) != (args.std is None):
        raise CliError("give --mean and --std together")
    if args.mean is not None and len(args.mean) != len(args.std):
        raise CliError(f"--mean has {len(args.mean)} values but --std has {len(args.std)}")
    for flag, values in (("--mean", args.mean), ("--std", args.std)):
        bad = [v for v in values or () if not math.isfinite(v) or (flag == "--std" and v == 0)]
        if bad:
            raise CliError(
                f"{flag} must be {'finite' if flag == '--mean' else 'finite and non-zero'} numbers, not {bad[0]:g}"
            )
    if args.size is not None and max(args.size) > MAX_RESIZE_SIDE:
        raise CliError(
            f"--size must be at most {MAX_RESIZE_SIDE} (the model computes at that size; "
            "images are shown at most 512 px wide anyway)"
        )
    if args.token == "" and not is_loopback(args.host):
        raise CliError(
            f"--host {args.host} serves other machines, so it needs a token: leave out --token "
            "(one is generated and printed) or pass --token SECRET"
        )
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be between 0 and 65535, not {args.port}")
    preflight(args)
    args.device = parse_device(args.device)
    return args


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
            check_readable(target, "--model")
        elif args.arch:
            raise CliError("--arch goes with a weights file, not with --model module:callable")
    args.class_names = parse_classes(args.classes) if args.classes else None
    if args.demo == "text":
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


def check_readable(path: Path, flag: str) -> None:
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise CliError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None


def parse_classes(spec: str) -> list:
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
        names = read_classes(path)
    except AdapterError as exc:
        raise CliError(f"--classes: {exc}") from None
    return names


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


# ---------------------------------------------------------------------- sources


def visualizer_from_model(args: argparse.Namespace, out: Say, note: Say | None = None) -> Any:
    from data_adapters.errors import ChannelsError, ClassCountError
    from data_adapters.folder import source_from_folder
    from data_adapters.weights import load_model

    note = note or say_note
    classes = args.class_names
    labels = "subfolders" if args.labels is None else args.labels
    out(f"loading the model {args.model}" + (f" ({args.arch})" if args.arch else ""))
    try:
        model = load_model(args.model, args.arch, len(classes) if classes else None)
        out(f"scanning {args.data} for images ...")
        source = source_from_folder(
            args.data,
            model,
            classes,
            labels,
            size=args.size,
            mean=args.mean,
            std=args.std,
            channels=args.channels,
            resize=args.resize,
            score=None if args.score == "none" else args.score,
            device=args.device,
            name=args.arch or Path(args.model.split(":")[-1]).stem,
        )
    except ClassCountError as exc:
        raise CliError(class_count_message(args, exc)) from exc
    except ChannelsError as exc:
        raise CliError(channels_message(args, exc.expected, exc.got)) from exc
    info = source.info
    out(
        f"found {info.get('files', '?')} images ({info.get('labeled', 0)} labeled) in {args.data}; "
        f"{len(source.classes)} classes"
    )
    if info.get("classes_from") == "labels":
        note(
            f"{len(source.classes)} classes, {classes_origin(args)}: {names_preview(source.classes)}. "
            "A model trained with another class order needs --classes (its class names in output order)"
        )
    return source.visualizer(**visualizer_kwargs(args, f"Insights: {Path(args.data).name}"))


def say_note(message: str) -> None:
    """A note on standard error: something the user should know at start-up but need not fix."""
    print(f"{PROG}: note: {message}", file=sys.stderr, flush=True)


def names_preview(names: Sequence[str], shown: int = 10) -> str:
    """The first ``shown`` class names, then how many there are in all."""
    text = ", ".join(names[:shown])
    return text + (f", ... ({len(names)} in all)" if len(names) > shown else "")


def classes_origin(args: argparse.Namespace) -> str:
    """Where class names come from when ``--classes`` is not given (the sorted labels found)."""
    from data_adapters.folder import SUBFOLDER_LABELS

    labels = args.labels or "subfolders"
    if labels.lower() in SUBFOLDER_LABELS:
        return f"the sorted sub-folder names of {args.data}"
    if labels.lower().endswith(".csv"):
        return f"the sorted labels of {labels}"
    return "the sorted labels the --labels regex finds in the file names"


def class_count_message(args: argparse.Namespace, exc: Any) -> str:
    """The class names do not match the model's outputs (a ClassCountError), said in the flags' terms."""
    given, outputs = exc.given, exc.outputs
    if args.classes:
        return (
            f"--classes {args.classes}: {given} classes given but the model outputs {outputs} per example; "
            f"give its {outputs} class names, in its output order"
        )
    names = f": {names_preview(exc.names)}" if exc.names else ""
    return (
        f"{given} classes found ({classes_origin(args)}{names}) but the model outputs {outputs} per example; "
        f"give its {outputs} class names, in its output order, with --classes (images with other labels are "
        "shown unlabeled)"
    )


def channels_message(args: argparse.Namespace, expected: int, got: int) -> str:
    """Images read with the wrong ``--channels`` for the model."""
    kind = {1: "1-channel (grayscale)", 3: "3-channel (RGB)"}
    given = f"--channels {args.channels}" + (" (the default)" if args.channels == 3 else "")
    if expected in kind:
        return (
            f"the model expects {kind[expected]} images but {given} reads them as {kind.get(got, got)}: "
            f"use --channels {expected}"
        )
    return f"the model expects {expected}-channel images; --channels reads 1 (grayscale) or 3 (RGB) only"


def visualizer_from_learner(args: argparse.Namespace, out: Say) -> Any:
    from data_adapters.errors import ClassCountError, NotALearnerError
    from data_adapters.fastai import load_learner_file, source_from_learner

    out(f"loading the fastai learner {args.learner}")
    try:
        learn = load_learner_file(args.learner, cpu=args.device is None or args.device == "cpu")
    except NotALearnerError as exc:
        if exc.holds == "state dict":
            raise CliError(
                f"--learner {args.learner} is a state dict (model weights only), not an exported fastai "
                f"Learner; to show those weights use --model {args.learner} --arch NAME (e.g. --arch "
                "resnet18) --data FOLDER"
            ) from exc
        raise CliError(
            f"--learner {args.learner} holds a whole torch nn.Module, not an exported fastai Learner; "
            f"use --model {args.learner} --data FOLDER"
        ) from exc
    if args.data is not None:
        out(f"scanning {args.data} for images ...")
    try:
        source = source_from_learner(
            learn,
            None,
            args.data,
            with_labels=False if args.labels == "none" else None,
            classes=args.class_names,
            device=args.device,
            name=Path(args.learner).stem,
        )
    except ClassCountError as exc:
        if not args.classes:
            raise
        raise CliError(class_count_message(args, exc)) from exc
    n = source.info.get("length")
    where = args.data if args.data is not None else "its validation set"
    out(f"showing {n if n is not None else 'the'} images of {where}; {len(source.classes)} classes")
    title = f"Insights: {Path(args.learner).stem}" + (f" on {Path(args.data).name}" if args.data else "")
    return source.visualizer(**visualizer_kwargs(args, title))


def visualizer_for_demo(args: argparse.Namespace, out: Say) -> Any:
    """The demo ``--demo`` names (digits by default): trained on first use, then loaded from the cache."""
    return DEMOS[getattr(args, "demo", None) or "digits"](args, out)


def digits_demo(args: argparse.Namespace, out: Say) -> Any:
    """The digits demo: a fastai CNN on scikit-learn's digits."""
    from insights_app import demo

    return demo.demo_source(progress=out, device=args.device).visualizer(**visualizer_kwargs(args, demo.DEMO_TITLE))


def tabular_demo(args: argparse.Namespace, out: Say) -> Any:
    """The tabular demo: a fastai tabular learner on scikit-learn's breast cancer data."""
    from insights_app import demo_tabular

    return demo_tabular.demo_source(progress=out, device=args.device).visualizer(
        **visualizer_kwargs(args, demo_tabular.DEMO_TITLE)
    )


def text_demo_module() -> Any:
    """``insights_app.demo_text``, or a one-line error while that module does not exist."""
    try:
        return importlib.import_module("insights_app.demo_text")
    except ModuleNotFoundError as exc:
        if exc.name != "insights_app.demo_text":
            raise
        raise CliError("the text demo is not available") from None


def text_demo(args: argparse.Namespace, out: Say) -> Any:
    """The text demo (``insights_app.demo_text.demo_visualizer``)."""
    kwargs: dict = {"progress": out, "device": args.device}
    if args.title:
        kwargs["title"] = args.title
    return text_demo_module().demo_visualizer(**kwargs)


# --demo NAME -> the function that builds its visualizer (the first is the default).
DEMOS: dict = {"digits": digits_demo, "tabular": tabular_demo, "text": text_demo}


def open_store(directory: str) -> Any:
    """The --store directory's store, opened before the slow work (a foreign or damaged file is refused)."""
    from insights_app.errors import StoreError
    from insights_app.store.sqlite import Store

    try:
        return Store(directory)
    except StoreError as exc:
        raise CliError(f"--store: {exc}") from None


def visualizer_kwargs(args: argparse.Namespace, title: str) -> dict:
    kwargs: dict = {"title": args.title or title}
    if args.device is not None:
        kwargs["device"] = args.device
    if getattr(args, "results_store", None) is not None:
        kwargs["store"] = args.results_store
    return kwargs


def build_visualizer(args: argparse.Namespace, out: Say = say) -> Any:
    if args.model:
        return visualizer_from_model(args, out)
    if args.learner:
        return visualizer_from_learner(args, out)
    return visualizer_for_demo(args, out)


# ---------------------------------------------------------------------- serving


def serve(visualizer: Any, args: argparse.Namespace, out: Say = say) -> int:
    """Start the server, print its URL, optionally open a browser, and wait for Ctrl+C / SIGTERM."""
    try:
        visualizer.serve(port=args.port, host=args.host, token=args.token, quiet=True)
    except OSError as exc:
        raise port_error(exc, args.host, args.port) from None
    except ValueError as exc:  # e.g. a non-loopback address with an empty token
        raise CliError(str(exc)) from None
    url = visualizer.url
    out(f"Insights is running at {url}")
    if not is_loopback(args.host):
        out(
            f"listening on {args.host}: from another machine, use this machine's address in the URL "
            "(the token is required)"
        )
    if args.open:
        import webbrowser

        if not webbrowser.open(url):
            out("could not open a browser; open the URL above yourself")
    out("Press Ctrl+C to stop.")
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_signal) if in_main_thread else None
    previous_int = signal.getsignal(signal.SIGINT) if in_main_thread else None
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl+C must not interrupt the shutdown
        # Running requests are cancelled (they stop before their next forward pass), connections
        # closed, and the models' threads waited for: torch computing while the interpreter
        # exits aborts the process (SIGABRT).
        try:
            idle = visualizer.stop(timeout=STOP_TIMEOUT_S)
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, previous_int)
    if not idle:
        out(f"stopped (a computation was still running after {STOP_TIMEOUT_S:g} s)")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # skip the interpreter's teardown, which torch's running threads would abort
    out("stopped")
    return 0


def quiet_libraries(debug: bool) -> None:
    """Library chatter that a CLI user cannot act on (deprecations, captum's gradient notes)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if debug:
        for name in ("insights_app", "data_adapters", "waitress"):
            logging.getLogger(name).setLevel(logging.DEBUG)
        return
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", module=r"captum(\.|$)")
    warnings.filterwarnings("ignore", message=r".*insecure pickle.*")


def export_body(args: argparse.Namespace) -> dict:
    """The page request an export reads (--method, --arguments, --filter), checked before the slow work."""
    body: dict = {}
    if args.method:
        body["method"] = args.method
    for flag, key in (("--arguments", "arguments"), ("--filter", "filter")):
        text = getattr(args, key)
        if text is None:
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CliError(f"{flag} is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise CliError(f"{flag} must be a JSON object")
        body[key] = value
    if args.limit is not None and args.limit < 1:
        raise CliError("--limit must be at least 1")
    if args.metrics:
        body["metrics"] = [m.strip() for m in args.metrics.split(",") if m.strip()]
    parent = Path(args.out).expanduser().resolve().parent
    if not parent.is_dir():
        raise CliError(f"--out: no such folder: {parent}")
    return body


def finish(visualizer: Any, rc: int) -> None:
    """After a one-shot command: stop the dataset pass and wait until no model computes, since torch
    computing on another thread while the interpreter exits aborts the process (SIGABRT: seen once
    after a CSV export, whose dataset pass thread was still ending). Still computing after
    STOP_TIMEOUT_S: exit now with ``rc``, skipping the teardown that torch's threads would abort."""
    if not visualizer.stop(timeout=STOP_TIMEOUT_S):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


def run_export(visualizer: Any, args: argparse.Namespace, out: Say = say) -> int:
    """insights-app export: one file (csv, npz or html) of what the page shows."""
    from insights_app.errors import ValidationError
    from insights_app.export import export

    try:
        n = export(visualizer, args.format, args.out, args.body, args.limit)
    except ValidationError as exc:
        raise CliError(str(exc)) from None
    out(f"wrote {n} examples to {args.out} ({args.format})")
    return 0


def run_precompute(visualizer: Any, args: argparse.Namespace, out: Say = say) -> int:
    """insights-app precompute: the maps of --methods for every example, into --store; a summary line."""
    from insights_app.errors import ValidationError
    from insights_app.precompute import parse_arguments, precompute

    executor = getattr(args, "executor", "local")
    ray_address, workers = getattr(args, "ray_address", None), getattr(args, "workers", None)
    if executor != "ray" and (ray_address is not None or workers is not None):
        raise CliError("--ray-address and --workers go with --executor ray")
    if workers is not None and workers < 1:
        raise CliError("--workers must be at least 1")
    if executor == "ray":
        try:
            import ray  # noqa: F401  (only on this path)
        except ImportError:
            raise CliError('--executor ray needs Ray: pip install "insights-app[ray]"') from None
    try:
        arguments = parse_arguments(args.arguments, args.method_names)
        out(
            f"precomputing {', '.join(args.method_names)} into {args.store}"
            + (f" on Ray ({ray_address or 'a local instance'})" if executor == "ray" else "")
        )
        summary = precompute(
            visualizer,
            args.method_names,
            arguments,
            targets=args.targets,
            limit=args.limit,
            report=out,
            executor=executor,
            ray_address=ray_address,
            workers=workers,
        )
    except ValidationError as exc:
        raise CliError(str(exc)) from None
    for failure in summary.failures:
        print(f"{PROG}: failed: {failure}", file=sys.stderr, flush=True)
    out(summary.line())
    return 0


def run_method_report(visualizer: Any, args: argparse.Namespace, out: Say = say) -> int:
    """insights-app method-report: every method's quality metrics over a sample, as a Markdown table."""
    from insights_app.errors import ValidationError
    from insights_app.metrics import parse_metrics
    from insights_app.metrics.report import method_report, table
    from insights_app.precompute import parse_arguments

    names = None if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.out is not None and Path(args.out).suffix not in (".md", ".json"):
        raise CliError("--out must end in .md (the table) or .json (every figure)")
    try:
        arguments = parse_arguments(args.arguments, names or list(visualizer.methods))
        options = parse_metrics([m.strip() for m in args.metrics.split(",") if m.strip()])
        report = method_report(
            visualizer,
            names,
            args.sample,
            options,
            arguments,
            args.sanity,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except ValidationError as exc:
        raise CliError(str(exc)) from None
    text = table(report)
    out(text)
    if args.out is not None:
        Path(args.out).write_text(
            json.dumps(report, indent=1) if args.out.endswith(".json") else text + "\n", encoding="utf-8"
        )
    return 0


def run_prune(argv: Sequence[str]) -> int:
    """insights-app prune --store DIR [--max-size SIZE]: needs no model, so it skips the source flags."""
    from insights_app.errors import StoreError
    from insights_app.store.prune import prune_command

    try:
        return prune_command(argv, PROG, say)
    except SystemExit as exc:  # --help, or argparse's usage error (status 2)
        return int(exc.code or 0)
    except (StoreError, ValueError) as exc:
        print(f"{PROG}: error: {_one_line(str(exc))}", file=sys.stderr, flush=True)
        return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``insights-app`` (and ``python launch.py``); returns the exit status."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    if list(sys.argv[1:] if argv is None else argv)[:1] == ["prune"]:
        return run_prune(list(sys.argv[1:] if argv is None else argv)[1:])
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except CliError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except (OSError, ValueError) as exc:  # a path the OS refuses to look at (too long, NUL byte, ...)
        print(f"{PROG}: error: unusable path: {_one_line(str(exc))[:300]}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    quiet_libraries(args.debug)
    started = time.perf_counter()
    try:
        from data_adapters.base import AdapterError

        try:
            visualizer = build_visualizer(args)
        except AdapterError as exc:
            raise CliError(str(exc)) from exc
        log.debug("ready in %.1fs", time.perf_counter() - started)
        one_shot = {"precompute": run_precompute, "export": run_export, "method-report": run_method_report}
        if args.command in one_shot:
            rc = EXIT_USAGE
            try:
                rc = one_shot[args.command](visualizer, args)
                return rc
            finally:
                finish(visualizer, rc)
        return serve(visualizer, args)
    except CliError as exc:
        if debug:
            logging.getLogger(PROG).exception("details")
        print(f"{PROG}: error: {_one_line(str(exc))}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:
        if debug:
            raise
        print(
            f"{PROG}: error: unexpected {type(exc).__name__}: {_one_line(str(exc))} "
            "(run again with --debug for the traceback)",
            file=sys.stderr,
            flush=True,
        )
        return 1


def _one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", text.strip())


if __name__ == "__main__":
    sys.exit(main())
