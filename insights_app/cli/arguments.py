"""The command line's flags and the checks that need nothing loaded.

``serve`` (no subcommand) takes the source and server flags; ``precompute``, ``export`` and
``method-report`` add their own group (each module's ``add_arguments``) and checks (``check``).
Every mistake found here is a :class:`~insights_app.cli.errors.CliError`, before anything slow runs.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from insights_app.limits import MAX_RESIZE_SIDE
from insights_app.transport.access import is_loopback

from . import export, method_report, precompute
from .build import DEMOS
from .errors import PROG, CliError, OneLineParser, Say
from .preflight import parse_device, preflight

if TYPE_CHECKING:
    from insights_app.visualizer import AttributionVisualizer


class Subcommand(Protocol):
    """A subcommand that loads a model: its flags, its checks before the slow work, and its run."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None: ...

    def check(self, args: argparse.Namespace) -> None: ...

    def run(self, visualizer: AttributionVisualizer, args: argparse.Namespace, out: Say = ...) -> int: ...


# The subcommands that load a model, each a module (a Subcommand); without one, the command serves.
# ``prune`` needs no model and parses its own flags.
SUBCOMMANDS: dict[str, Subcommand] = {"precompute": precompute, "export": export, "method-report": method_report}


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
    if command in SUBCOMMANDS:
        SUBCOMMANDS[command].add_arguments(p)
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv[:1] and argv[0] in SUBCOMMANDS else "serve"
    args = build_parser(command).parse_args(argv[1:] if command != "serve" else argv)
    args.command = command
    if command in SUBCOMMANDS:
        SUBCOMMANDS[command].check(args)
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
