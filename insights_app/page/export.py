"""Export what the app shows: a CSV of predictions, an NPZ of raw maps, a self-contained HTML report.

Each reads through the same parts the page uses, so an export equals what the page would show:
the CSV comes from the dataset pass's records (every example: label, top-k, loss), the NPZ and
the HTML from pages of the examples view (the filter, the method and its arguments of a page
request), which read the store before computing when the visualizer has one. The HTML file
holds its images inline and loads nothing from anywhere: it opens from a file.
"""

from __future__ import annotations

import csv
import html
import io
import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..cancel import Cancel, raise_if_cancelled
from ..errors import ValidationError
from ..metrics.spec import MetricSpec
from ..protocols import VisualizerLike
from .report_html import LEGEND_STYLE, argument_words, filter_words, map_figure
from .service import page_document

FORMATS = ("csv", "npz", "html")
PAGE = 32  # examples per page request while exporting


def _wait_for_pass(vis: VisualizerLike, model: int, cancel: Cancel | None) -> None:
    """Run (or resume, or reuse) the dataset pass to its end. Without a ``cancel``, as
    ``vis.interpretation()`` does; with one, asking it while waiting, so that a client that hangs up
    stops waiting (the pass itself goes on: it is shared with the Dataset view and the filters)."""
    if cancel is None:
        from ..triage import interpretation_of

        interpretation_of(vis, model, progress=False)
        return
    from ..triage import model_index

    model_index(vis, model)
    p = vis.dataset_pass
    state = p.start()
    while state.state == "running":
        raise_if_cancelled(cancel)
        state = p.wait(timeout=0.5)


def _pages(
    vis: VisualizerLike, body: Mapping[str, Any], limit: int | None, cancel: Cancel | None = None
) -> Iterator[dict[str, Any]]:
    """The examples a page body selects, page by page, at most ``limit`` of them (a triage filter
    waits for the whole dataset pass first: an export is of the whole dataset, not of its start).
    ``cancel`` goes down with each page's computation (the export view's client hanging up)."""
    q = vis.parse_page(dict(body))
    if q.filter.needs_pass:
        _wait_for_pass(vis, q.filter.model, cancel)
    seen = 0
    for number in range(10**6):
        raise_if_cancelled(cancel)
        page_body = dict(body, page=number, page_size=PAGE, stream=False)
        page = vis.page(page_body) if cancel is None else page_document(vis, vis.parse_page(page_body), cancel)
        for ex in page["examples"]:
            if limit is not None and seen >= limit:
                return
            seen += 1
            yield ex
        if not page["page"]["has_next"] or not page["examples"] and page["page"]["exhausted"]:
            return


# What a spreadsheet reads as the start of a formula (OWASP's CSV injection guidance): a text cell starting
# with one of these gets a leading single quote, so that it is shown as text and never run.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """A text cell (a class name, a file name, an error message) that a spreadsheet shows and never runs."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_text(vis: VisualizerLike, model: int = 0, top_k: int = 3, cancel: Cancel | None = None) -> tuple[str, int]:
    """The CSV (its text, and how many rows of examples): one row per example the dataset pass
    covers (it runs first): id, label, top-k, confidence, loss."""
    _wait_for_pass(vis, model, cancel)
    snap = vis.dataset_pass.snapshot()
    names = [csv_cell(name) for name in vis.classes]
    k = min(top_k, snap.top_classes.shape[2])
    with io.StringIO(newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["id", "label", "predicted", "confidence", "loss", "correct", "error"]
            + [c for i in range(k) for c in (f"top{i + 1}", f"score{i + 1}")]
        )
        for ex_id in range(snap.n):
            label = int(snap.labels[ex_id])
            failed = bool(snap.failed[model, ex_id])
            top = snap.top_classes[model, ex_id, :k].tolist()
            scores = snap.top_scores[model, ex_id, :k].tolist()
            loss = float(snap.losses[model, ex_id])
            w.writerow(
                [
                    ex_id,
                    names[label] if 0 <= label < len(names) else "",
                    "" if failed else names[top[0]],
                    "" if failed else f"{scores[0]:.6g}",
                    "" if loss != loss else f"{loss:.6g}",
                    "" if failed or label < 0 else int(top[0] == label),
                    csv_cell(snap.errors[model].get(ex_id, "")),
                ]
                + [v for i in range(k) for v in (("", "") if failed else (names[top[i]], f"{scores[i]:.6g}"))]
            )
        return f.getvalue(), snap.n


def export_csv(vis: VisualizerLike, out: str | Path, model: int = 0, top_k: int = 3) -> int:
    """One row per example the dataset pass covers (it runs first): id, label, top-k, confidence, loss."""
    text, n = csv_text(vis, model, top_k)
    with open(out, "w", newline="", encoding="utf-8") as f:
        f.write(text)
    return n


def export_npz(vis: VisualizerLike, out: str | Path, body: Mapping[str, Any], limit: int | None = None) -> int:
    """The raw maps (as drawn, float32) of the examples a page body selects: ``map_<id>_<model>_<feature>``
    arrays, plus ``ids``, ``targets`` and a JSON ``meta`` (method, arguments, classes)."""
    arrays: dict[str, np.ndarray] = {}
    ids, targets = [], []
    q = vis.parse_page(dict(body))
    for ex in _pages(vis, dict(body), limit):
        ids.append(ex["id"])
        for m in ex["models"]:
            targets.append(-1 if not m.get("target") else m["target"]["index"])
            attr = vis.attribute(
                {
                    "example_id": ex["id"],
                    "model": m["index"],
                    "method": q.method.name,
                    "arguments": q.arguments,
                    "values": True,
                    "target": None if not m.get("target") else m["target"]["index"],
                }
            )
            for a in attr["example"]["models"][0]["attributions"]:
                values = a.get("values")
                if values:
                    import base64

                    data = np.frombuffer(base64.b64decode(values["data"]), dtype="<f4").reshape(values["shape"])
                    arrays[f"map_{ex['id']}_{m['index']}_{a['name']}"] = data
                elif "scores" in a:
                    arrays[f"map_{ex['id']}_{m['index']}_{a['name']}"] = np.asarray(a["scores"], np.float32)
    meta = {
        "method": q.method.name,
        "arguments": q.arguments,
        "classes": vis.classes,
        "models": [e.name for e in vis.engines],
    }
    arrays.update(
        ids=np.asarray(ids, np.int64),
        targets=np.asarray(targets, np.int64),
        meta=np.asarray(json.dumps(meta, default=str)),
    )
    np.savez_compressed(out, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
    return len(ids)


STYLE = """body{font:14px system-ui,sans-serif;margin:24px;color:#1d2733;background:#f4f6f9}
h1{font-size:20px}.meta{color:#596270;margin-bottom:16px}.card{background:#fff;border:1px solid #dfe3e8;
border-radius:8px;padding:12px;margin:0 0 12px;display:flex;gap:16px;align-items:flex-start;flex-wrap:wrap}
.card img{width:160px;height:160px;image-rendering:pixelated;object-fit:contain;background:#eef1f5}
.id{font-weight:700}.bad{color:#b42318;font-weight:600}.ok{color:#13692f;font-weight:600}
table{border-collapse:collapse}td{padding:1px 8px 1px 0}.muted{color:#596270}"""


def _feature_html(f: dict[str, Any]) -> str:
    if f["type"] == "image" and isinstance(f.get("original"), str):
        return f'<img alt="{html.escape(f["name"])}" src="{html.escape(f["original"])}">'
    if f["type"] == "text":
        return "<div>" + html.escape(" ".join(map(str, f.get("original") or []))) + "</div>"
    return "<div>" + html.escape(", ".join(map(str, f.get("original") or []))) + "</div>"


def _metrics_html(metrics: Mapping[str, Any] | None, specs: Mapping[str, MetricSpec]) -> str:
    """A map's quality metrics (when the body asked for them), each with its better direction."""
    if not metrics:
        return ""
    cells = []
    for name, value in metrics.items():
        number = value.get("area") if isinstance(value, dict) else value
        shown = (
            "failed" if isinstance(value, dict) and "error" in value else ("n/a" if number is None else f"{number:.3g}")
        )
        cells.append(f"{html.escape(name)} {shown} {'↓' if name not in specs or specs[name].lower_is_better else '↑'}")
    return f'<div class="muted">{" · ".join(cells)}</div>'


def html_report(
    vis: VisualizerLike, body: Mapping[str, Any], limit: int | None = 100, cancel: Cancel | None = None
) -> tuple[str, int]:
    """A self-contained report of the examples a page body selects (inputs, predictions, maps, losses):
    its HTML text, and how many examples it holds. ``cancel`` stops it between computations."""
    q = vis.parse_page(dict(body))
    cards: list[str] = []
    for ex in _pages(vis, dict(body), limit, cancel):
        label = ex.get("label")
        parts = [
            f'<div><div class="id">#{ex["id"]}</div><div class="muted">true label: '
            f"{html.escape(label['name']) if label else 'none'}</div></div>"
        ]
        parts += [_feature_html(f) for f in ex["features"]]
        for m in ex["models"]:
            right = label and m["predictions"] and m["predictions"][0]["index"] == label["index"]
            verdict = (
                ""
                if not label or not m["predictions"]
                else ('<span class="ok">correct</span>' if right else '<span class="bad">misclassified</span>')
            )
            rows = "".join(
                f"<tr><td>{html.escape(p['label'])}</td><td>{p['score'] * 100:.1f}%</td></tr>" for p in m["predictions"]
            )
            target = (m.get("target") or {}).get("name")
            maps = "".join(
                map_figure(a["image"], f"{q.method.label} map of {a['name']}", target, a.get("scale"), q.visualization)
                for a in m.get("attributions", [])
                if a.get("image")
            )
            loss = f'<div class="muted">loss {m["loss"]:.4g}</div>' if isinstance(m.get("loss"), float) else ""
            error = f'<div class="bad">{html.escape(m["error"])}</div>' if m.get("error") else ""
            loss += _metrics_html(m.get("metrics"), vis.metrics)
            parts.append(
                f"<div><div>{html.escape(m['name'])} {verdict}</div><table>{rows}</table>{loss}{error}</div>{maps}"
            )
        cards.append('<section class="card">' + "".join(parts) + "</section>")
    args = argument_words(q.method, q.arguments)
    shown = filter_words(q.filter, vis.classes, [e.name for e in vis.engines])
    doc = io.StringIO()
    doc.write(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">"
        f"<title>{html.escape(vis.title)}: report</title><style>{STYLE}{LEGEND_STYLE}</style></head><body>"
    )
    doc.write(
        f'<h1>{html.escape(vis.title)}</h1><div class="meta">Models: '
        f"{html.escape(', '.join(e.name for e in vis.engines))} · method: {html.escape(q.method.label)}"
        f"{' (' + html.escape(args) + ')' if args else ''} · {html.escape(shown)}"
        f" · {len(cards)} examples · made {time.strftime('%Y-%m-%d %H:%M')}</div>"
    )
    doc.write("".join(cards) or "<p>No example matches this filter.</p>")
    doc.write("</body></html>")
    return doc.getvalue(), len(cards)


def export_html(vis: VisualizerLike, out: str | Path, body: Mapping[str, Any], limit: int | None = 100) -> int:
    """A self-contained report of the examples a page body selects: inputs, predictions, maps, losses."""
    text, n = html_report(vis, body, limit)
    Path(out).write_text(text, encoding="utf-8")
    return n


def export(
    vis: VisualizerLike, fmt: str, out: str | Path, body: Mapping[str, Any] | None = None, limit: int | None = None
) -> int:
    """Write ``fmt`` (csv, npz or html) to ``out``; how many examples it holds."""
    if fmt not in FORMATS:
        raise ValidationError("format", f"must be one of {', '.join(FORMATS)}")
    body = dict(body or {})
    if fmt == "csv":
        return export_csv(vis, out, model=int((body.get("filter") or {}).get("model", 0)))
    if fmt == "npz":
        return export_npz(vis, out, body, limit)
    return export_html(vis, out, body, 100 if limit is None else limit)
