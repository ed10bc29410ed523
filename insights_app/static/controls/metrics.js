// The Display section's "Quality metrics" boxes: each map's cheap metrics (the server's "fast" set, a
// few forward passes per example), and optionally the others (the "all" set, which run the method
// again). They set `state.metrics` ("", "fast" or "all"; lib/state.js), which the page's requests carry.
// Names, labels, directions and costs come from `/config` metrics.

import { h } from "../lib/dom.js";
import { metricSets } from "../lib/state.js";
import { capital, listText, metricSpecs } from "../views/metrics.js";

/** The texts of the boxes, from the server's metrics: {fastTitle, slowLabel, slowTitle, costHelp, fastPasses}. */
export function metricTexts(config) {
  const specs = metricSpecs(config);
  const sets = metricSets(config);
  const fast = sets.fast.map((k) => specs.get(k));
  const slow = sets.all.filter((k) => !sets.fast.includes(k)).map((k) => specs.get(k));
  const passes = fast.map((m) => m.passes);
  const fastPasses = passes.reduce((a, b) => a + b, 0);
  const each = passes.length > 1 && passes.every((p) => p === passes[0]) ? `${passes.length} × ${passes[0]}` : String(fastPasses);
  return {
    fastTitle: `Under each map: ${fast.map((m) => `${m.help.replace(/^./, (c) => c.toLowerCase())} (${m.name}, ${m.direction} is better)`).join(" and ")}`,
    slowLabel: `also ${listText(slow.map((m) => m.name))} (slower)`,
    slowTitle: `${capital(listText(slow.map((m) => m.label)))} run the method again on perturbed inputs: several times the method's cost`,
    costHelp: `${capital(listText(fast.map((m) => m.name)))} cost${fast.length === 1 ? "s" : ""} ${each} forward passes per example.`,
    fastPasses,
    fastNames: listText(fast.map((m) => m.name)),
  };
}

export function metricsFields(app) {
  const s = app.state;
  const texts = metricTexts(app.config);
  const slow = h("input", { type: "checkbox", name: "metrics_slow", checked: s.metrics === "all", disabled: !s.metrics,
    onchange: (ev) => { s.metrics = ev.target.checked ? "all" : "fast"; } });
  const on = h("input", { type: "checkbox", name: "metrics", checked: Boolean(s.metrics), onchange: (ev) => {
    s.metrics = ev.target.checked ? (slow.checked ? "all" : "fast") : "";
    slow.disabled = !ev.target.checked;
  } });
  return h("div", { class: "ia-field ia-metrics-fields", dataset: { field: "metrics" } },
    h("label", { class: "ia-switch", title: texts.fastTitle }, on, "Quality metrics"),
    h("label", { class: "ia-switch ia-metrics-slow", title: texts.slowTitle }, slow, texts.slowLabel),
    h("div", { class: "ia-help" }, texts.costHelp));
}
