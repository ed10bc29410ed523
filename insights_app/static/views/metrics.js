// A map's quality metrics (the README's "Can I trust this map?"): a badge under the map with the
// numbers ("del 0.12 · ins 0.34"), which opens a small chart of the curves of the metrics that have one.
// The chart is hand-written SVG: two polylines, axes and a legend, no plotting library. Every metric's
// name, label, short name, direction and curve come from the server (`/config` metrics).

import { fmt, h } from "../lib/dom.js";
import { uid } from "../controls/fields.js";

const specsOf = new WeakMap();

/**
 * The server's metrics by name, in its order (`/config` metrics): `short` (the badge), `label` (in
 * words), `lower` (whether lower is better), `sets`, `passes`, `curve` (what a curve's steps do, or "").
 */
export function metricSpecs(config) {
  let specs = specsOf.get(config);
  if (!specs) {
    specs = new Map((config.metrics || []).map((m) => [m.name, { ...m, lower: m.direction === "lower" }]));
    specsOf.set(config, specs);
  }
  return specs;
}

/** "(lower is better)" or "(higher is better)" for a metric of `metricSpecs`. */
export function betterText(spec) {
  return spec && spec.lower ? "(lower is better)" : "(higher is better)";
}

/** "a", "a and b", "a, b and c". */
export function listText(items) {
  return items.length < 2 ? items.join("") : `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}

/** A sentence's first letter capitalized. */
export function capital(text) {
  return text ? `${text[0].toUpperCase()}${text.slice(1)}` : text;
}

/** A metric's number out of a model's `metrics` (an area, a value), or null (absent, failed, null). */
export function metricValue(metrics, name) {
  const v = metrics ? metrics[name] : undefined;
  if (v === null || v === undefined || (typeof v === "object" && v.error)) return null;
  const n = typeof v === "object" ? v.area : v;
  return typeof n === "number" && Number.isFinite(n) ? n : null;
}

/** Two significant digits: the badge is small (the title has three). */
export function short(v) {
  if (v === null || v === undefined) return "—";
  const a = Math.abs(v);
  if (a !== 0 && (a < 0.01 || a >= 1000)) return v.toExponential(1);
  return String(Number(v.toPrecision(2)));
}

const SVG = "http://www.w3.org/2000/svg";

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** The curves of the metrics that have one (their `curve` in `/config`) as an SVG chart: x the share of locations removed or revealed, y the target's score. */
export function curveChart(config, metrics, targetName) {
  const specs = metricSpecs(config);
  const curves = [...specs.values()].filter((m) => m.curve).map((m) => m.name)
    .filter((k) => metrics[k] && Array.isArray(metrics[k].curve) && metrics[k].curve.length > 1);
  const W = 240, H = 150, L = 38, R = 8, T = 8, B = 30;
  const all = curves.flatMap((k) => metrics[k].curve.filter((v) => Number.isFinite(v)));
  let lo = Math.min(0, ...all);
  let hi = Math.max(...all, lo);
  if (hi - lo < 1e-9) hi = lo + 1;
  const x = (i, n) => L + ((W - L - R) * i) / (n - 1);
  const y = (v) => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
  const titleId = uid("curves");
  const withCurve = [...specs.values()].filter((m) => m.curve);
  const label = `${capital(listText(withCurve.map((m) => m.name)))} curves: the score of ${targetName} as 0 to 100% of the map's locations are ${withCurve.map((m) => `${m.curve} (${m.name}${metrics[m.name] ? `, area ${fmt(metricValue(metrics, m.name))}` : ""})`).join(", or ")}`;
  const svg = s("svg", { class: "ia-curves", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": titleId, focusable: "false" },
    s("title", { id: titleId }, label),
    // axes, ticks and their numbers
    s("line", { class: "ia-curves-axis", x1: L, y1: H - B, x2: W - R, y2: H - B }),
    s("line", { class: "ia-curves-axis", x1: L, y1: T, x2: L, y2: H - B }),
    [0, 50, 100].map((p) => s("text", { class: "ia-curves-tick", x: L + ((W - L - R) * p) / 100, y: H - B + 11, "text-anchor": p === 0 ? "start" : p === 100 ? "end" : "middle" }, `${p}%`)),
    s("text", { class: "ia-curves-tick", x: L - 3, y: T + 7, "text-anchor": "end" }, fmt(hi)),
    s("text", { class: "ia-curves-tick", x: L - 3, y: H - B, "text-anchor": "end" }, fmt(lo)),
    s("text", { class: "ia-curves-label", x: L + (W - L - R) / 2, y: H - 3, "text-anchor": "middle" }, "locations removed / revealed"),
    s("text", { class: "ia-curves-label", x: 10, y: T + (H - T - B) / 2, "text-anchor": "middle", transform: `rotate(-90 10 ${T + (H - T - B) / 2})` }, `score of ${targetName}`),
    curves.map((k) => {
      const c = metrics[k].curve;
      const d = c.map((v, i) => `${i ? "L" : "M"}${x(i, c.length).toFixed(1)},${y(Number.isFinite(v) ? v : lo).toFixed(1)}`).join(" ");
      return s("path", { class: `ia-curve ia-curve-${k}`, d, fill: "none" });
    }));
  const key = (k, text) => h("span", { class: "ia-curves-key" },
    s("svg", { viewBox: "0 0 24 8", width: 24, height: 8, "aria-hidden": "true" }, s("line", { class: `ia-curve ia-curve-${k}`, x1: 0, y1: 4, x2: 24, y2: 4 })),
    text);
  return h("div", { class: "ia-curves-box" }, svg,
    h("div", { class: "ia-curves-legend" },
      curves.map((k) => key(k, `${k} (should ${specs.get(k).lower ? "fall" : "rise"} fast)`))));
}

/**
 * What goes under a model's map when its request asked for metrics: the badge (a button when there are
 * curves to show, opening the chart under it), or null when the model has none.
 */
export function metricsView(config, model) {
  const metrics = model && model.metrics;
  if (!metrics || typeof metrics !== "object") return null;
  const specs = metricSpecs(config);
  const names = [...specs.keys()].filter((k) => k in metrics);
  if (!names.length) return null;
  const targetName = model.target ? model.target.name : "the target";
  const parts = names.map((k) => {
    const v = metrics[k];
    const failed = v && typeof v === "object" && v.error;
    return { k, text: `${specs.get(k).short} ${failed ? "failed" : short(metricValue(metrics, k))}`,
      words: `${specs.get(k).label} ${betterText(specs.get(k))}: ${failed ? `failed (${v.error})` : metricValue(metrics, k) === null ? "not available" : fmt(metricValue(metrics, k))}` };
  });
  const text = parts.map((p) => p.text).join(" · ");
  const words = parts.map((p) => p.words).join("; ");
  const curveNames = names.filter((k) => specs.get(k).curve && metrics[k] && Array.isArray(metrics[k].curve));
  const hasCurves = curveNames.length > 0;
  const box = h("div", { class: "ia-metrics", dataset: { metrics: names.join(",") } });
  if (!hasCurves) {
    box.append(h("span", { class: "ia-metrics-badge", title: words }, h("span", { "aria-hidden": "true" }, text), h("span", { class: "ia-sr-only" }, words)));
    return box;
  }
  const chartId = uid("metric-chart");
  const chart = h("div", { class: "ia-metrics-chart", id: chartId, hidden: true });
  const button = h("button", { type: "button", class: "ia-metrics-badge", "aria-expanded": "false", "aria-controls": chartId,
    title: `${words}. Click for the ${listText(curveNames)} curves.`, "aria-label": `${text}: ${words}. Show the curves.`,
    onclick: () => {
      const open = chart.hidden;
      if (open && !chart.firstChild) chart.append(curveChart(config, metrics, targetName));
      chart.hidden = !open;
      button.setAttribute("aria-expanded", open ? "true" : "false");
      button.setAttribute("aria-label", `${text}: ${words}. ${open ? "Hide" : "Show"} the curves.`);
    } }, text, h("span", { class: "ia-metrics-caret", "aria-hidden": "true" }, "▾"));
  box.append(button, chart);
  return box;
}
