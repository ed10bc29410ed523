// The Examples section: which examples a page shows (classes, and correct or incorrect predictions).

import { h } from "../lib/dom.js";
import { classPicker } from "./class-picker.js";
import { field, segmented } from "./fields.js";

const LABELS = { prediction: "Prediction", label: "True label", all: "All", correct: "Correct", incorrect: "Incorrect" };
const options = (values) => values.map((v) => [v, LABELS[v] || v]);

export function filterSection(app) {
  const s = app.state;
  const cfg = app.config;
  return h("section", { class: "ia-section" },
    h("h2", { class: "ia-section-title" }, "Examples"),
    field("Classes", classPicker(app), { help: "Show only examples of these classes (none: all classes)." }),
    field("Match classes by", segmented("class_source", options(cfg.filters.class_source),
      s.filter.class_source, (v) => { s.filter.class_source = v; })),
    field("Predictions", segmented("prediction", options(cfg.filters.prediction),
      s.filter.prediction, (v) => { s.filter.prediction = v; })),
    cfg.models.length > 1 ? h("div", { class: "ia-help" }, "Correct means every model predicts the true label; incorrect, at least one does not.") : null);
}
