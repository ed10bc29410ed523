"""``insights-app precompute ... --store DIR --methods NAMES``: every example's maps, into the store."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .errors import PROG, CliError, Say, say

if TYPE_CHECKING:
    from insights_app.visualizer import AttributionVisualizer


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The precompute's flags, after the source and server flags in ``--help``."""
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


def check(args: argparse.Namespace) -> None:
    """Before the slow work: a store to write, and the methods named (``args.method_names``)."""
    if args.store is None:
        raise CliError("precompute needs --store DIR (where the maps are kept)")
    args.method_names = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not args.method_names:
        raise CliError("--methods names no method")
    if args.limit is not None and args.limit < 1:
        raise CliError("--limit must be at least 1")


def run(visualizer: AttributionVisualizer, args: argparse.Namespace, out: Say = say) -> int:
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
        raise CliError(str(exc).replace("ray_address:", "--ray-address:", 1)) from None
    for failure in summary.failures:
        print(f"{PROG}: failed: {failure}", file=sys.stderr, flush=True)
    out(summary.line())
    return 0
