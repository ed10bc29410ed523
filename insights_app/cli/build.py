"""The visualizer the source flags name: ``--model`` on ``--data``, ``--learner``, or a demo.

Flags map onto ``data_adapters`` (nothing is re-implemented here); the adapters' errors that carry
numbers (a class count, a channel count) are said again here in the flags' terms.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .errors import CliError, Say, say, say_note

if TYPE_CHECKING:
    from data_adapters.errors import ClassCountError
    from insights_app.visualizer import AttributionVisualizer


def build_visualizer(args: argparse.Namespace, out: Say = say) -> AttributionVisualizer:
    if args.model:
        return visualizer_from_model(args, out)
    if args.learner:
        return visualizer_from_learner(args, out)
    return visualizer_for_demo(args, out)


def visualizer_kwargs(args: argparse.Namespace, title: str) -> dict[str, Any]:
    kwargs: dict = {"title": args.title or title}
    if args.device is not None:
        kwargs["device"] = args.device
    if getattr(args, "results_store", None) is not None:
        kwargs["store"] = args.results_store
    return kwargs


def visualizer_from_model(args: argparse.Namespace, out: Say, note: Say | None = None) -> AttributionVisualizer:
    from data_adapters.errors import ChannelsError, ClassCountError
    from data_adapters.folder import source_from_folder
    from data_adapters.weights import load_model, source_name

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
            name=source_name(args.model),
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


def class_count_message(args: argparse.Namespace, exc: ClassCountError) -> str:
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


def visualizer_from_learner(args: argparse.Namespace, out: Say) -> AttributionVisualizer:
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


def visualizer_for_demo(args: argparse.Namespace, out: Say) -> AttributionVisualizer:
    """The demo ``--demo`` names (digits by default): trained on first use, then loaded from the cache."""
    return DEMOS[getattr(args, "demo", None) or "digits"](args, out)


def digits_demo(args: argparse.Namespace, out: Say) -> AttributionVisualizer:
    """The digits demo: a fastai CNN on scikit-learn's digits."""
    from insights_app.demos import digits as demo

    return demo.demo_source(progress=out, device=args.device).visualizer(**visualizer_kwargs(args, demo.DEMO_TITLE))


def tabular_demo(args: argparse.Namespace, out: Say) -> AttributionVisualizer:
    """The tabular demo: a fastai tabular learner on scikit-learn's breast cancer data."""
    from insights_app.demos import tabular as demo_tabular

    return demo_tabular.demo_source(progress=out, device=args.device).visualizer(
        **visualizer_kwargs(args, demo_tabular.DEMO_TITLE)
    )


def text_demo_module() -> ModuleType:
    """``insights_app.demos.text``, or a one-line error while that module does not exist."""
    try:
        return importlib.import_module("insights_app.demos.text")
    except ModuleNotFoundError as exc:
        if exc.name != "insights_app.demos.text":
            raise
        raise CliError("the text demo is not available") from None


def text_demo(args: argparse.Namespace, out: Say) -> AttributionVisualizer:
    """The text demo (``insights_app.demos.text.demo_visualizer``)."""
    kwargs: dict = {"progress": out, "device": args.device}
    if args.title:
        kwargs["title"] = args.title
    return text_demo_module().demo_visualizer(**kwargs)


# --demo NAME -> the function that builds its visualizer (the first is the default).
DEMOS: dict[str, Callable[[argparse.Namespace, Say], AttributionVisualizer]] = {
    "digits": digits_demo,
    "tabular": tabular_demo,
    "text": text_demo,
}
