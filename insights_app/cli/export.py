"""``insights-app export ... --format F --out PATH``: one file (csv, npz or html) of what the page shows."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from .errors import CliError, Say, say
from .preflight import check_out

if TYPE_CHECKING:
    from insights_app.visualizer import AttributionVisualizer


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The export's flags, after the source and server flags in ``--help``."""
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


def check(args: argparse.Namespace) -> None:
    """Before the slow work: the page request the export reads (``args.body``) and its output folder."""
    args.body = export_body(args)


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
    check_out(args.out)
    return body


def run(visualizer: AttributionVisualizer, args: argparse.Namespace, out: Say = say) -> int:
    """insights-app export: one file (csv, npz or html) of what the page shows."""
    from insights_app.errors import ValidationError
    from insights_app.page.export import export

    try:
        visualizer.parse_page(dict(args.body))  # the filter's model, the method and its arguments: before the work
        n = export(visualizer, args.format, args.out, args.body, args.limit)
    except ValidationError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:  # the file could not be written after all (a full disk, a folder gone meanwhile)
        raise CliError(f"--out {args.out}: {exc.strerror or exc}") from None
    out(f"wrote {n} examples to {args.out} ({args.format})")
    return 0
