// The Display section: how maps are drawn (method, sign, outliers), top-k, page size and image size.

import { h } from "../lib/dom.js";
import { field, numberInput, select } from "./fields.js";

export const VIS_LABELS = {
  heat_map: "Heat map",
  blended_heat_map: "Heat map over image",
  masked_image: "Masked image",
  alpha_scaling: "Alpha scaling",
  original_image: "Original image",
};
export const SIGN_LABELS = {
  all: "Positive and negative",
  positive: "Positive only",
  negative: "Negative only",
  absolute_value: "Absolute value",
};
const ZOOM_LABELS = [["s", "Small"], ["m", "Medium"], ["l", "Large"], ["xl", "Extra large"]];

export function displaySection(app) {
  const s = app.state;
  const cfg = app.config;
  const singleSign = new Set(cfg.visualization.single_sign_methods || []);
  const visSelect = select("vis_method", cfg.visualization.methods.map((m) => [m, VIS_LABELS[m] || m]), s.vis.method, (v) => {
    s.vis.method = v;
    syncSigns();
  });
  const signSelect = select("vis_sign", cfg.visualization.signs.map((m) => [m, SIGN_LABELS[m] || m]), s.vis.sign, (v) => { s.vis.sign = v; });
  // Masking and alpha scaling need a single sign: "all" is not offered with them (the server's rule).
  const syncSigns = () => {
    const needsOneSign = singleSign.has(s.vis.method);
    for (const opt of signSelect.options) opt.disabled = needsOneSign && opt.value === "all";
    if (needsOneSign && s.vis.sign === "all") { s.vis.sign = "absolute_value"; signSelect.value = "absolute_value"; }
  };
  syncSigns();
  const outlier = numberInput("outlier_perc", s.vis.outlier_perc, { min: 0, max: 50, step: 0.5, onInput: (v) => { s.vis.outlier_perc = v.trim() === "" ? "" : Number(v); } });
  const kMax = Math.min(cfg.limits.top_k_max, cfg.classes.length);
  const topk = numberInput("top_k", s.top_k, { min: 1, max: kMax, step: 1, onInput: (v) => { s.top_k = v.trim() === "" ? "" : Number(v); } });
  const size = numberInput("page_size", s.page_size, { min: 1, max: cfg.limits.page_size_max, step: 1, onInput: (v) => { s.page_size = v.trim() === "" ? "" : Number(v); } });
  const zoom = select("zoom", ZOOM_LABELS, s.zoom, (v) => {
    s.zoom = v;
    app.applyZoom(v);
    app.writeUrl();
  });
  return h("section", { class: "ia-section" },
    h("h2", { class: "ia-section-title" }, "Display"),
    field("Visualization", visSelect, { field: "visualization.method" }),
    field("Sign", signSelect, { field: "visualization.sign" }),
    h("div", { class: "ia-row2" },
      field("Outlier %", outlier, { field: "visualization.outlier_perc", title: "Percentile of the largest attributions clipped before scaling the colours" }),
      field("Top-k", topk, { field: "top_k", title: `Predictions shown per model (1 – ${kMax})` })),
    h("div", { class: "ia-row2" },
      field("Per page", size, { field: "page_size", title: `Examples per page (1 – ${cfg.limits.page_size_max})` }),
      field("Image size", zoom)));
}
