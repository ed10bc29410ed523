// General (tabular) features: the values per category, and a signed bar chart of their attribution.

import { signedColor } from "../../lib/colors.js";
import { fmt, h } from "../../lib/dom.js";
import { zeroNote } from "../legend.js";

const MAX_BARS = 30;

export default {
  type: "general",
  input(f) {
    const cats = f.categories || [];
    const values = f.original || [];
    return h("div", { class: "ia-general-input" }, h("div", { class: "ia-mini-title" }, f.name),
      h("table", { class: "ia-values" }, h("tbody", null, values.slice(0, 50).map((v, i) => h("tr", null, h("th", null, cats[i] ?? `#${i}`), h("td", null, fmt(v)))))));
  },
  attribution(a, ctx = {}) {
    const scores = a.scores || [];
    const cats = a.categories || [];
    // The card's one scale (ctx.barScale, over all its tabular features), else this feature's own.
    const maxAbs = ctx.barScale > 0 ? ctx.barScale : a.scale && a.scale.high > 0 ? a.scale.high : Math.max(1e-12, ...scores.map((s) => Math.abs(s)));
    const palette = ctx.vis ? ctx.vis.palette : "colorblind";
    const color = (s) => (ctx.config ? signedColor(ctx.config, palette, s >= 0 ? 0.8 : -0.8, 1) : null);
    const order = scores.map((s, i) => i);
    if (order.length > MAX_BARS) order.sort((i, j) => Math.abs(scores[j]) - Math.abs(scores[i]));
    return h("div", { class: "ia-general-attr ia-wide", dataset: { feature: a.name } },
      h("div", { class: "ia-mini-title" }, a.name, order.length > MAX_BARS ? h("span", { class: "ia-muted" }, ` · ${MAX_BARS} largest`) : null),
      h("div", { class: "ia-barchart", role: "img", "aria-label": `Attribution per category of ${a.name}` },
        order.slice(0, MAX_BARS).map((i) => {
          const s = scores[i];
          const w = Math.min(1, Math.abs(s) / maxAbs) * 50;
          return h("div", { class: "ia-barchart-row", title: `${cats[i] ?? i}: ${fmt(s)}` },
            h("span", { class: "ia-barchart-label" }, cats[i] ?? `#${i}`),
            h("span", { class: "ia-barchart-track" },
              h("span", { class: "ia-barchart-axis" }),
              h("span", { class: `ia-barchart-bar ${s >= 0 ? "ia-pos" : "ia-neg"}`, style: { ...(s >= 0 ? { left: "50%" } : { right: "50%" }), width: `${w}%`, background: color(s) } })),
            h("span", { class: "ia-barchart-value" }, fmt(s)));
        })),
      zeroNote(a));
  },
};
