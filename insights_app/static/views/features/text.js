// Text features: the tokens, coloured by their attribution (hover for the value).

import { fmt, h } from "../../lib/dom.js";

export default {
  type: "text",
  input(f) {
    return h("div", { class: "ia-text-input" }, h("div", { class: "ia-mini-title" }, f.name),
      h("div", { class: "ia-tokens" }, (f.original || []).map((t) => h("span", { class: "ia-token" }, t))));
  },
  attribution(a) {
    const scores = a.scores || [];
    const maxAbs = Math.max(1e-12, ...scores.map((s) => Math.abs(s)));
    return h("div", { class: "ia-text-attr ia-wide", dataset: { feature: a.name } },
      h("div", { class: "ia-mini-title" }, a.name, h("span", { class: "ia-muted" }, " · green supports the target, red opposes it")),
      h("div", { class: "ia-tokens" }, (a.tokens || []).map((t, i) => {
        const s = scores[i] ?? 0;
        const alpha = Math.min(1, Math.abs(s) / maxAbs) * 0.8;
        const bg = s >= 0 ? `rgba(22, 163, 74, ${alpha.toFixed(3)})` : `rgba(220, 38, 38, ${alpha.toFixed(3)})`;
        return h("span", { class: "ia-token ia-token-scored", style: { background: bg }, title: `${t}: ${fmt(s)}`, dataset: { score: String(s) }, tabindex: "0" }, t);
      })));
  },
};
