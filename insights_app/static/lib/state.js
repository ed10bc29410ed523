// The page's state: the form's defaults, and the request bodies it describes.

import { apiError } from "./transport.js";

export const ZOOMS = { s: 96, m: 128, l: 192, xl: 256 };

/** The form as it starts: every method at its defaults, the server's default method and display. */
export function defaultState(config, methods) {
  const args = {};
  for (const m of config.methods) args[m.name] = { ...m.defaults };
  const method = methods.has(config.default_method) ? config.default_method : config.methods[0].name;
  return {
    method,
    args,
    vis: { ...config.visualization.default },
    top_k: Math.min(config.top_k, config.classes.length || 1),
    filter: { classes: [], prediction: config.filters.prediction[0], class_source: config.filters.class_source[0] },
    page: 0,
    page_size: Math.min(config.page_size, config.limits.page_size_max),
    zoom: "m",
  };
}

/** The /examples body the form describes; `strict` throws a field error for an empty required value. */
export function bodyFromState(state, methods, strict) {
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
  return {
    method: state.method,
    arguments: args,
    visualization: { ...state.vis },
    top_k: state.top_k,
    filter: { classes: [...state.filter.classes], prediction: state.filter.prediction, class_source: state.filter.class_source },
    page: state.page,
    page_size: state.page_size,
  };
}

/**
 * The /attribute body for one example, model and target, from the query of the page it is on (so a
 * re-attribution matches the card). Another `method` takes its defaults, or the form's arguments
 * when the form has that method selected.
 */
export function attributeBody(base, exampleId, model, target, method, state, methods) {
  const body = {
    example_id: exampleId,
    model,
    target,
    method: method || base.method,
    arguments: method && method !== base.method ? {} : base.arguments,
    visualization: base.visualization,
    top_k: base.top_k,
  };
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

/** Whether two request bodies draw the same maps (method, arguments, display, top-k), whatever their page. */
export function sameMaps(a, b) {
  if (!a || !b) return false;
  const pick = (x) => JSON.stringify([x.method, x.arguments, x.visualization, x.top_k]);
  return pick(a) === pick(b);
}
