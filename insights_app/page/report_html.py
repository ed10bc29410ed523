"""The words and legends of the exported HTML report (``export.html_report``): what a reader of the file
needs without the page beside it. Each map gets its target and a colour scale with numbers; the
filter and the method's arguments are written in words, and unset (None) arguments are left out.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from ..methods.spec import MethodSpec
from .query import Filter, Visualization
from .render import colormap_stops

WHAT = {"all": "attribution", "positive": "positive attribution", "negative": "negative attribution"}
WHAT_ABSOLUTE = "|attribution|"

LEGEND_STYLE = """figure{margin:0}figcaption{font-size:12px;color:#596270;max-width:200px}
.legend{display:flex;align-items:center;gap:4px;margin-top:2px}.legend .bar{flex:1;height:8px;min-width:80px;
border-radius:2px;border:1px solid #c4cad3}.legend .n{font-variant-numeric:tabular-nums}"""


def number(v: float) -> str:
    """A value as a legend writes it: short, without exponent notation for ordinary magnitudes."""
    if v == 0:
        return "0"
    a = abs(v)
    if 1e-3 <= a < 1e5:
        return f"{v:.3g}" if a < 1000 else f"{v:.0f}"
    return f"{v:.2e}"


def legend_html(scale: Mapping[str, float] | None, vis: Visualization) -> str:
    """A map's colour scale: its palette's colours as a bar, the values at both ends (0 in the middle of
    a signed one). Nothing when the map carries no scale."""
    if not scale or not isinstance(scale.get("low"), (int, float)) or not isinstance(scale.get("high"), (int, float)):
        return ""
    low, high = float(scale["low"]), float(scale["high"])
    stops = colormap_stops(vis.sign, vis.palette)
    gradient = f"linear-gradient(to right, {', '.join(stops)})"
    what = WHAT.get(vis.sign, WHAT_ABSOLUTE)
    middle = ", 0 in the middle" if vis.sign == "all" else ""
    label = f"Colour scale: {what} from {number(low)} to {number(high)}{middle}"
    return (
        f'<div class="legend" role="img" aria-label="{html.escape(label)}" title="{html.escape(label)}">'
        f'<span class="n">{html.escape(number(low))}</span>'
        f'<span class="bar" style="background:{gradient}"></span>'
        f'<span class="n">{html.escape(number(high))}</span></div>'
    )


def map_figure(image: str, alt: str, target: str | None, scale: Mapping[str, float] | None, vis: Visualization) -> str:
    """One map as the report shows it: the image, what it is attributed to, and its colour scale."""
    caption = f"target: {html.escape(target)}" if target else "no target"
    return (
        f'<figure><img alt="{html.escape(alt)}" src="{html.escape(image)}">'
        f"<figcaption>{caption}{legend_html(scale, vis)}</figcaption></figure>"
    )


def _class_names(indices: Sequence[int], classes: Sequence[str]) -> str:
    return ", ".join(classes[i] if 0 <= i < len(classes) else str(i) for i in indices)


def filter_words(f: Filter, classes: Sequence[str], model_names: Sequence[str]) -> str:
    """A page filter as a sentence fragment ("wrongly predicted examples labelled 3, largest loss first")."""
    parts: list[str] = []
    subject = {"correct": "correctly predicted examples", "incorrect": "wrongly predicted examples"}.get(
        f.prediction, "all examples"
    )
    parts.append(subject)
    if f.classes:
        how = "labelled" if f.class_source == "label" else "predicted as"
        parts.append(f"{how} {_class_names(f.classes, classes)}")
    if f.pair is not None:
        actual, predicted = _class_names([f.pair[0]], classes), _class_names([f.pair[1]], classes)
        parts.append(f"of class {actual} predicted as {predicted}")
    if f.confidence is not None:
        lo, hi = f.confidence
        parts.append(f"top score from {lo * 100:g}% to {hi * 100:g}%")
    if f.disagree:
        parts.append("where the models disagree")
    if f.order == "loss":
        parts.append("largest loss first")
    if len(model_names) > 1 and (f.prediction != "all" or f.needs_pass) and 0 <= f.model < len(model_names):
        parts.append(f"as {model_names[f.model]} sees them")
    return ", ".join(parts)


def _value_words(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return " x ".join(_value_words(x) for x in v)
    return str(v)


def argument_words(spec: MethodSpec, arguments: Mapping[str, Any]) -> str:
    """A method's arguments by their labels ("Steps 25, baseline zeros"); unset (None) ones are left out."""
    labels = {p.name: p.label for p in spec.params}
    words = []
    for name, value in arguments.items():
        if value is None:
            continue
        label = labels.get(name) or name.replace("_", " ")
        words.append(f"{label} {_value_words(value)}")
    return ", ".join(words)
