// DOM helpers and number formats shared by every part of the page (no state, no imports).

const PROPS = new Set(["value", "checked", "disabled", "selected", "hidden", "indeterminate", "open"]);

/** Create an element: h("div", {class: "x", onclick: fn}, child, "text", [more]). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "style") Object.assign(el.style, value);
      else if (key === "dataset") Object.assign(el.dataset, value);
      else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
      else if (PROPS.has(key)) el[key] = value;
      else el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Append children (nodes, strings, arrays; null/undefined/false skipped) and return the element. */
export function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Append children given as arguments and return the element. */
export function put(el, ...children) {
  return append(el, children);
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** A probability as a short percentage ("97.3%", "<0.1%"). */
export function pct(score) {
  const v = Math.max(0, Math.min(1, Number(score) || 0)) * 100;
  return v >= 99.95 || v === 0 ? `${v.toFixed(0)}%` : v < 0.1 ? "<0.1%" : `${v.toFixed(1)}%`;
}

/**
 * A number as people write it: three significant digits ("0.0809", "2.72", "742"), whole numbers from 1,000
 * ("1330", "52400", never "1.33e+3"), exponents only far from 1 (from a million, below 0.0001).
 */
export function fmt(value) {
  const v = Number(value);
  if (!Number.isFinite(v)) return String(value);
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-4) return v.toExponential(2);
  return a >= 999.5 ? String(Math.round(v)) : v.toPrecision(3); // 999.7 has no 3-digit plain form
}

export function fileSafe(text) {
  return String(text).replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^_+|_+$/g, "").slice(0, 60) || "x";
}

/** A spinner with its text. Not a live region: the views announce what finished, once. */
export function spinner(text) {
  return h("div", { class: "ia-loading" }, h("span", { class: "ia-spinner", "aria-hidden": "true" }), text);
}

export function sameJson(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}
