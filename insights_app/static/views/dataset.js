// The Dataset view: where the model is wrong, over the whole dataset (the dataset pass), each number
// a link to the cards that make it: accuracy and per-class scores, the confusion matrix, the most
// confused pairs, the largest losses, the confidence histogram. Its state is in the URL (?dataset=model).

import { clear, h, pct, put, spinner } from "../lib/dom.js";
import { TRIAGE_DEFAULTS } from "../lib/state.js";
import { select } from "../controls/fields.js";
import { DARK_TEXT, readableOn } from "../lib/colors.js";
import { methodReport } from "./method-report.js";

const TABLE_MAX = 25; // up to this many classes, the matrix is a table of numbers; past it, a canvas heat map
const ROTATE_OVER = 4; // class names longer than this many characters make the matrix's column heads vertical
const REFRESH_MS = 2000; // while the pass runs, the summary is read again this often

class DatasetView {
  constructor(app) {
    this.app = app;
    this.el = h("section", { class: "ia-dataset", hidden: true, "aria-label": "Dataset overview" });
    this.current = null; // {model, normalize, sort} while open
    this.run = 0;
    this.watching = null;
    this.report = methodReport(app); // kept across renders (a model switch, a reopening): its tables stay
  }

  get isOpen() {
    return this.current !== null;
  }

  writeUrl(q) {
    if (this.current) q.set("dataset", this.current.model);
  }

  open({ model = 0 } = {}) {
    const m = Math.max(0, Math.min(this.app.config.models.length - 1, Number(model) || 0));
    this.current = { model: m, normalize: false, sort: { key: "index", desc: false } };
    this.render(true);
  }

  /** Close; the answer is what gets the focus back (the toolbar's Dataset button). */
  close() {
    this.current = null;
    this.run++;
    if (this.watching) this.watching.abort();
    this.watching = null;
    this.report.stop();
    clear(this.el);
    return this.app.root.querySelector(".ia-dataset-btn");
  }

  destroy() {
    this.run++;
    if (this.watching) this.watching.abort();
    this.report.stop();
  }

  /** Show the cards `filter` selects (a cell, a pair, the loss order) in the examples view. */
  showCards(filter) {
    const app = this.app;
    const f = app.state.filter;
    Object.assign(f, { classes: [], prediction: "all", class_source: app.config.filters.class_source[0], ...TRIAGE_DEFAULTS, ...filter });
    app.refreshFilters();
    app.closeView();
    app.fetchPage(0);
  }

  render(first = false) {
    const app = this.app;
    const c = this.current;
    const run = ++this.run;
    const cfg = app.config;
    const modelSelect = cfg.models.length > 1 ? select("dataset_model", cfg.models.map((m) => [String(m.index), m.name]), String(c.model), (v) => {
      c.model = Number(v);
      app.writeUrl();
      this.render();
    }) : null;
    this.progressBox = h("div", { class: "ia-pass" });
    this.body = h("div", { class: "ia-dataset-body" }, spinner("Reading the dataset pass…"));
    put(clear(this.el),
      h("div", { class: "ia-compare-head" },
        h("button", { type: "button", class: "ia-btn", onclick: () => app.closeView() }, "‹ Back to examples"),
        h("h2", { class: "ia-compare-title ia-dataset-title", tabindex: "-1" }, `Dataset: ${cfg.models[c.model].name}`),
        h("span", { class: "ia-spacer" }),
        modelSelect ? h("label", { class: "ia-inline-field" }, "Model", modelSelect) : null),
      this.progressBox, this.body, this.report.el);
    if (first) this.el.querySelector(".ia-dataset-title").focus();
    this.watch("status", run, true);
  }

  /** Start, cancel or look at the pass and follow its progress; the summary follows along. Opening the
   * view starts a pass that never ran (`startIfIdle`); one the user cancelled stays paused until Resume. */
  async watch(action, run, startIfIdle = false) {
    const app = this.app;
    if (this.watching) this.watching.abort();
    const ctrl = typeof AbortController !== "undefined" ? new AbortController() : null;
    this.watching = ctrl;
    let last = 0;
    let state = null;
    const onEvent = (ev) => {
      if (run !== this.run || !ev || ev.type !== "progress") return;
      state = ev;
      this.renderProgress(ev, run);
      const now = Date.now();
      if (ev.state !== "running" || now - last > REFRESH_MS) {
        last = now;
        this.loadSummary(run);
      }
    };
    try {
      for (let i = 0; i < 10000 && run === this.run; i++) {
        const asked = i === 0 ? action : startIfIdle && state && state.state === "idle" ? "start" : "status";
        await app.transport.request("dataset_pass", { action: asked }, { onEvent, signal: ctrl ? ctrl.signal : undefined });
        if (!state || (state.state !== "running" && !(startIfIdle && state.state === "idle" && asked !== "start"))) break;
      }
    } catch (exc) {
      if (run !== this.run || (exc && exc.name === "AbortError")) return;
      app.showError(exc.message || String(exc));
    }
    if (run === this.run) this.loadSummary(run);
  }

  renderProgress(p, run) {
    const box = this.progressBox;
    const pctDone = p.total ? Math.min(100, (100 * p.done) / p.total) : p.state === "done" ? 100 : null;
    const parts = [p.total ? `${p.done.toLocaleString()} of ${p.total.toLocaleString()} examples` : `${p.done.toLocaleString()} examples`];
    if (p.state === "running" && p.rate) parts.push(`${Math.round(p.rate).toLocaleString()} per second`);
    if (p.state === "running" && p.eta_s !== null && p.eta_s !== undefined) parts.push(`about ${Math.ceil(p.eta_s)} s left`);
    if (p.failed_examples) parts.push(`${p.failed_examples} failed`);
    const words = { idle: "Not started", running: "Dataset pass running", paused: "Dataset pass paused", done: "Dataset pass complete", failed: "Dataset pass stopped" };
    const button = p.state === "running"
      ? h("button", { type: "button", class: "ia-btn ia-pass-cancel", onclick: () => this.watch("cancel", run) }, "Cancel")
      : !p.complete ? h("button", { type: "button", class: "ia-btn ia-btn-primary ia-pass-start", onclick: () => this.watch("start", run) }, p.done ? "Resume" : "Start") : null;
    put(clear(box),
      h("div", { class: "ia-pass-line" },
        h("strong", null, words[p.state] || p.state), h("span", { class: "ia-muted" }, parts.join(" · ")), h("span", { class: "ia-spacer" }), button),
      h("div", { class: "ia-pass-bar", role: "progressbar", "aria-label": "Dataset pass", "aria-valuemin": "0", "aria-valuemax": "100",
        "aria-valuenow": pctDone === null ? null : String(Math.round(pctDone)) },
      h("span", { class: "ia-pass-fill" + (pctDone === null ? " ia-pass-indeterminate" : ""), style: { width: pctDone === null ? "30%" : `${pctDone}%` } })),
      p.message ? h("div", { class: "ia-help" }, p.message) : null);
  }

  async loadSummary(run) {
    const app = this.app;
    const c = this.current;
    if (!c) return;
    if (this.loading) { // one read at a time; the last word is read again once it is in
      this.reload = true;
      return;
    }
    this.loading = true;
    try {
      const s = await app.transport.request("dataset", { model: c.model });
      if (run === this.run && this.current) this.renderSummary(s);
    } catch (exc) {
      if (run === this.run) put(clear(this.body), h("div", { class: "ia-alert ia-alert-error", role: "alert" }, exc.message || String(exc)));
    } finally {
      this.loading = false;
    }
    if (this.reload && run === this.run) {
      this.reload = false;
      this.loadSummary(run);
    }
  }

  renderSummary(s) {
    const cfg = this.app.config;
    const c = this.current;
    const tiles = h("div", { class: "ia-tiles" },
      tile("Examples", s.examples.toLocaleString()),
      tile("Labeled", s.labeled.toLocaleString()),
      tile("Accuracy", s.accuracy === null ? "—" : pct(s.accuracy)),
      tile("Failed", String(s.failed)),
      tile("Loss", s.loss.name || "none"),
      s.disagree !== null ? tile("Models disagree", h("button", { type: "button", class: "ia-link", onclick: () => this.showCards({ disagree: true, model: c.model }) }, String(s.disagree))) : null);
    const notes = [s.loss.note, !s.labeled && s.examples ? "No example has a label: accuracy, the confusion matrix and the losses need labels; the predicted classes and the confidence are shown." : ""].filter(Boolean);
    const sections = [tiles, notes.length ? h("div", { class: "ia-alert ia-alert-warning" }, notes.join(" ")) : null];
    if (s.labeled) {
      sections.push(h("div", { class: "ia-dataset-row" },
        card("Confusion matrix", this.matrix(s), h("label", { class: "ia-switch" },
          h("input", { type: "checkbox", checked: c.normalize, onchange: (ev) => { c.normalize = ev.target.checked; this.renderSummary(s); } }), "Normalize by row"), "ia-dcard-matrix"),
        card("Most confused", this.confusedList(s))));
      sections.push(card("Largest losses", this.lossTable(s),
        s.top_losses.length ? h("button", { type: "button", class: "ia-btn ia-btn-small", onclick: () => this.showCards({ order: "loss", model: c.model }) }, "All cards, largest loss first") : null));
    }
    sections.push(h("div", { class: "ia-dataset-row" },
      card("Confidence of the top prediction", histogram(s.histogram, Boolean(s.labeled))),
      card(s.labeled ? "Per class" : "Predicted classes", this.classTable(s))));
    if (s.failures.length) {
      sections.push(card(`Examples the model failed on (${s.failed})`, h("ul", { class: "ia-failures" },
        s.failures.map((f) => h("li", null, `#${f.id}: ${f.error}`)))));
    }
    put(clear(this.body), sections);
  }

  matrix(s) {
    const cfg = this.app.config;
    const c = this.current;
    const shown = s.confusion.classes;
    const counts = s.confusion.counts;
    if (!shown.length) return h("div", { class: "ia-help" }, "No confusion yet.");
    const rowTotals = s.confusion.row_totals;
    const value = (i, j) => (c.normalize ? (rowTotals[i] ? counts[i][j] / rowTotals[i] : 0) : counts[i][j]);
    // Right and wrong are scaled apart: one large diagonal must not wash out every confusion.
    const maxOf = (diag) => Math.max(1e-9, ...counts.flatMap((row, i) => row.map((_, j) => ((i === j) === diag ? value(i, j) : 0))));
    const maxDiag = maxOf(true);
    const maxOff = maxOf(false);
    const shade = (i, j) => value(i, j) / (i === j ? maxDiag : maxOff);
    const note = s.confusion.restricted ? h("div", { class: "ia-help" }, `${cfg.classes.length} classes: the matrix shows the ${shown.length} classes of the most confused pairs.`) : null;
    const open = (i, j) => this.showCards({ pair: { actual: shown[i], predicted: shown[j] }, model: c.model });
    if (shown.length <= TABLE_MAX) {
      // Column heads stand on end only when a name is long: one-letter classes stay level (no empty band).
      const rotated = shown.some((k) => String(cfg.classes[k]).length > ROTATE_OVER);
      const table = h("table", { class: "ia-confusion" + (rotated ? " ia-cm-rotated" : "") },
        h("caption", { class: "ia-sr-only" }, "Confusion matrix: rows are the true classes, columns the predicted ones"),
        h("thead", null, h("tr", null, h("th", { scope: "col", class: "ia-cm-corner" }, "actual \\ predicted"),
          shown.map((k) => h("th", { scope: "col", class: "ia-cm-col" }, h("span", null, cfg.classes[k]))))),
        h("tbody", null, shown.map((k, i) => h("tr", null, h("th", { scope: "row" }, cfg.classes[k]),
          shown.map((_, j) => {
            const v = value(i, j);
            const label = `${cfg.classes[k]} predicted as ${cfg.classes[shown[j]]}: ${counts[i][j]}`;
            const text = c.normalize ? (v ? v.toFixed(2) : "0") : String(v);
            return h("td", { class: i === j ? "ia-cm-diag" : "" },
              counts[i][j] ? h("button", { type: "button", class: "ia-cm-cell", title: label, "aria-label": label,
                style: readableCell(shade(i, j), i === j), onclick: () => open(i, j) }, text)
                : h("span", { class: "ia-cm-zero" }, text));
          })))));
      return h("div", { class: "ia-cm-wrap" }, note, table);
    }
    return h("div", { class: "ia-cm-wrap" }, note, heatmap(cfg, shown, counts, shade, open));
  }

  confusedList(s) {
    const cfg = this.app.config;
    if (!s.most_confused.length) return h("div", { class: "ia-help" }, "No example is misclassified.");
    return h("ol", { class: "ia-confused" }, s.most_confused.slice(0, 20).map((p) => h("li", null,
      h("button", { type: "button", class: "ia-link", onclick: () => this.showCards({ pair: { actual: p.actual, predicted: p.predicted }, model: this.current.model }) },
        `${cfg.classes[p.actual]} → ${cfg.classes[p.predicted]}`),
      h("span", { class: "ia-muted" }, ` ${p.count}`))));
  }

  lossTable(s) {
    const cfg = this.app.config;
    if (!s.top_losses.length) return h("div", { class: "ia-help" }, s.loss.note || "No loss yet.");
    return h("table", { class: "ia-table" },
      h("thead", null, h("tr", null, ["Example", "Actual", "Predicted", "Result", "Loss", "Probability", "P(actual)"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", null, s.top_losses.map((r) => h("tr", { class: r.actual === r.predicted ? "ia-loss-right" : "ia-loss-wrong" },
        h("td", null, `#${r.id}`), h("td", null, cfg.classes[r.actual]), h("td", null, cfg.classes[r.predicted]),
        // A large loss on a right prediction (low confidence) is not a mistake: say which rows are.
        h("td", null, r.actual === r.predicted
          ? h("span", { class: "ia-badge ia-badge-good", title: "The top prediction is the true label (the loss is its low confidence)" }, "✓ Correct")
          : h("span", { class: "ia-badge ia-badge-bad", title: "The top prediction differs from the true label" }, "✗ Wrong")),
        h("td", { class: "ia-num" }, r.loss === null ? "—" : r.loss.toFixed(3)), h("td", { class: "ia-num" }, pct(r.probability)),
        h("td", { class: "ia-num" }, r.label_probability === null ? "—" : pct(r.label_probability))))));
  }

  classTable(s) {
    const c = this.current;
    const cols = s.labeled
      ? [["name", "Class"], ["precision", "Precision"], ["recall", "Recall"], ["f1", "F1"], ["support", "Support"], ["predicted", "Predicted"]]
      : [["name", "Class"], ["predicted", "Predicted"]];
    const rows = [...s.per_class].sort((a, b) => {
      const k = c.sort.key;
      const d = k === "name" ? String(a.name).localeCompare(String(b.name)) : (a[k] ?? 0) - (b[k] ?? 0);
      return (c.sort.desc ? -d : d) || a.index - b.index;
    });
    const header = cols.map(([key, label]) => {
      const sorted = c.sort.key === key;
      return h("th", { scope: "col", "aria-sort": sorted ? (c.sort.desc ? "descending" : "ascending") : "none" },
        h("button", { type: "button", class: "ia-sort", onclick: () => { c.sort = { key, desc: sorted ? !c.sort.desc : key !== "name" }; this.renderSummary(s); } },
          label, sorted ? (c.sort.desc ? " ▾" : " ▴") : ""));
    });
    return h("div", { class: "ia-table-scroll" }, h("table", { class: "ia-table ia-per-class" },
      h("thead", null, h("tr", null, header)),
      h("tbody", null, rows.map((r) => h("tr", null, cols.map(([key]) => h("td", { class: key === "name" ? "" : "ia-num" },
        key === "name" ? r.name : ["precision", "recall", "f1"].includes(key) ? (r[key] === null ? "—" : r[key].toFixed(3)) : String(r[key]))))))));
  }
}

function tile(label, value) {
  return h("div", { class: "ia-tile" }, h("div", { class: "ia-tile-label" }, label), h("div", { class: "ia-tile-value" }, value));
}

function card(title, content, extra = null, cls = "") {
  return h("section", { class: `ia-dcard ${cls}` }, h("div", { class: "ia-dcard-head" }, h("h3", null, title), h("span", { class: "ia-spacer" }), extra), content);
}

const RIGHT = [30, 63, 158]; // the diagonal: blue
const WRONG = [168, 67, 15]; // off it: orange

/** A cell's colour: blue on the diagonal (right), orange off it (wrong), by its share `t` of the largest. */
function cellColour(t, diagonal) {
  return `rgb(${shadeOf(t, diagonal).join(", ")})`;
}

function shadeOf(t, diagonal) {
  const a = Math.max(0.12, Math.min(1, t));
  return (diagonal ? RIGHT : WRONG).map((c) => Math.round(255 + (c - 255) * a));
}

/** A numbered cell's colours with its count readable (WCAG AA, 4.5:1): dark text on light shades, white on
 * dark ones; a mid shade, where neither reads, is moved to the nearer side. */
function readableCell(t, diagonal) {
  return readableOn(shadeOf(t, diagonal), { dark: DARK_TEXT, toward: t >= 0.5 ? 0 : 255 });
}

/** The confusion matrix of many classes as a canvas: hover says the cell, a click (or Enter) opens it. */
function heatmap(cfg, shown, counts, shade, open) {
  const n = shown.length;
  const cell = Math.max(4, Math.min(12, Math.floor(640 / n)));
  const canvas = h("canvas", { width: n * cell, height: n * cell, class: "ia-cm-canvas", tabindex: "0", role: "img",
    "aria-label": `Confusion matrix of ${n} classes; arrow keys move, Enter shows the cell's examples` });
  const ctx = canvas.getContext("2d");
  const draw = (cursor) => {
    ctx.fillStyle = "rgb(255, 255, 255)";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
      if (!counts[i][j]) continue;
      ctx.fillStyle = cellColour(shade(i, j), i === j);
      ctx.fillRect(j * cell, i * cell, cell, cell);
    }
    if (cursor) {
      ctx.strokeStyle = "rgb(17, 17, 17)";
      ctx.lineWidth = 2;
      ctx.strokeRect(cursor[1] * cell + 1, cursor[0] * cell + 1, cell - 2, cell - 2);
    }
  };
  const readout = h("div", { class: "ia-cm-readout", "aria-live": "polite" }, "Point at a cell.");
  let cursor = [0, 0];
  const say = ([i, j]) => { readout.textContent = `${cfg.classes[shown[i]]} predicted as ${cfg.classes[shown[j]]}: ${counts[i][j]}`; };
  const at = (ev) => {
    const r = canvas.getBoundingClientRect();
    const j = Math.floor(((ev.clientX - r.left) / r.width) * n);
    const i = Math.floor(((ev.clientY - r.top) / r.height) * n);
    return i >= 0 && j >= 0 && i < n && j < n ? [i, j] : null;
  };
  canvas.addEventListener("mousemove", (ev) => { const p = at(ev); if (p) { say(p); canvas.style.cursor = counts[p[0]][p[1]] ? "pointer" : "default"; } });
  canvas.addEventListener("click", (ev) => { const p = at(ev); if (p && counts[p[0]][p[1]]) open(p[0], p[1]); });
  canvas.addEventListener("keydown", (ev) => {
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (moves[ev.key]) {
      ev.preventDefault();
      cursor = [Math.max(0, Math.min(n - 1, cursor[0] + moves[ev.key][0])), Math.max(0, Math.min(n - 1, cursor[1] + moves[ev.key][1]))];
      draw(cursor);
      say(cursor);
    } else if (ev.key === "Enter" && counts[cursor[0]][cursor[1]]) {
      ev.preventDefault(); // else the key's press lands on whatever gets the focus next (and clicks it)
      open(cursor[0], cursor[1]);
    }
  });
  canvas.addEventListener("focus", () => { draw(cursor); say(cursor); });
  canvas.addEventListener("blur", () => draw(null));
  draw(null);
  return h("div", null, h("div", { class: "ia-cm-axes ia-muted" }, "Rows: actual class · columns: predicted class"), canvas, readout);
}

/** The smallest of 1, 2, 5 × 10^k at or above `n` (a count axis' top). */
function niceCeil(n) {
  const p = 10 ** Math.floor(Math.log10(Math.max(1, n)));
  return [1, 2, 5, 10].map((m) => m * p).find((v) => v >= n);
}

/** Stacked bars of the confidence histogram: correct and incorrect (or unlabeled), with a count axis, each
 * bin's count above it and the totals in the key. A bin's few incorrect predictions stay visible (a
 * segment is never thinner than 3 px) in a colour at 3:1 or more against the panel in either theme. */
function histogram(hist, labeled) {
  const series = labeled ? [["correct", "Correct", "ia-hist-ok"], ["incorrect", "Incorrect", "ia-hist-bad"]] : [["unlabeled", "Predictions", "ia-hist-any"]];
  const totals = hist.edges.slice(1).map((_, b) => series.reduce((t, [key]) => t + hist[key][b], 0));
  const top = niceCeil(Math.max(1, ...totals));
  const sums = series.map(([key]) => hist[key].reduce((a, b) => a + b, 0));
  const bars = h("div", { class: "ia-hist", role: "img", "aria-label": `Confidence histogram: ${series.map(([, label], k) => `${label} ${sums[k]}`).join(", ")}` },
    [1, 0.5].map((f) => h("span", { class: "ia-hist-grid", style: { bottom: `${f * 100}%` }, "aria-hidden": "true" })),
    totals.map((total, b) => h("div", { class: "ia-hist-col", title: `${hist.edges[b].toFixed(2)}–${hist.edges[b + 1].toFixed(2)}: ${series.map(([key, label]) => `${label.toLowerCase()} ${hist[key][b]}`).join(", ")}` },
      series.map(([key, , cls]) => {
        const n = hist[key][b];
        return n ? h("span", { class: `ia-hist-seg ${cls}`, style: { height: `max(4px, ${(100 * n) / top}%)` } }) : null;
      }),
      total ? h("span", { class: "ia-hist-count", dataset: { bin: String(b) } }, String(total),
        labeled && hist.incorrect[b] ? h("span", { class: "ia-hist-count-bad", title: `${hist.incorrect[b]} incorrect` }, `✗${hist.incorrect[b]}`) : null) : null)));
  const yAxis = h("div", { class: "ia-hist-yaxis", "aria-hidden": "true" },
    [top, top / 2, 0].map((v, k) => h("span", { style: { bottom: `${100 - k * 50}%` } }, Number.isInteger(v) ? String(v) : v.toFixed(1))));
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  return h("div", { class: "ia-hist-chart" },
    h("div", { class: "ia-hist-ylabel ia-muted" }, "examples"),
    h("div", { class: "ia-hist-plot" }, yAxis, bars),
    h("div", { class: "ia-hist-xaxis ia-muted", "aria-hidden": "true" }, ticks.map((t) => h("span", { style: { left: `${t * 100}%` } }, String(t)))),
    h("div", { class: "ia-hist-xlabel ia-muted" }, "confidence of the top prediction"),
    h("div", { class: "ia-hist-legend" }, series.map(([, label, cls], k) => h("span", { class: "ia-hist-legend-item" }, h("span", { class: `ia-hist-key ${cls}` }), `${label} ${sums[k].toLocaleString()}`))));
}

export default {
  name: "dataset",
  create: (app) => new DatasetView(app),
  entry: {
    label: "Dataset overview",
    title: "Accuracy, confusion matrix, top losses over the whole dataset",
    params: (app) => ({ model: app.state.filter.model || 0 }),
  },
  /** What a link asks the Dataset view to open (?dataset=model), or null. */
  readUrl(q, num) {
    return num("dataset") === null ? null : { model: num("dataset") };
  },
};
