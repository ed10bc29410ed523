// The page's state: the form's defaults, and the request bodies it describes.

import { apiError } from "./transport.js";

export const ZOOMS = { s: 96, m: 128, l: 192, xl: 256 };

/**
 * The sign a method's maps are drawn with: its own default (signed methods show their sign),
 * unless the user chose another than the previous method's default. Drawings that need a single
 * sign (masking, alpha) get absolute_value instead of "all".
 */
export function signFor(config, spec, vis, previousSpec) {
  const single = new Set(config.visualization.single_sign_methods || []);
  const own = (s) => (s && s.default_sign) || "absolute_value";
  let sign = previousSpec && vis.sign !== own(previousSpec) ? vis.sign : own(spec);
  if (single.has(vis.method) && sign === "all") sign = "absolute_value";
  return sign;
}

/** The form as it starts: every method at its defaults, the server's default method and display. */
export function defaultState(config, methods) {
  const args = {};
  for (const m of config.methods) args[m.name] = { ...m.defaults };
  const method = methods.has(config.default_method) ? config.default_method : config.methods[0].name;
  const vis = { ...config.visualization.default };
  vis.sign = signFor(config, methods.get(method), vis, null);
  return {
    method,
    args,
    vis,
    top_k: Math.min(config.top_k, config.classes.length || 1),
    filter: { classes: [], prediction: config.filters.prediction[0], class_source: config.filters.class_source[0], ...TRIAGE_DEFAULTS },
    page: 0,
    page_size: Math.min(config.page_size, config.limits.page_size_max),
    zoom: "m",
    metrics: "", // the maps' quality metrics: "" (none), "fast" or "all" (see metricSets)
  };
}

/**
 * The quality metrics each choice of the form's "Quality metrics" boxes asks for (the state's `metrics`:
 * "fast" or "all"), from the server's metrics (`/config` metrics: each one's `sets`), in its order.
 */
export function metricSets(config) {
  const sets = { fast: [], all: [] };
  for (const m of (config && config.metrics) || []) for (const set of m.sets || []) if (sets[set]) sets[set].push(m.name);
  return sets;
}

/** The triage part of a filter (read from the dataset pass): none of it by default. */
export const TRIAGE_DEFAULTS = { order: "dataset", pair: null, confidence: null, disagree: false, model: 0 };

/** A filter as the API takes it: the triage fields only where they are set. */
export function filterBody(f) {
  const out = { classes: [...f.classes], prediction: f.prediction, class_source: f.class_source };
  if (f.order && f.order !== "dataset") out.order = f.order;
  if (f.pair) out.pair = { ...f.pair };
  if (f.confidence) out.confidence = [...f.confidence];
  if (f.disagree) out.disagree = true;
  if ((out.order || out.pair || out.confidence || out.disagree) && f.model) out.model = f.model;
  return out;
}

/** Whether a filter leaves examples out (or reorders them): the status line then counts matches. */
export function isFiltered(f) {
  return Boolean(f && (f.classes.length || f.prediction !== "all" || f.pair || f.confidence || f.disagree || (f.order && f.order !== "dataset")));
}

/**
 * The /examples body the form describes; `strict` throws a field error for an empty required value.
 * `sets`: the metrics of each choice of `state.metrics` (metricSets).
 */
export function bodyFromState(state, methods, strict, sets = {}) {
  const spec = methods.get(state.method);
  const args = {};
  for (const p of spec.params) {
    let v = state.args[state.method][p.name];
    // "" is a value of its own where it is the default (a layer: "the last convolution").
    if (v === undefined || (v === "" && p.default !== "")) {
      if (p.nullable) v = null;
      else if (strict) throw apiError(`arguments.${p.name}: enter a value`, 400);
      else v = p.default;
    }
    args[p.name] = v;
  }
  const body = {
    method: state.method,
    arguments: args,
    visualization: visualizationFromState(state.vis, strict),
    top_k: state.top_k,
    filter: filterBody(state.filter),
    page: state.page,
    page_size: state.page_size,
  };
  if (sets[state.metrics] && sets[state.metrics].length) body.metrics = [...sets[state.metrics]];
  return body;
}

/** The visualization the form describes (a fixed colour scale left empty is an error when `strict`). */
function visualizationFromState(vis, strict) {
  const out = { ...vis };
  if (out.scale === "" || out.scale === undefined || (typeof out.scale === "number" && !Number.isFinite(out.scale))) {
    if (strict && out.scale !== undefined) throw apiError("visualization.scale: enter the attribution value drawn at full colour", 400);
    out.scale = "map";
  }
  return out;
}

/**
 * The /attribute body for one example, model and target, from the query of the page it is on (so a
 * re-attribution matches the card). Another `method` takes its defaults, or the form's arguments
 * when the form has that method selected.
 */
export function attributeBody(base, exampleId, model, target, method, state, methods, config) {
  const other = method && method !== base.method;
  const visualization = { ...base.visualization };
  // Another method is drawn with its own sign (unsigned maps on an unsigned scale) unless the user
  // chose a sign of their own for the page's method.
  if (other && config) visualization.sign = signFor(config, methods.get(method), visualization, methods.get(base.method));
  const body = {
    example_id: exampleId,
    model,
    target,
    method: method || base.method,
    arguments: other ? {} : base.arguments,
    visualization,
    top_k: base.top_k,
  };
  if (base.metrics) body.metrics = [...base.metrics]; // the page's quality metrics come along (compare, re-targeting)
  if (method && method !== base.method && method === state.method) {
    try {
      body.arguments = bodyFromState(state, methods, true).arguments;
    } catch (_) {
      body.arguments = {};
    }
  }
  return body;
}

/** The arguments of a request in a few words ("n_steps=25, baseline=zeros"); "" when there are none. */
export function argumentSummary(args, limit = 6) {
  return Object.entries(args || {})
    .filter(([, v]) => v !== null && v !== "")
    .slice(0, limit)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("×") : v}`)
    .join(", ");
}

/** Whether two request bodies draw the same maps (method, arguments, display, top-k, metrics), whatever their page. */
export function sameMaps(a, b) {
  if (!a || !b) return false;
  const pick = (x) => JSON.stringify([x.method, x.arguments, x.visualization, x.top_k, x.metrics || null]);
  return pick(a) === pick(b);
}
