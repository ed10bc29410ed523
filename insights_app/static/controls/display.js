// The Display section: how maps are drawn (method, sign, outliers), top-k, page size and image size.

import { h } from "../lib/dom.js";
import { field, numberInput, select } from "./fields.js";
import { metricsFields } from "./metrics.js";
import { showsImages } from "../views/features/index.js";

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
export const PALETTE_LABELS = { colorblind: "Colour-blind safe (blue–orange)", captum: "Captum's (red–green)" };
const SCALE_LABELS = [["map", "Each map on its own"], ["page", "Shared across the page"], ["fixed", "Fixed value…"]];

export function displaySection(app) {
  const s = app.state;
  const cfg = app.config;
  const singleSign = new Set(cfg.visualization.single_sign_methods || []);
  const visSelect = select("vis_method", cfg.visualization.methods.map((m) => [m, VIS_LABELS[m] || m]), s.vis.method, (v) => {
    s.vis.method = v;
    syncSigns();
  });
  const signSelect = select("vis_sign", cfg.visualization.signs.map((m) => [m, SIGN_LABELS[m] || m]), s.vis.sign, (v) => { s.vis.sign = v; });
  app.controls.showSign = (v) => { signSelect.value = v; };
  const palettes = cfg.visualization.palettes || ["colorblind"];
  const paletteSelect = select("vis_palette", palettes.map((p) => [p, PALETTE_LABELS[p] || p]), s.vis.palette || palettes[0], (v) => { s.vis.palette = v; });
  // The colour scale: per map (captum's), shared by the page's maps, or a number the user fixes
  // (the same colours across pages and methods' runs).
  const fixedValue = () => (typeof s.vis.scale === "number" ? s.vis.scale : "");
  const fixed = numberInput("vis_scale_value", fixedValue(), { min: 0, step: "any", placeholder: "e.g. 0.05", onInput: (v) => { s.vis.scale = v.trim() === "" ? "" : Number(v); } });
  fixed.setAttribute("aria-label", "Attribution drawn at full colour");
  const scaleMode = typeof s.vis.scale === "number" || s.vis.scale === "" ? "fixed" : s.vis.scale || "map";
  const fixedField = field("Full colour at", fixed, { field: "visualization.scale", title: "The attribution value drawn at full colour, on every map" });
  fixedField.hidden = scaleMode !== "fixed";
  const scaleSelect = select("vis_scale", SCALE_LABELS, scaleMode, (v) => {
    fixedField.hidden = v !== "fixed";
    if (v === "fixed") {
      const shown = app.controls.sharedScale ? app.controls.sharedScale() : null;
      if (!fixed.value && shown) fixed.value = String(Number(shown.toPrecision(3)));
      s.vis.scale = fixed.value === "" ? "" : Number(fixed.value);
    } else s.vis.scale = v;
  });
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
  const images = showsImages(cfg); // a tabular or text page has no map to size or draw as an image
  return h("section", { class: "ia-section" },
    h("h2", { class: "ia-section-title" }, "Display"),
    images ? field("Visualization", visSelect, { field: "visualization.method" }) : null,
    field("Sign", signSelect, { field: "visualization.sign" }),
    field("Colours", paletteSelect, { field: "visualization.palette" }),
    field("Colour scale", scaleSelect, { title: "Scale each map to its own largest values, or share one scale so that colours compare across cards" }),
    fixedField,
    h("div", { class: "ia-row2" },
      field("Outlier %", outlier, { field: "visualization.outlier_perc", title: "Percentile of the largest attributions clipped before scaling the colours" }),
      field("Top-k", topk, { field: "top_k", title: `Predictions shown per model (1 – ${kMax})` })),
    h("div", { class: "ia-row2" },
      field("Per page", size, { field: "page_size", title: `Examples per page (1 – ${cfg.limits.page_size_max})` }),
      images ? field("Image size", zoom) : null),
    metricsFields(app));
}
