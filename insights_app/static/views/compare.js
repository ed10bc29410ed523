// Compare mode: one example with several methods side by side, for every model, one target.
// Opened from a card ("Compare methods"); its state is in the URL (compare, cmp, ct, crank).
// With the page's quality metrics on, each column shows its map's metrics and "Rank by" orders
// the methods best first by one of them (its mean over the models).

import { append, clear, h, pct, put, spinner } from "../lib/dom.js";
import { select } from "../controls/fields.js";
import { openLarge } from "./enlarge.js";
import { attributionView, inputView } from "./features/index.js";
import { betterText, metricSpecs, metricValue, metricsView, short } from "./metrics.js";

const COMPARE_DEFAULTS = ["IntegratedGradients", "Saliency", "LayerGradCam", "Occlusion", "GuidedBackprop"];
const COMPARE_MAX = 6;

class CompareView {
  constructor(app) {
    this.app = app;
    this.el = h("section", { class: "ia-compare", hidden: true, "aria-label": "Compare methods" });
    this.el.addEventListener("keydown", (ev) => {
      if (ev.key !== "Escape" || !this.current || ev.defaultPrevented) return;
      ev.preventDefault();
      this.app.closeView();
    });
    this.current = null; // {id, methods, target, base} while open
    this.run = 0; // bumped to stop the workers of a previous rendering
    // Columns use the width there is: images grow with the view (up to 512 px), never below the card size.
    this.resizer = typeof ResizeObserver !== "undefined" ? new ResizeObserver(() => this.fit()) : null;
    if (this.resizer) this.resizer.observe(this.el);
  }

  /** Size the images so that the input and every method's column fill the view's width. */
  fit() {
    if (!this.current || !this.el.clientWidth) return;
    const cols = this.current.methods.length + 1;
    const room = (this.el.clientWidth - 30 - 12 * (cols - 1)) / cols - 6;
    const px = Math.round(Math.max(128, Math.min(512, room)));
    this.el.style.setProperty("--ia-img", `${px}px`);
  }

  get isOpen() {
    return this.current !== null;
  }

  writeUrl(q) {
    const c = this.current;
    if (!c) return;
    q.set("compare", c.id);
    q.set("cmp", c.methods.join(","));
    if (c.target !== null && c.target !== undefined) q.set("ct", c.target);
    if (c.rank) q.set("crank", c.rank);
  }

  open({ id, methods, target, rank }) {
    const app = this.app;
    const base = app.committed || app.bodyFromState(false);
    const chosen = methods && methods.length ? methods.filter((m) => app.methods.has(m)) : [];
    if (!chosen.length) {
      chosen.push(base.method);
      for (const m of COMPARE_DEFAULTS) if (chosen.length < 4 && app.methods.has(m) && !chosen.includes(m)) chosen.push(m);
    }
    const metrics = base.metrics || [];
    this.current = { id: Number(id), methods: chosen.slice(0, COMPARE_MAX), target: target ?? null, base,
      rank: metrics.includes(rank) ? rank : null };
    this.render();
  }

  /** Close; the answer is what gets the focus back: the card's Compare button, when it is on screen. */
  close() {
    const id = this.current ? this.current.id : null;
    this.current = null;
    this.run++;
    clear(this.el);
    const card = id === null ? null : this.app.root.querySelector(`.ia-card[data-example-id="${id}"]`);
    return card ? card.querySelector(".ia-compare-btn") : null;
  }

  destroy() {
    this.run++;
    if (this.resizer) this.resizer.disconnect();
  }

  render() {
    const app = this.app;
    const c = this.current;
    const cfg = app.config;
    const run = ++this.run;
    // The focus stays on the control that changed (a method box, the target), or moves to the title
    // when compare opens, so that keyboard and screen-reader users start from the view.
    const active = this.el.getRootNode().activeElement;
    const focusKey = active && this.el.contains(active) ? active.value ?? null : undefined;
    const refocus = active && this.el.contains(active) ? (active.name === "compare_target" ? "target" : active.name === "compare_rank" ? "rank" : "method") : "title";
    const root = clear(this.el);
    const rerender = () => { app.writeUrl(); this.render(); };
    const targetOptions = [["", "Each model's top prediction"], ...cfg.classes.map((name, i) => [String(i), name])];
    const targetSelect = select("compare_target", targetOptions, c.target === null ? "" : String(c.target), (v) => {
      c.target = v === "" ? null : Number(v);
      rerender();
    });
    const picker = h("div", { class: "ia-method-picker", role: "group", "aria-label": "Methods to compare" },
      cfg.methods.map((m) => h("label", { class: "ia-check-chip" + (c.methods.includes(m.name) ? " ia-on" : ""), title: m.help },
        h("input", { type: "checkbox", value: m.name, checked: c.methods.includes(m.name), onchange: (ev) => {
          if (ev.target.checked) {
            if (c.methods.length >= COMPARE_MAX) { ev.target.checked = false; app.showError(`Compare at most ${COMPARE_MAX} methods at once.`, null, "warning"); return; }
            c.methods.push(m.name);
          } else c.methods = c.methods.filter((x) => x !== m.name);
          rerender();
        } }), m.label)));
    const specs = metricSpecs(cfg);
    const metricNames = (c.base.metrics || []).filter((k) => specs.has(k));
    const rankSelect = metricNames.length ? select("compare_rank", [["", "Your order"], ...metricNames.map((k) => [k, `${k[0].toUpperCase()}${k.slice(1)} ${betterText(specs.get(k))}`])],
      c.rank || "", (v) => {
        c.rank = v || null;
        app.writeUrl();
        arrange();
      }) : null;
    const table = h("div", { class: "ia-compare-grid", style: { gridTemplateColumns: `calc(var(--ia-img) + 4px) repeat(${Math.max(1, c.methods.length)}, minmax(calc(var(--ia-img) + 4px), 1fr))` } });
    const inputCell = h("div", { class: "ia-compare-input" }, spinner("Loading…"));
    const heads = new Map();
    const ranks = new Map();
    for (const name of c.methods) {
      const spec = app.methods.get(name);
      const args = name === c.base.method ? c.base.arguments : spec.defaults;
      const summary = Object.entries(args || {}).filter(([, v]) => v !== null && v !== "").slice(0, 3).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("×") : v}`).join(", ");
      ranks.set(name, h("span", { class: "ia-rank", hidden: true }));
      heads.set(name, h("div", { class: "ia-compare-colhead", title: spec.help, dataset: { method: name } }, ranks.get(name), spec.label,
        summary ? h("div", { class: "ia-help" }, name === c.base.method ? `${summary} (your settings)` : summary || "defaults") : null));
    }
    const cells = [];
    const rowParts = cfg.models.map((model) => ({
      head: cfg.models.length > 1 ? [h("div", { class: "ia-compare-rowhead" }, model.name), c.methods.map(() => h("div", { class: "ia-compare-rowhead ia-filler" }))] : [],
      input: model.index === 0 ? inputCell : h("div", { class: "ia-compare-input ia-muted" }, "same input"),
      cells: new Map(c.methods.map((name) => {
        const cell = h("div", { class: "ia-compare-cell", dataset: { method: name, model: String(model.index) } }, spinner("Computing…"));
        cells.push({ cell, model: model.index, method: name });
        return [name, cell];
      })),
    }));
    // The methods in the order of the rank chosen (best first; those without a value last), else as picked.
    const order = () => {
      if (!c.rank) return c.methods.slice();
      const rank = specs.get(c.rank);
      const lower = rank.lower;
      const mean = (name) => {
        const got = done.filter((d) => d.method === name).map((d) => metricValue(d.m.metrics, c.rank)).filter((v) => v !== null);
        return got.length ? got.reduce((a, b) => a + b, 0) / got.length : null;
      };
      const scored = c.methods.map((name, i) => ({ name, i, v: mean(name) }));
      scored.sort((a, b) => (a.v === null) - (b.v === null) || (a.v === null ? 0 : (lower ? a.v - b.v : b.v - a.v)) || a.i - b.i);
      let n = 0;
      for (const { name, v } of scored) {
        const chip = ranks.get(name);
        chip.hidden = false;
        chip.textContent = v === null ? "–" : `#${++n} · ${short(v)}`;
        chip.title = v === null ? `No ${rank.label} yet` : `Rank ${n} by ${rank.label} ${betterText(rank)}: ${v}${cfg.models.length > 1 ? " (mean over the models)" : ""}`;
        chip.setAttribute("aria-label", chip.title);
        chip.setAttribute("role", "note");
      }
      return scored.map((x) => x.name);
    };
    const arrange = () => {
      if (!c.rank) for (const chip of ranks.values()) chip.hidden = true;
      const names = order();
      clear(table);
      put(table, h("div", { class: "ia-compare-colhead" }, "Input"), names.map((name) => heads.get(name)));
      for (const part of rowParts) put(table, part.head, part.input, names.map((name) => part.cells.get(name)));
    };
    append(root, [
      h("div", { class: "ia-compare-head" },
        h("button", { type: "button", class: "ia-btn", onclick: () => app.closeView() }, "‹ Back to examples"),
        h("h2", { class: "ia-compare-title", tabindex: "-1" }, `Example #${c.id}: methods side by side`),
        h("span", { class: "ia-spacer" }),
        rankSelect ? h("label", { class: "ia-inline-field ia-rank-field" }, "Rank by", rankSelect) : null,
        h("label", { class: "ia-inline-field" }, "Target", targetSelect)),
      picker,
      h("div", { class: "ia-compare-label" }),
      c.methods.length ? table : h("div", { class: "ia-empty" }, h("div", { class: "ia-empty-title" }, "Pick at least one method above.")),
    ]);
    const done = [];
    arrange();
    this.fit();
    const again = refocus === "target" ? targetSelect : refocus === "rank" ? rankSelect
      : refocus === "method" ? picker.querySelector(`input[value="${focusKey}"]`) : root.querySelector(".ia-compare-title");
    if (again) again.focus();
    const labelBox = root.querySelector(".ia-compare-label");
    let inputShown = false;
    const queue = cells.slice();
    const worker = async () => {
      while (queue.length && run === this.run) {
        const { cell, model, method } = queue.shift();
        const body = app.attributeBody(c.base, c.id, model, c.target, method);
        try {
          const result = await app.transport.request("attribute", body);
          if (run !== this.run) return;
          const ex = result.example;
          const m = ex.models[0];
          if (!inputShown) {
            inputShown = true;
            put(clear(inputCell), ex.features.map((f) => inputView(f)));
            const truth = ex.label ? `True label: ${ex.label.name}` : "No label";
            const top = m.predictions.length ? ` · ${m.name} predicts ${m.predictions[0].label} (${pct(m.predictions[0].score)})` : "";
            labelBox.textContent = truth + top;
          }
          drawCell(cell, ex, m, method, body);
          done.push({ cell, ex, m, method, body });
          if (c.rank) arrange();
        } catch (exc) {
          if (run !== this.run) return;
          put(clear(cell), h("div", { class: "ia-inline-error", role: "alert" }, exc.message || String(exc)));
          if (!inputShown && exc.field === "example_id") put(clear(inputCell), h("div", { class: "ia-inline-error" }, exc.message));
        }
      }
    };
    const drawCell = (cell, ex, m, method, body) => {
      clear(cell);
      const spec = app.methods.get(method);
      if (m.error) put(cell, h("div", { class: "ia-inline-error", role: "alert" }, m.error));
      for (const a of m.attributions) {
        put(cell, attributionView(a, { ex, model: m, method, methodLabel: spec ? spec.label : method, target: m.target,
          vis: body.visualization, config: cfg,
          onEnlarge: (attr, opener) => openLarge(app, { ex, model: m, body, feature: attr.name, opener }) }));
      }
      put(cell, metricsView(cfg, m));
    };
    // A shared scale compares one method across models (methods' units differ, so each keeps its own):
    // once every cell is in, each method's cells are drawn again on the largest of their scales.
    const share = async () => {
      if (c.base.visualization.scale !== "page" || cfg.models.length < 2) return;
      for (const name of c.methods) {
        const mine = done.filter((d) => d.method === name && !d.m.error);
        const peak = Math.max(0, ...mine.flatMap((d) => d.m.attributions.filter((a) => a.scale).map((a) => Math.max(Math.abs(a.scale.low), Math.abs(a.scale.high)))));
        if (!(peak > 0)) continue;
        for (const d of mine) {
          const body = { ...d.body, visualization: { ...d.body.visualization, scale: peak } };
          try {
            const result = await app.transport.request("attribute", body);
            if (run !== this.run) return;
            drawCell(d.cell, result.example, result.example.models[0], d.method, body);
          } catch (_) {
            /* keep the cell on its own scale */
          }
        }
      }
    };
    Promise.all([worker(), worker()]).then(share);
  }
}

export default {
  name: "compare",
  create: (app) => new CompareView(app),
  /** What a link asks compare mode to open (?compare=id&cmp=methods&ct=target), or null. */
  readUrl(q, num, app) {
    if (num("compare") === null) return null;
    const methods = (q.get("cmp") || "").split(",").filter((m) => app.methods.has(m));
    return { id: num("compare"), methods: methods.length ? methods : null, target: num("ct"), rank: q.get("crank") || null };
  },
};
