// The Examples section: which examples a page shows (classes, correct or incorrect predictions) and,
// from the dataset pass, a confusion cell, a confidence range, models that disagree, the loss order.

import { clear, h, put } from "../lib/dom.js";
import { classPicker } from "./class-picker.js";
import { field, segmented, uid } from "./fields.js";

const LABELS = { prediction: "Prediction", label: "True label", all: "All", correct: "Correct", incorrect: "Incorrect" };
const options = (values) => values.map((v) => [v, LABELS[v] || v]);

export function filterSection(app) {
  const s = app.state;
  const cfg = app.config;
  const section = h("section", { class: "ia-section" },
    h("h2", { class: "ia-section-title" }, "Examples"),
    field("Classes", classPicker(app), { help: "Show only examples of these classes (none: all classes)." }),
    field("Match classes by", segmented("class_source", options(cfg.filters.class_source),
      s.filter.class_source, (v) => { s.filter.class_source = v; })),
    field("Predictions", segmented("prediction", options(cfg.filters.prediction),
      s.filter.prediction, (v) => { s.filter.prediction = v; })),
    cfg.models.length > 1 ? h("div", { class: "ia-help" }, "Correct means every model predicts the true label; incorrect, at least one does not.") : null,
    triageFields(app));
  return section;
}

/** The filters read from the dataset pass (it starts when a page first needs it). */
function triageFields(app) {
  const s = app.state;
  const cfg = app.config;
  const pairBox = h("div", { class: "ia-pair-slot" });
  const renderPair = () => {
    clear(pairBox);
    const p = s.filter.pair;
    if (!p) return;
    put(pairBox, field("Confusion cell", h("span", { class: "ia-chip ia-chip-removable ia-pair-chip" },
      `${cfg.classes[p.actual]} → predicted ${cfg.classes[p.predicted]}`,
      h("button", { type: "button", class: "ia-chip-x", "aria-label": "Remove the confusion-cell filter",
        onclick: () => { s.filter.pair = null; renderPair(); app.markDirty(); } }, "×")),
    { help: "Examples of this class that the model predicts as the other (from the Dataset view)." }));
  };
  renderPair();
  const lowId = uid("conf-low");
  const bound = (i) => h("input", {
    type: "number", class: "ia-input ia-conf-input", id: i === 0 ? lowId : uid("conf-high"), min: 0, max: 1, step: 0.05,
    placeholder: i === 0 ? "0" : "1", "aria-label": i === 0 ? "Lowest confidence" : "Highest confidence",
    value: s.filter.confidence ? String(s.filter.confidence[i]) : "",
    oninput: () => {
      const [lo, hi] = [low.value, high.value].map((v) => (v.trim() === "" ? null : Number(v)));
      s.filter.confidence = lo === null && hi === null ? null : [lo ?? 0, hi ?? 1];
    },
  });
  const low = bound(0);
  const high = bound(1);
  const disagree = cfg.models.length > 1 ? h("label", { class: "ia-switch" },
    h("input", { type: "checkbox", checked: s.filter.disagree, onchange: (ev) => { s.filter.disagree = ev.target.checked; } }),
    "Only where the models disagree") : null;
  const model = cfg.models.length > 1 ? field("For the model", h("select", {
    class: "ia-input", id: uid("filter-model"), onchange: (ev) => { s.filter.model = Number(ev.target.value); } },
  cfg.models.map((m) => h("option", { value: String(m.index), selected: m.index === s.filter.model }, m.name))),
  { help: "Whose prediction, confidence and loss the order, the range and the cell mean." }) : null;
  return h("div", { class: "ia-triage-fields" },
    pairBox,
    field("Order", segmented("order", [["dataset", "Dataset order"], ["loss", "Largest loss first"]], s.filter.order,
      (v) => { s.filter.order = v; }), { help: "The loss order reads the dataset pass (started when needed)." }),
    h("div", { class: "ia-field" },
      h("label", { class: "ia-label", for: lowId }, "Confidence of the top prediction"),
      h("div", { class: "ia-row2" }, low, high),
      h("div", { class: "ia-help" }, "From … to, between 0 and 1 (empty: any).")),
    disagree, model);
}
