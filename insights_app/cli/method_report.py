"""``insights-app method-report ... --sample N``: every method's quality metrics over a sample, as a table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CliError, Say, say
from .preflight import check_out

if TYPE_CHECKING:
    from insights_app.visualizer import AttributionVisualizer


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The report's flags, after the source and server flags in ``--help``."""
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


def check(args: argparse.Namespace) -> None:
    """Before the model loads: where ``--out`` writes (the method names are the model's: ``run`` checks them)."""
    if args.out is not None:
        if Path(args.out).suffix not in (".md", ".json"):
            raise CliError("--out must end in .md (the table) or .json (every figure)")
        check_out(args.out)


def run(visualizer: AttributionVisualizer, args: argparse.Namespace, out: Say = say) -> int:
    """insights-app method-report: every method's quality metrics over a sample, as a Markdown table."""
    from insights_app.errors import ValidationError
    from insights_app.metrics import parse_metrics
    from insights_app.metrics.report import method_report, table
    from insights_app.precompute import parse_arguments

    names = None if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    check(args)
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
        try:
            Path(args.out).write_text(
                json.dumps(report, indent=1) if args.out.endswith(".json") else text + "\n", encoding="utf-8"
            )
        except OSError as exc:  # the folder went away or filled up while the report ran
            raise CliError(f"--out {args.out}: {exc.strerror or exc}") from None
    return 0
