"""Where the page is shown decides its size and colours: a narrow notebook cell, a dark Jupyter theme,
a dark operating system. In headless Chromium, against the digits server of ui_helpers.

The notebook widget is tested as a notebook runs it: a harness page (served on the server's origin
by Playwright) holds a cell-sized <div>, the widget's inlined style sheet (``widget_css()``) and
the page's modules (``widget_modules()``), and calls ``widget.js``'s ``render({model, el})`` with a
stand-in for anywidget's model whose messages travel to the server over HTTP: the same app, the
same linker, the same sheet as in JupyterLab, without a kernel. Set INSIGHTS_SCREENSHOTS=/some/dir
to keep screenshots of what the tests saw.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ui_helpers import shot, wait_idle

from insights_app.transport.notebook import widget_css, widget_modules

CSS_DIR = Path(__import__("insights_app").__file__).with_name("static") / "css"
HARNESS = "widget-harness"

# JupyterLab 4's dark and light themes (theme-*-extension/index.css): the variables the page reads.
JUPYTER_DARK = {
    "--jp-layout-color0": "#111",
    "--jp-layout-color1": "#212121",
    "--jp-layout-color2": "#424242",
    "--jp-layout-color3": "#616161",
    "--jp-ui-font-color0": "#fff",
    "--jp-ui-font-color1": "rgba(255,255,255,.87)",
    "--jp-ui-font-color2": "rgba(255,255,255,.54)",
    "--jp-content-font-color2": "rgba(255,255,255,.7)",
    "--jp-border-color1": "#616161",
    "--jp-border-color2": "#424242",
    "--jp-brand-color1": "#2196f3",
    "--jp-brand-color2": "#64b5f6",
    "--jp-brand-color3": "#bbdefb",
    "--jp-input-background": "#424242",
    "--jp-ui-inverse-font-color0": "#000",
}
JUPYTER_LIGHT = {
    "--jp-layout-color0": "white",
    "--jp-layout-color1": "white",
    "--jp-layout-color2": "#eee",
    "--jp-ui-font-color0": "rgba(0,0,0,1)",
    "--jp-ui-font-color1": "rgba(0,0,0,.87)",
    "--jp-ui-font-color2": "rgba(0,0,0,.54)",
    "--jp-border-color1": "#bdbdbd",
    "--jp-border-color2": "#e0e0e0",
    "--jp-brand-color1": "#1976d2",
}

HARNESS_SCRIPT = r"""
import widget from "./static/widget.js";
import { httpTransport } from "./static/lib/transport.js";

// What the widget needs of anywidget's model: get, set, on/off, send; and kernel replies as msg:custom.
const http = httpTransport("");
const handlers = new Map();
const fire = (name, arg) => { for (const fn of handlers.get(name) || []) fn(arg); };
const state = { _modules: JSON.parse(document.getElementById("modules").textContent), height: HEIGHT };
const running = new Map();
const model = {
  get: (key) => state[key],
  set: (key, value) => { state[key] = value; fire(`change:${key}`); },
  on: (name, fn) => { if (!handlers.has(name)) handlers.set(name, new Set()); handlers.get(name).add(fn); },
  off: (name, fn) => { if (handlers.has(name)) handlers.get(name).delete(fn); },
  send: ({ id, kind, body }) => {
    if (kind === "cancel") { if (running.has(id)) running.get(id).abort(); return; }
    const control = new AbortController();
    running.set(id, control);
    const onEvent = kind === "examples" ? (event) => fire("msg:custom", { id, event }) : undefined;
    http.request(kind, body, { onEvent, signal: control.signal })
      .then((result) => fire("msg:custom", { id, result: onEvent ? null : result }),
            (err) => { if (err.name !== "AbortError") fire("msg:custom", { id, error: err.message }); })
      .finally(() => running.delete(id));
  },
};
window.harness = { model, cleanup: await widget.render({ model, el: document.getElementById("cell") }) };
"""


def harness_html(width: int = 400, height=900, jupyter: dict[str, str] = None, dark: bool = False) -> str:
    """A notebook-like page: the widget's sheet, the Jupyter theme's variables, one output cell."""
    theme = ""
    body = ""
    if jupyter is not None:
        theme = ":root { " + " ".join(f"{k}: {v};" for k, v in jupyter.items()) + " }"
        body = f' data-jp-theme-light="{"false" if dark else "true"}" class="jp-ThemedContainer"'
    modules = json.dumps(widget_modules()).replace("</", "<\\/")
    script = HARNESS_SCRIPT.replace("HEIGHT", json.dumps(height))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>cell</title>
<style>{widget_css()}</style>
<style>{theme} body {{ margin: 16px; background: var(--jp-layout-color0, white); }}
#cell {{ width: {width}px; }}</style></head>
<body{body}><div id="cell" class="jp-OutputArea-output"></div>
<script type="application/json" id="modules">{modules}</script>
<script type="module">{script}</script></body></html>"""


def open_widget(ui, server, **kwargs) -> None:
    url = server.url + HARNESS
    html = harness_html(**kwargs)
    ui.page.route(url, lambda route: route.fulfill(status=200, content_type="text/html", body=html))
    ui.page.goto(url)
    ui.page.unroute(url)
    ui.page.wait_for_selector("#cell .insights-app .ia-card", timeout=30_000)
    wait_idle(ui.page)


# ---------------------------------------------------------------- colours, as the user reads them


def parse_color(text: str) -> tuple[float, float, float, float]:
    """A computed CSS colour (rgb(), rgba(), color(srgb ...)) as r, g, b in 0..255 and alpha."""
    text = text.strip()
    m = re.fullmatch(r"rgba?\(([^)]*)\)", text)
    if m:
        parts = [float(p) for p in re.split(r"[,\s/]+", m.group(1).strip()) if p]
        return parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else 1.0
    m = re.fullmatch(r"color\(srgb ([^)]*)\)", text)
    if m:
        parts = [float(p) for p in re.split(r"[\s/]+", m.group(1).strip()) if p]
        return parts[0] * 255, parts[1] * 255, parts[2] * 255, parts[3] if len(parts) > 3 else 1.0
    raise ValueError(f"unexpected colour {text!r}")


def over(fg: tuple[float, ...], bg: tuple[float, ...]) -> tuple[float, float, float]:
    a = fg[3]
    return tuple(a * f + (1 - a) * b for f, b in zip(fg[:3], bg[:3]))


def luminance(rgb) -> float:
    def channel(v: float) -> float:
        v /= 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def hex_rgb(value: str) -> tuple[float, float, float, float]:
    v = value.lstrip("#")
    return int(v[0:2], 16), int(v[2:4], 16), int(v[4:6], 16), 1.0


# An element's text colour and the backgrounds behind it, innermost first (to composite).
COLOURS_JS = """(sel) => {
  const e = [...document.querySelectorAll(sel)].find((x) => x.offsetParent !== null && x.textContent.trim());
  if (!e) return null;
  const layers = [];
  for (let n = e; n; n = n.parentElement) layers.push(getComputedStyle(n).backgroundColor);
  return {color: getComputedStyle(e).color, layers};
}"""

# What a user reads, and the colour pair it is drawn in.
READ = {
    "body text on the page": ".insights-app .ia-status-text",
    "a section title (muted on the sidebar)": ".insights-app .ia-section-title",
    "a score (muted on a card)": ".insights-app .ia-card .ia-pred-score",
    "a card's number": ".insights-app .ia-card-id",
    "a model name": ".insights-app .ia-model-name",
    "the target prediction (accent text on accent-weak)": ".insights-app .ia-pred-target .ia-pred-label",
    "a download link (accent on a card)": ".insights-app .ia-download",
    "a chosen segment (accent on accent-weak)": ".insights-app .ia-seg input:checked + label",
    "the Fetch button": ".insights-app .ia-btn-primary",
    "a right/wrong badge": ".insights-app .ia-badge",
    "the header": ".insights-app .ia-brand",
}


def readable(page) -> dict[str, float]:
    """Contrast ratio of each READ element that is on screen (text over its background)."""
    ratios = {}
    for what, sel in READ.items():
        got = page.evaluate(COLOURS_JS, sel)
        if not got:
            continue
        bg = (255.0, 255.0, 255.0, 1.0)
        for layer in reversed(got["layers"]):
            bg = (*over(parse_color(layer), bg), 1.0)
        ratios[what] = round(contrast(over(parse_color(got["color"]), bg), bg), 2)
    return ratios


SIDEWAYS_JS = """() => [...document.querySelectorAll('.insights-app, .insights-app .ia-main, .insights-app .ia-toolbar')]
  .filter((e) => e.scrollWidth > e.clientWidth + 1).map((e) => `${e.className}: ${e.scrollWidth} > ${e.clientWidth}`)"""


def overflowing(page) -> list[str]:
    """The parts of the app whose content is wider than they are (hidden or scrolled sideways)."""
    return page.evaluate(SIDEWAYS_JS)


def root_colours(page, sel: str = ".insights-app"):
    got = page.eval_on_selector(sel, "e => [getComputedStyle(e).backgroundColor, getComputedStyle(e).color]")
    return parse_color(got[0]), parse_color(got[1])


# ---------------------------------------------------------------- the palette itself (no browser)


def blocks(css: str) -> list[tuple[str, dict[str, str]]]:
    """(selector, {variable: value}) of every rule declaring --ia-* variables."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    out = []
    for sel, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        decls = dict(re.findall(r"(--ia-[\w-]+)\s*:\s*([^;]+);", body))
        if decls:
            out.append((" ".join(sel.split()), decls))
    return out


def test_every_scheme_defines_the_whole_palette_and_the_dark_one_reads_at_wcag_aa():
    light = dict(
        b for sel, d in blocks((CSS_DIR / "layout.css").read_text()) if sel == ".insights-app" for b in d.items()
    )
    dark = blocks((CSS_DIR / "theme.css").read_text())
    (host,) = [d for sel, d in dark if 'data-jp-theme-light="false"' in sel and "vscode-dark" in sel]
    (page,) = [d for sel, d in dark if sel.startswith("body.insights-standalone")]
    # Both dark schemes set the same variables, and only variables the light palette has.
    assert set(host) == set(page)
    assert set(page) <= set(light), set(page) - set(light)
    # Every colour of the chrome is a variable: no colour literal outside the palettes, but data
    # colours (the fallback bar colours a palette overrides, a chart's series, the logo).
    data = {"#22a05a", "#d9453b", "#d6601c", "#2f6bff", "#22c38e", "#ffd23f", "#ff5a5f"}
    for sheet in sorted(CSS_DIR.glob("*.css")):
        text = re.sub(r"/\*.*?\*/", "", sheet.read_text(), flags=re.S)
        if sheet.name in ("layout.css", "theme.css"):  # the palettes themselves; the page's <body>
            text = re.sub(r"--ia-[\w-]+\s*:[^;]+;", "", text)
            text = re.sub(r"body\.insights-standalone\s*\{[^}]*\}", "", text)
        literals = set(re.findall(r"#[0-9a-fA-F]{3,8}\b", text)) - data
        literals |= {c for c in re.findall(r"rgba?\([^)]*\)", text) if not c.startswith("rgba(16, 24, 40")}  # shadows
        assert not literals, f"{sheet.name}: colour literals {literals}; use an --ia-* variable"
    # The standalone dark palette's text keeps WCAG AA (4.5:1) on what it is drawn on.
    c = {k: hex_rgb(v) for k, v in page.items() if v.startswith("#")}
    pairs = [
        ("text", "bg"),
        ("text", "panel"),
        ("text", "field"),
        ("text-2", "panel"),
        ("muted", "bg"),
        ("muted", "panel"),
        ("muted", "field"),
        ("muted", "accent-weak"),
        ("accent", "panel"),
        ("accent", "bg"),
        ("accent", "accent-weak"),
        ("accent-text", "accent-weak"),
        ("on-accent", "accent"),
        ("on-accent", "accent-hover"),
        ("danger", "danger-weak"),
        ("danger-text", "danger-weak"),
        ("danger", "panel"),
        ("warn", "warn-weak"),
        ("warn-text", "warn-weak"),
        ("warn", "panel"),
        ("ok", "ok-weak"),
        ("ok-text", "ok-weak"),
        ("ok", "panel"),
        ("header-text", "header-bg"),
        ("header-muted", "header-bg"),
        ("text", "hover"),
        ("muted", "hover"),
        ("text", "well"),
    ]
    low = {
        f"{a} on {b}": round(contrast(c[f"--ia-{a}"], c[f"--ia-{b}"]), 2)
        for a, b in pairs
        if contrast(c[f"--ia-{a}"], c[f"--ia-{b}"]) < 4.5
    }
    assert not low, low


# ---------------------------------------------------------------- in the browser


def test_a_400px_cell_gets_the_narrow_layout_without_horizontal_overflow(ui, digits_server):
    page = ui.page
    page.set_viewport_size({"width": 480, "height": 1000})
    open_widget(ui, digits_server, width=400)
    assert not overflowing(page)
    got = page.evaluate("""() => {
      const cell = document.getElementById('cell'), root = cell.querySelector('.insights-app');
      const main = root.querySelector('.ia-main'), card = root.querySelector('.ia-card');
      const box = (e) => e.getBoundingClientRect();
      return {cell: [cell.scrollWidth, cell.clientWidth], root: [root.scrollWidth, root.clientWidth, box(root).width],
              main: [main.scrollWidth, main.clientWidth], card: [box(card).left, box(card).right],
              cellBox: [box(cell).left, box(cell).right], page: [document.documentElement.scrollWidth, innerWidth],
              sidebarAbove: box(root.querySelector('.ia-sidebar')).bottom <= box(main).top + 1,
              cards: root.querySelectorAll('.ia-card').length};
    }""")
    assert got["cell"][0] <= got["cell"][1] and got["root"][0] <= got["root"][1], got
    assert got["root"][2] <= 400 and got["main"][0] <= got["main"][1], got  # nothing scrolls sideways
    assert got["page"][0] <= got["page"][1], got
    # The cards use the cell's width and lie inside it; the form is above them, not beside.
    assert got["cellBox"][0] <= got["card"][0] < got["card"][1] <= got["cellBox"][1], got
    assert got["card"][1] - got["card"][0] >= 300 and got["sidebarAbove"] and got["cards"] >= 1, got
    shot(page, "theme-widget-400px")
    card = page.locator(".ia-card").first
    card.scroll_into_view_if_needed()
    assert card.locator("img").first.is_visible()


def test_the_height_trait_sizes_the_widget_and_zero_lets_it_grow(ui, digits_server):
    open_widget(ui, digits_server, width=1000, height=600)
    page = ui.page
    height = "() => document.querySelector('#cell .insights-app').getBoundingClientRect().height"
    assert page.evaluate(height) == 600
    page.evaluate("() => window.harness.model.set('height', 700)")
    assert page.evaluate(height) == 700
    page.evaluate("() => window.harness.model.set('height', 0)")  # and None: no fixed height
    grown = page.evaluate("""() => {
      const root = document.querySelector('#cell .insights-app'), main = root.querySelector('.ia-main');
      return {root: root.getBoundingClientRect().height, main: [main.scrollHeight, main.clientHeight]};
    }""")
    assert grown["main"][0] <= grown["main"][1] + 1, grown  # the cards are not scrolled inside the widget
    assert grown["root"] >= grown["main"][0], grown


def test_a_dark_jupyter_theme_darkens_the_widget_and_a_light_one_keeps_it_light(ui, digits_server):
    page = ui.page
    page.emulate_media(color_scheme="dark")  # the system's preference never decides for the widget
    open_widget(ui, digits_server, width=900, jupyter=JUPYTER_DARK, dark=True)
    bg, fg = root_colours(page, "#cell .insights-app")
    assert bg[:3] == (17, 17, 17) and luminance(over(fg, bg)) > 0.6  # --jp-layout-color0; light text
    card_bg, _ = root_colours(page, ".ia-card")
    assert card_bg[:3] == (33, 33, 33)  # --jp-layout-color1
    assert not overflowing(page)  # 900px: the sidebar beside the cards, the toolbar wraps
    ratios = readable(page)
    assert len(ratios) >= 7 and min(ratios.values()) >= 4.5, ratios
    shot(page, "theme-widget-jupyter-dark")

    open_widget(ui, digits_server, width=900, jupyter=JUPYTER_LIGHT, dark=False)
    bg, fg = root_colours(page, "#cell .insights-app")
    assert bg[:3] == (244, 246, 249) and luminance(fg) < 0.05  # the page's own light palette
    assert min(readable(page).values()) >= 4.5
    shot(page, "theme-widget-jupyter-light-os-dark")


def test_the_standalone_page_follows_the_systems_dark_mode(ui, digits_server):
    page = ui.page
    page.emulate_media(color_scheme="dark")
    page.goto(digits_server.url + "?method=Saliency&size=4")
    wait_idle(page)
    bg, fg = root_colours(page)
    assert bg[:3] == (17, 22, 29) and luminance(fg) > 0.6
    body = parse_color(page.evaluate("() => getComputedStyle(document.body).backgroundColor"))
    assert body[:3] == (17, 22, 29)
    ratios = readable(page)
    assert len(ratios) >= 7 and min(ratios.values()) >= 4.5, ratios
    assert page.evaluate("() => getComputedStyle(document.querySelector('select')).colorScheme") == "dark"
    shot(page, "theme-standalone-dark")
    page.emulate_media(color_scheme="light")
    bg, fg = root_colours(page)
    assert bg[:3] == (244, 246, 249) and luminance(fg) < 0.05
