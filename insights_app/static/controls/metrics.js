// The Display section's "Quality metrics" boxes: each map's deletion and insertion scores (cheap: 2 x 21
// forward passes per example), and optionally infidelity and max-sensitivity (slower: they run the method
// again). They set `state.metrics` ("", "fast" or "all"; lib/state.js), which the page's requests carry.

import { h } from "../lib/dom.js";

export function metricsFields(app) {
  const s = app.state;
  const slow = h("input", { type: "checkbox", name: "metrics_slow", checked: s.metrics === "all", disabled: !s.metrics,
    onchange: (ev) => { s.metrics = ev.target.checked ? "all" : "fast"; } });
  const on = h("input", { type: "checkbox", name: "metrics", checked: Boolean(s.metrics), onchange: (ev) => {
    s.metrics = ev.target.checked ? (slow.checked ? "all" : "fast") : "";
    slow.disabled = !ev.target.checked;
  } });
  return h("div", { class: "ia-field ia-metrics-fields", dataset: { field: "metrics" } },
    h("label", { class: "ia-switch", title: "Under each map: how fast the target's score falls when its most attributed pixels are removed (deletion, lower is better) and rises when they are revealed (insertion, higher is better)" },
      on, "Quality metrics"),
    h("label", { class: "ia-switch ia-metrics-slow", title: "Infidelity and max-sensitivity run the method again on perturbed inputs: several times the method's cost" },
      slow, "also infidelity and sensitivity (slower)"),
    h("div", { class: "ia-help" }, "Deletion and insertion cost 2 × 21 forward passes per example."));
}
