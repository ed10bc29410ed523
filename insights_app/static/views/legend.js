// Colour legends with numbers: the attribution values at both ends of a map's colour bar (and 0
// in the middle of a signed one). The toolbar shows the page's; each image map shows its own.

import { fmt, h } from "../lib/dom.js";
import { gradient, stops } from "../lib/colors.js";

const WHAT = { all: "attribution", positive: "positive attribution", negative: "negative attribution", absolute_value: "|attribution|" };

/**
 * A legend for maps drawn with `vis` (its sign and palette). `scale` is {low, high} (the values at
 * the ends) or null when the maps do not share one (each map's own numbers are under it).
 */
export function legend(config, vis, scale, { compact = false, note = "" } = {}) {
  const sign = vis.sign;
  const bar = h("span", { class: "ia-legend-bar", style: { background: gradient(stops(config, vis.palette, sign)) } });
  const ends = scale ? [fmt(scale.low), fmt(scale.high)] : sign === "all" ? ["−max", "+max"] : sign === "negative" ? ["−max", "0"] : ["0", "max"];
  const mid = sign === "all" ? h("span", { class: "ia-legend-mid", "aria-hidden": "true" }, "0") : null;
  const title = scale
    ? `${WHAT[sign] || sign} from ${fmt(scale.low)} to ${fmt(scale.high)}${sign === "all" ? ", 0 in the middle" : ""}`
    : `${WHAT[sign] || sign}: each map is scaled to its own largest value (its numbers are under it)`;
  return h("div", { class: "ia-legend" + (compact ? " ia-legend-compact" : ""), role: "img", "aria-label": `Colour scale: ${title}`, title },
    h("span", { class: "ia-legend-end" }, ends[0]),
    h("span", { class: "ia-legend-track" }, bar, mid),
    h("span", { class: "ia-legend-end" }, ends[1]),
    note ? h("span", { class: "ia-legend-note" }, note) : null);
}

const BLANK = {
  positive: "No positive attribution: the map is blank",
  negative: "No negative attribution: the map is blank",
};

/**
 * The word a blank map needs (null when something is drawn): a map of zeros (LIME on an untrained model, a
 * model that ignores its input) is otherwise a blank picture with a "0 … 0" scale. `scores` are the values
 * (text, tabular); an image map says it by its scale (0 at both ends: nothing survived the sign).
 */
export function zeroNote(a, sign = "all") {
  const scores = Array.isArray(a.scores) ? a.scores : null;
  const zero = scores
    ? scores.length > 0 && scores.every((s) => Number(s) === 0)
    : Boolean(a.scale) && Number(a.scale.low) === 0 && Number(a.scale.high) === 0;
  if (!zero) return null;
  const text = scores ? "All attributions are zero" : BLANK[sign] || "All attributions are zero: the map is blank";
  return h("div", { class: "ia-zero-note", role: "note" }, text);
}
