// Text features: the tokens, coloured by their attribution (hover for the value).

import { readableOn, signedColor } from "../../lib/colors.js";
import { fmt, h } from "../../lib/dom.js";
import { zeroNote } from "../legend.js";

const BLACK = [0, 0, 0]; // with white, reads at 4.5:1 or more on any colour: the data colour is never moved

export default {
  type: "text",
  input(f) {
    return h("div", { class: "ia-text-input" }, h("div", { class: "ia-mini-title" }, f.name),
      h("div", { class: "ia-tokens" }, (f.original || []).map((t) => h("span", { class: "ia-token" }, t))));
  },
  attribution(a, ctx = {}) {
    const scores = a.scores || [];
    const peak = a.scale && a.scale.high > 0 ? a.scale.high : Math.max(1e-12, ...scores.map((s) => Math.abs(s)));
    const palette = ctx.vis ? ctx.vis.palette : "colorblind";
    const [neg, pos] = ctx.config ? [signedColor(ctx.config, palette, -1, 1), signedColor(ctx.config, palette, 1, 1)] : ["blue", "orange"];
    return h("div", { class: "ia-text-attr ia-wide", dataset: { feature: a.name } },
      h("div", { class: "ia-mini-title" }, a.name, h("span", { class: "ia-muted" }, " · ",
        h("span", { class: "ia-swatch", style: { background: pos } }), " supports the target, ",
        h("span", { class: "ia-swatch", style: { background: neg } }), ` opposes it (full colour: ±${fmt(peak)})`)),
      h("div", { class: "ia-tokens" }, (a.tokens || []).map((t, i) => {
        const s = scores[i] ?? 0;
        // The token's colour is its attribution; its text is black or white, whichever reads (WCAG AA).
        const style = ctx.config ? readableOn(signedColor(ctx.config, palette, s, peak), { dark: BLACK }) : {};
        return h("span", { class: "ia-token ia-token-scored", style, title: `${t}: ${fmt(s)}`, dataset: { score: String(s) }, tabindex: "0" }, t);
      })),
      zeroNote(a));
  },
};
