"""Export: a CSV of predictions (every example), an NPZ of raw maps, a self-contained HTML report."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from reliability_helpers import CLASSES, Digits, make_visualizer

from insights_app.errors import ValidationError
from insights_app.page.export import export

BODY = {"method": "Saliency", "filter": {"prediction": "incorrect"}}


@pytest.fixture(scope="module")
def vis():
    return make_visualizer(dataset=Digits(n=48, batch_size=8))


def test_the_csv_has_every_example_as_triage_sees_it(vis, tmp_path):
    n = export(vis, "csv", tmp_path / "p.csv")
    rows = list(csv.DictReader(open(tmp_path / "p.csv", encoding="utf-8")))
    interp = vis.interpretation(progress=False)
    assert n == len(rows) == 48
    assert [r["predicted"] for r in rows] == [CLASSES[i] for i in interp.predicted]
    assert [float(r["loss"]) for r in rows] == pytest.approx(interp.losses.tolist(), rel=1e-5)
    assert sum(int(r["correct"]) for r in rows) == round(interp.accuracy * 48)


def test_the_npz_holds_the_maps_the_page_draws(vis, tmp_path):
    n = export(vis, "npz", tmp_path / "m.npz", BODY, limit=5)
    data = np.load(tmp_path / "m.npz")
    wrong = vis.interpretation(progress=False)
    want = [int(i) for i in np.flatnonzero(wrong.predicted != wrong.labels)[:5]]
    assert n == len(want) and data["ids"].tolist() == want
    meta = json.loads(str(data["meta"]))
    assert meta["method"] == "Saliency" and meta["classes"] == CLASSES
    first = data[f"map_{want[0]}_0_digit"]
    assert first.shape == (8, 8) and np.isfinite(first).all() and first.any()


def test_the_html_report_is_self_contained(vis, tmp_path):
    n = export(vis, "html", tmp_path / "r.html", BODY, limit=4)
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert n == 4 and text.count('<section class="card">') == 4 and "misclassified" in text
    srcs = re.findall(r'src="([^"]+)"', text)
    assert len(srcs) == 8 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in text and "https://" not in text  # nothing loaded from anywhere
    assert "Saliency" in text


def test_a_bad_format_is_refused(vis, tmp_path):
    with pytest.raises(ValidationError, match="csv, npz, html"):
        export(vis, "xlsx", tmp_path / "x")


def test_the_command_line_exports(tmp_path):
    from launch_helpers import TESTS, launch_env, run

    from insights_app.demos.digits import write_digit_images

    write_digit_images(tmp_path / "digits", size=16, valid_fraction=0.05, limit=90)
    source = ["--model", "launch_helpers:digits_net", "--data", str(tmp_path / "digits" / "valid"), "--channels", "1"]
    env = launch_env(tmp_path / "cache")
    done = run(
        [
            "export",
            *source,
            "--format",
            "html",
            "--out",
            str(tmp_path / "r.html"),
            "--method",
            "Saliency",
            "--filter",
            '{"prediction": "incorrect", "order": "loss"}',
            "--limit",
            "3",
            "--metrics",
            "deletion",
        ],
        env,
        cwd=TESTS,
    )
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "r.html").read_text()
    assert "wrote 3 examples" in done.stdout and report.count('class="card"') == 3 and report.count("deletion ") == 3
    done = run(["export", *source, "--format", "csv", "--out", str(tmp_path / "p.csv")], env, cwd=TESTS)
    assert done.returncode == 0 and len((tmp_path / "p.csv").read_text().splitlines()) > 2
    bad = run(
        ["export", *source, "--format", "html", "--out", str(tmp_path / "r.html"), "--filter", "{bad"], env, cwd=TESTS
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(
        "insights-app: error: --filter is not"
    )
    assert "loading" not in bad.stdout  # refused before the model loads


# ---------------------------------------------------------------- the page's "Export report" (POST /api/v1/export)


def _post_export(client, body):
    return client.post("/api/v1/export", data=json.dumps(body), content_type="application/json")


@pytest.fixture(scope="module")
def client(vis):
    from insights_app.transport.server import create_app

    return create_app(vis).test_client()


def test_the_export_view_answers_the_report_as_json(vis, client):
    resp = _post_export(client, dict(BODY, format="html", limit=4))
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    data = resp.get_json()
    assert re.fullmatch(r"insights-report-\d{4}-\d{2}-\d{2}\.html", data["filename"])
    assert data["media_type"] == "text/html" and data["examples"] == 4
    text = data["content"]
    assert text.startswith("<!doctype html>") and text.count('<section class="card">') == 4
    wrong = vis.interpretation(progress=False)
    want = [int(i) for i in np.flatnonzero(wrong.predicted != wrong.labels)[:4]]
    assert re.findall(r'<div class="id">#(\d+)</div>', text) == [str(i) for i in want]  # the filter's examples
    assert text.count("misclassified") == 4 and "correct</span>" not in text
    srcs = re.findall(r'src="([^"]+)"', text)
    assert len(srcs) == 8 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert "default-src 'none'" in text  # the report's own CSP: it can load nothing


def test_the_export_view_equals_the_file_export(vis, client, tmp_path):
    export(vis, "html", tmp_path / "r.html", BODY, limit=3)
    served = _post_export(client, dict(BODY, limit=3)).get_json()["content"]  # html by default
    strip = lambda t: re.sub(r"made \d{4}-\d{2}-\d{2} \d{2}:\d{2}", "", t)  # noqa: E731
    assert strip(served) == strip((tmp_path / "r.html").read_text(encoding="utf-8"))


def test_the_export_view_answers_a_csv(vis, client):
    data = _post_export(client, {"format": "csv"}).get_json()
    assert data["media_type"] == "text/csv" and data["filename"].endswith(".csv") and data["examples"] == 48
    rows = list(csv.DictReader(data["content"].splitlines()))
    assert len(rows) == 48 and [r["predicted"] for r in rows] == [
        CLASSES[i] for i in vis.interpretation(progress=False).predicted
    ]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"format": "xlsx"}, "format"),
        ({"format": 1}, "format"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": "5"}, "limit"),
        ({"page": 2}, "page"),
        ({"stream": True}, "stream"),
        ({"filter": {"prediction": "nope"}}, "filter.prediction"),
        ({"method": "Nope"}, "method"),
        ([1], "body"),
    ],
)
def test_the_export_view_refuses_bad_input_naming_the_field(client, body, field):
    resp = _post_export(client, body)
    assert resp.status_code == 400 and resp.mimetype == "application/json", resp.get_data(as_text=True)
    assert resp.get_json()["error"].startswith(field + ":")


def test_the_export_view_stops_when_its_client_hangs_up(vis):
    from insights_app.cancel import Cancel
    from insights_app.errors import Cancelled

    view = vis.views["export"]
    assert view.computes
    gone = Cancel()
    gone.set()
    with pytest.raises(Cancelled):
        view.answer(vis, dict(BODY, limit=4), gone)
    calls = []

    def check():  # hangs up after the first page's computation has started
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        view.answer(vis, {"method": "Saliency", "limit": 100}, Cancel(check))
    assert len(calls) > 3


def test_the_export_view_is_in_the_openapi_document(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    op = doc["paths"]["/api/v1/export"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {
        "format",
        "limit",
        "filter",
        "method",
        "arguments",
        "visualization",
        "top_k",
        "metrics",
        "metric_arguments",
    }
    assert schema["properties"]["limit"]["maximum"] == 500 and schema["properties"]["format"]["enum"] == ["html", "csv"]
    assert "400" in op["responses"] and "503" in op["responses"]


def test_the_html_report_shows_the_maps_metrics_when_asked(vis, tmp_path):
    from insights_app.page.export import html_report

    text, n = html_report(vis, {"method": "Saliency", "metrics": ["deletion", "insertion"]}, limit=2)
    assert n == 2 and text.count("deletion ") == 2 and text.count("insertion ") == 2 and "↓" in text and "↑" in text
