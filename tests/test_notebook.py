"""The notebook widget: its request protocol, a headless kernel (nbclient), and a real JupyterLab."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from engine_helpers import RandomImages, make_model
from launch_helpers import free_port, wait_for_http

from insights_app import AttributionVisualizer
from insights_app.features import ImageFeature
from insights_app.transport.notebook import InsightsWidget, handle_request, widget_esm, widget_modules

TESTS = Path(__file__).resolve().parent
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
CLASSES = [f"c{i}" for i in range(10)]
FAST = {"method": "Saliency"}

SETUP_CELL = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
import torch
from engine_helpers import RandomImages, make_model
from insights_app import AttributionVisualizer
from insights_app.features import ImageFeature

vis = AttributionVisualizer([make_model()], {CLASSES!r}, [ImageFeature("image")],
                            RandomImages(n_batches=3, batch_size=4),
                            score_func=lambda out: torch.softmax(out, 1), default_method="Saliency")
vis.render(height=700)
"""


def small_visualizer() -> AttributionVisualizer:
    return AttributionVisualizer(
        [make_model()],
        CLASSES,
        [ImageFeature("image")],
        RandomImages(n_batches=2, batch_size=4),
        score_func=lambda o: torch.softmax(o, 1),
    )


def replies(vis: AttributionVisualizer, kind: str, body: Any, cancelled=lambda: False) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    handle_request(vis, kind, body, out.append, cancelled)
    return out


def test_requests_answer_what_the_http_api_answers():
    vis = small_visualizer()
    (config,) = replies(vis, "config", None)
    assert config["result"]["classes"] == CLASSES

    page = replies(vis, "examples", dict(FAST, page_size=3))
    events = [r["event"] for r in page[:-1]]
    assert [e["type"] for e in events] == ["page", "example", "example", "example", "done"]
    assert page[-1] == {"result": None}
    same = vis.page(dict(FAST, page_size=3))
    assert [e["example"]["id"] for e in events[1:4]] == [e["id"] for e in same["examples"]]
    assert events[1]["example"]["models"][0]["predictions"] == same["examples"][0]["models"][0]["predictions"]
    assert events[1]["example"]["models"][0]["attributions"][0]["image"]  # a rendered PNG

    (one,) = replies(vis, "attribute", {"example_id": 2, "target": 7, "method": "Saliency"})
    assert one["result"]["example"]["models"][0]["target"]["index"] == 7
    json.dumps(page + [config, one])  # everything travels as JSON over the comm


def test_bad_requests_get_one_error_reply_with_the_field():
    vis = small_visualizer()
    assert replies(vis, "examples", {"page_size": 0}) == [{"error": "page_size: must be between 1 and 64"}]
    (missing,) = replies(vis, "attribute", {"example_id": 99})
    assert missing["error"].startswith("example_id:")
    (unknown,) = replies(vis, "delete_everything", {})
    assert "unknown request kind" in unknown["error"]


def test_a_cancelled_page_stops_without_computing_the_rest():
    vis = small_visualizer()
    out: list[dict[str, Any]] = []
    # cancelled as soon as the first event went out (the page asked for another page meanwhile)
    handle_request(vis, "examples", dict(FAST, page_size=4), out.append, cancelled=lambda: len(out) >= 1)
    assert [r["event"]["type"] for r in out] == ["page"]
    assert not any("result" in r for r in out)


STATIC = Path(__import__("insights_app").__file__).with_name("static")


def test_widget_ships_the_page_app_and_its_styles():
    widget = InsightsWidget(small_visualizer(), height=640)
    assert widget._esm == (STATIC / "widget.js").read_text() and "export default" in widget._esm
    assert widget._modules["app.js"] == (STATIC / "app.js").read_text()
    assert "export function mount" in widget._modules["app.js"] and "main.js" not in widget._modules
    assert ".insights-app" in widget._css and "@import" not in widget._css
    assert (STATIC / "css" / "cards.css").read_text() in widget._css
    assert (STATIC / "css" / "theme.css").read_text() in widget._css  # the dark scheme ships with it
    assert widget.height == 640
    data, _ = widget._repr_mimebundle_()
    assert data[WIDGET_MIME]["model_id"] == widget.model_id
    widget.close()


def test_widget_height_zero_or_none_means_grow_with_the_content():
    import traitlets

    for height in (0, None):
        widget = InsightsWidget(small_visualizer(), height=height)
        assert widget.height == height  # widget.js: no fixed height (tests/test_browser_theme.py sees it grow)
        widget.height = 500  # a shown widget resizes
        with pytest.raises(traitlets.TraitError):
            widget.height = -1
        widget.close()


LINK_AND_IMPORT = r"""
import { readFileSync } from "node:fs";
import { linkModules } from "./widget.mjs";
const sources = JSON.parse(readFileSync(process.argv[2], "utf8"));
const codes = [];
const toUrl = (code) => { codes.push(code); return "data:text/javascript;base64," + Buffer.from(code).toString("base64"); };
const linked = linkModules(sources, toUrl);
const app = await import(linked.link("app.js"));
const transport = await import(linked.link("lib/transport.js"));
const missing = Object.keys(sources).filter((path) => !linked.urls.has(path));
// A relative specifier the linker did not rewrite (a statement over several lines, a dynamic import).
const unlinked = codes.filter((code) => /(from|import)\s*\(?\s*["']\.\.?\//.test(code)).length;
console.log(JSON.stringify({ mount: typeof app.mount, comm: typeof transport.commTransport, missing, unlinked }));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to load the modules")
def test_widget_links_and_loads_every_module_of_the_page(tmp_path):
    """What the widget does in the notebook, in node: link the modules into URLs, import the app."""
    (tmp_path / "widget.mjs").write_text(widget_esm())
    (tmp_path / "run.mjs").write_text(LINK_AND_IMPORT)
    (tmp_path / "modules.json").write_text(json.dumps(widget_modules()))
    result = subprocess.run(
        ["node", str(tmp_path / "run.mjs"), str(tmp_path / "modules.json")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    # Every module is reachable from the app and loads (a module left out would be dead code).
    assert json.loads(result.stdout) == {"mount": "function", "comm": "function", "missing": [], "unlinked": 0}


# ---------------------------------------------------------------------- a real kernel (nbclient)


def _notebook(cells: list[str]):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    return nb


async def _comm_request(kc: Any, comm_id: str, request: dict[str, Any], timeout: float = 120) -> list[dict[str, Any]]:
    """Send what the page's comm transport sends; collect the kernel's replies to it."""
    msg = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {"method": "custom", "content": request}})
    kc.shell_channel.send(msg)
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            m = await kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:  # queue.Empty: timed out
            break
        if m["msg_type"] != "comm_msg" or m["content"].get("comm_id") != comm_id:
            continue
        data = m["content"]["data"]
        if data.get("method") != "custom" or data["content"].get("id") != request["id"]:
            continue
        got.append(data["content"])
        if "result" in data["content"] or "error" in data["content"]:
            break
    return got


def _widget_id(outputs: list[Any]) -> str:
    views = [o for o in outputs if WIDGET_MIME in o.get("data", {})]
    assert len(views) == 1, f"expected the widget shown once in {outputs}"  # not again as the cell's value
    return views[0]["data"][WIDGET_MIME]["model_id"]


def _fastai_cell(cache: Path) -> str:
    """The README's notebook use: a fastai learner's from_learner(...).render() (the demo's learner)."""
    return f"""
from fastai.learner import load_learner
from data_adapters import from_learner
from insights_app.demos.digits import ensure_demo

files = ensure_demo({str(cache)!r})  # trains the demo's learner unless the session's cache has it
learn = load_learner(files.learner)
from_learner(learn, items=files.valid).render()
"""


@pytest.mark.slow
def test_executed_notebook_shows_the_widget_and_answers_over_the_comm(tmp_path, tmp_path_factory):
    from nbclient import NotebookClient

    cache = tmp_path_factory.getbasetemp() / "insights-cache"  # the launch tests' demo cache, when they ran
    nb = _notebook([SETUP_CELL, _fastai_cell(cache)])
    client = NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})

    async def run() -> dict[str, Any]:
        async with client.async_setup_kernel():
            for i, cell in enumerate(nb.cells):
                await client.async_execute_cell(cell, i)
            client.set_widgets_metadata()  # what a saved notebook keeps: the widget's state, app included
            comm_id, digits_id = _widget_id(nb.cells[0].outputs), _widget_id(nb.cells[1].outputs)
            config = await _comm_request(client.kc, comm_id, {"id": "t-1", "kind": "config", "body": None})
            page = await _comm_request(
                client.kc, comm_id, {"id": "t-2", "kind": "examples", "body": {"page_size": 2, "method": "Saliency"}}
            )
            bad = await _comm_request(client.kc, comm_id, {"id": "t-3", "kind": "examples", "body": {"page": -1}})
            digits = await _comm_request(
                client.kc, digits_id, {"id": "d-1", "kind": "examples", "body": {"page_size": 3, "method": "Saliency"}}
            )
            return {"config": config, "page": page, "bad": bad, "digits": digits}

    got = asyncio.run(run())
    for cell in nb.cells:
        assert not [o for o in cell.outputs if o.get("output_type") == "error"], cell.outputs
        assert not [o for o in cell.outputs if o.get("name") == "stderr" and "Traceback" in o.get("text", "")]
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    shipped = [(s["state"].get("_esm", ""), s["state"].get("_modules", {})) for s in state.values()]
    assert any(
        "export default" in esm and "export function mount" in modules.get("app.js", "") for esm, modules in shipped
    ), "the widget lacks the app"
    assert got["config"][-1]["result"]["classes"] == CLASSES
    types = [r["event"]["type"] for r in got["page"] if "event" in r]
    assert types == ["page", "example", "example", "done"], got["page"]
    assert got["page"][-1] == {"id": "t-2", "result": None}
    assert got["bad"] and got["bad"][-1]["error"].startswith("page:")
    examples = [r["event"]["example"] for r in got["digits"] if r.get("event", {}).get("type") == "example"]
    assert len(examples) == 3 and all(ex["label"]["name"] in [str(d) for d in range(10)] for ex in examples)
    assert all(ex["models"][0]["attributions"][0]["image"] for ex in examples)


# ---------------------------------------------------------------------- a real JupyterLab in Chromium

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _notebook7_available() -> bool:
    try:
        import notebook
    except ImportError:
        return False
    return int(notebook.__version__.split(".")[0]) >= 7


# JupyterLab runs its dark theme (the widget takes the theme's colours), Notebook 7 its default light one
# (the widget keeps its own light palette).
FRONTENDS = [
    pytest.param("lab", "lab/tree/insights.ipynb", "JupyterLab Dark", id="jupyterlab4-dark"),
    pytest.param(
        "notebook",
        "notebooks/insights.ipynb",
        None,
        id="notebook7",
        marks=pytest.mark.skipif(
            not _notebook7_available(), reason="Notebook 7 is not installed (pip install 'notebook>=7')"
        ),
    ),
]

# The widget's root beside what the frontend shows around it: its width and the output area's, and its
# background beside the Jupyter theme's --jp-layout-color0 (drawn by a probe element).
FRAME_JS = """() => {
  const root = document.querySelector('.jp-OutputArea .insights-app');
  const out = root.closest('.jp-OutputArea-output') || root.parentElement;
  const probe = document.createElement('div');
  probe.style.background = 'var(--jp-layout-color0)';
  document.body.append(probe);
  const jp = getComputedStyle(probe).backgroundColor;
  probe.remove();
  return {light: document.body.dataset.jpThemeLight, bg: getComputedStyle(root).backgroundColor, jp,
          width: root.getBoundingClientRect().width, room: out.getBoundingClientRect().width,
          scroll: [root.scrollWidth, root.clientWidth], height: root.getBoundingClientRect().height};
}"""


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("app, path, theme", FRONTENDS)
def test_the_widget_renders_cards_in_a_real_frontend(tmp_path, app, path, theme):
    """Start the frontend on 127.0.0.1, run the notebook's cell in Chromium, see cards, page forward;
    the widget fits the output area and follows the Jupyter theme."""
    playwright = pytest.importorskip("playwright.sync_api")
    import nbformat

    root = tmp_path / "work"
    root.mkdir()
    nbformat.write(_notebook([SETUP_CELL]), str(root / "insights.ipynb"))
    if theme:
        themes = tmp_path / "settings" / "@jupyterlab" / "apputils-extension" / "themes.jupyterlab-settings"
        themes.parent.mkdir(parents=True)
        themes.write_text(json.dumps({"theme": theme}))
    port, token = free_port(), "insights-test-token"
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
    )
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab" if app == "lab" else "notebook",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
    ]
    if app == "lab":
        cmd += ["--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.news_url=None"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for_http(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=90, process=server)
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(f"{exc}\n{log_path.read_text()[-3000:]}") from None
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(f"http://127.0.0.1:{port}/{path}?token={token}", timeout=90_000)
                page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
                try:  # the kernel is connected (best effort: the retries below cover a dropped run)
                    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
                    if app == "lab":
                        page.get_by_text(re.compile(r"\| Idle")).first.wait_for(timeout=60_000)
                except playwright.TimeoutError:
                    pass
                prompt_ran = (
                    "() => { const p = document.querySelector('.jp-Notebook .jp-Cell .jp-InputArea-prompt');"
                    " return !!p && !/\\[ \\]/.test(p.textContent); }"
                )
                for _attempt in range(3):  # a run pressed while the session is still wiring up can be dropped
                    # On a loaded machine the kernel may not have started before the page asks which one to use
                    # ("Select Kernel", preselecting Python 3): accept it.
                    accept = page.locator("dialog.jp-Dialog .jp-mod-accept")
                    if accept.count():
                        accept.first.click()
                    page.click(".jp-Notebook .jp-Cell >> nth=0 >> .jp-InputArea-editor")
                    page.keyboard.press("Control+Enter")
                    try:
                        page.wait_for_function(prompt_ran, timeout=15_000)
                        break
                    except playwright.TimeoutError:
                        continue
                widget = page.wait_for_selector(".jp-OutputArea .insights-app", timeout=120_000)
                page.wait_for_selector(".insights-app .ia-card:not(.ia-card-loading) img", timeout=180_000)
                assert page.locator(".insights-app .ia-card-id").first.inner_text().strip() == "#0"
                text = widget.inner_text()
                assert any(name in text for name in CLASSES), text[:500]
                frame = page.evaluate(FRAME_JS)
                assert frame["width"] <= frame["room"] + 0.5 and frame["scroll"][0] <= frame["scroll"][1], frame
                assert frame["height"] == 700, frame  # vis.render(height=700)
                if theme:  # dark: the theme's background
                    assert frame["light"] == "false" and frame["bg"] == frame["jp"], frame
                else:  # light: the page's own palette
                    assert frame["light"] == "true" and frame["bg"] == "rgb(244, 246, 249)", frame
                if os.environ.get("INSIGHTS_SCREENSHOTS"):
                    shots = Path(os.environ["INSIGHTS_SCREENSHOTS"])
                    shots.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(shots / f"ui-notebook-{app}.png"))
                # paging goes through the comm too
                page.locator(".insights-app button", has_text="Next").first.click()
                page.wait_for_selector(".insights-app .ia-card-id:text-is('#4')", timeout=120_000)
                # the Dataset view: the pass runs in the kernel, its progress and matrix come over the comm
                page.click(".insights-app .ia-dataset-btn")
                page.wait_for_selector(".insights-app .ia-pass-line:has-text('complete')", timeout=120_000)
                page.wait_for_selector(".insights-app .ia-confusion .ia-cm-cell", timeout=60_000)
                page.locator(".insights-app .ia-confused button").first.click()
                page.wait_for_selector(".insights-app .ia-pair-chip", timeout=60_000)
                page.wait_for_selector(".insights-app .ia-card:not(.ia-card-loading) .ia-attr img", timeout=120_000)
                stderr = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                assert not page.locator(stderr).count()
                assert not [e for e in errors if "insights" in e.lower() or "mount" in e], errors
            finally:
                browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
