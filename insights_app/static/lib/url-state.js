// The view in the address bar: a copied link reopens the same method, arguments, filters, display
// options, page and open view (never the token: the cookie carries it).

import { sameJson } from "./dom.js";
import { ZOOMS, bodyFromState, metricSets, signFor } from "./state.js";

/** Encode one argument for the URL (numbers and strings as themselves, the rest as JSON). */
export function encodeArg(value) {
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

/** Decode an argument read from the URL with its parameter schema (bad values kept as typed). */
export function decodeArg(param, text) {
  if (text === "null") return null;
  switch (param.type) {
    case "int":
    case "float": {
      const v = Number(text);
      return text.trim() !== "" && Number.isFinite(v) ? v : text;
    }
    case "bool":
      return text === "true" ? true : text === "false" ? false : text;
    case "shape":
      try {
        const v = JSON.parse(text);
        return Array.isArray(v) ? v : text;
      } catch (_) {
        return text;
      }
    default:
      return text;
  }
}

/**
 * Read the address bar into `app.state`; returns {warning, views}: a warning for the user (an unknown
 * method in the link) and, per view name, what that view's module (its readUrl) asks to open.
 */
export function readUrl(app, viewModules, search) {
  const q = new URLSearchParams(search);
  const s = app.state;
  const cfg = app.config;
  let warning = null;
  if (q.has("method")) {
    const name = q.get("method");
    if (app.methods.has(name)) s.method = name;
    else warning = `Unknown method ${JSON.stringify(name)} in the link; using ${s.method}.`;
  }
  const spec = app.methods.get(s.method);
  for (const p of spec.params) {
    const key = `a.${p.name}`;
    if (q.has(key)) s.args[s.method][p.name] = decodeArg(p, q.get(key));
  }
  if (q.has("classes")) {
    s.filter.classes = q.get("classes").split(",").filter((x) => x !== "").map(Number)
      .filter((i) => Number.isInteger(i) && i >= 0 && i < cfg.classes.length);
  }
  if (cfg.filters.prediction.includes(q.get("pred"))) s.filter.prediction = q.get("pred");
  if (cfg.filters.class_source.includes(q.get("src"))) s.filter.class_source = q.get("src");
  // Triage: ?order=loss, ?pair=actual-predicted, ?conf=low-high, ?disagree=1, ?fm=model
  if (q.get("order") === "loss") s.filter.order = "loss";
  const pair = (q.get("pair") || "").split("-").map(Number);
  if (pair.length === 2 && pair.every((i) => Number.isInteger(i) && i >= 0 && i < cfg.classes.length)) {
    s.filter.pair = { actual: pair[0], predicted: pair[1] };
  }
  const conf = (q.get("conf") || "").split("-").map(Number);
  if (conf.length === 2 && conf.every((v) => Number.isFinite(v) && v >= 0 && v <= 1) && conf[0] <= conf[1]) s.filter.confidence = conf;
  if (q.get("disagree") === "1" && cfg.models.length > 1) s.filter.disagree = true;
  const fm = Number(q.get("fm"));
  if (q.has("fm") && Number.isInteger(fm) && fm >= 0 && fm < cfg.models.length) s.filter.model = fm;
  if (cfg.visualization.methods.includes(q.get("vis"))) s.vis.method = q.get("vis");
  if (cfg.visualization.signs.includes(q.get("sign"))) s.vis.sign = q.get("sign");
  else s.vis.sign = signFor(cfg, app.methods.get(s.method), s.vis, null); // the linked method's own
  if ((cfg.visualization.palettes || []).includes(q.get("pal"))) s.vis.palette = q.get("pal");
  if ((cfg.visualization.scales || []).includes(q.get("scale"))) s.vis.scale = q.get("scale");
  else if (q.has("scale") && Number(q.get("scale")) > 0) s.vis.scale = Number(q.get("scale"));
  const num = (key) => (q.has(key) && q.get(key).trim() !== "" && Number.isFinite(Number(q.get(key))) ? Number(q.get(key)) : null);
  if (num("outlier") !== null) s.vis.outlier_perc = num("outlier");
  if (num("k") !== null) s.top_k = num("k");
  if (num("size") !== null) s.page_size = num("size");
  if (num("page") !== null) s.page = Math.max(0, Math.floor(num("page")));
  if (ZOOMS[q.get("zoom")]) s.zoom = q.get("zoom");
  // Quality metrics: ?metrics=1 (the server's "fast" set) or ?metrics=all (every metric)
  if (q.get("metrics") === "1") s.metrics = "fast";
  else if (q.get("metrics") === "all") s.metrics = "all";
  const views = {};
  for (const view of viewModules) {
    const wanted = view.readUrl ? view.readUrl(q, num, app) : null;
    if (wanted) views[view.name] = wanted;
  }
  return { warning, views };
}

/** Put the view on screen in the address bar. */
export function writeUrl(app) {
  const s = app.state;
  const sets = metricSets(app.config);
  const body = app.committed || bodyFromState(s, app.methods, false, sets);
  const q = new URLSearchParams();
  q.set("method", body.method);
  const spec = app.methods.get(body.method);
  for (const p of spec.params) {
    const v = body.arguments[p.name];
    if (v !== undefined && !sameJson(v, p.default)) q.set(`a.${p.name}`, encodeArg(v));
  }
  if (body.filter.classes.length) q.set("classes", body.filter.classes.join(","));
  if (body.filter.prediction !== app.config.filters.prediction[0]) q.set("pred", body.filter.prediction);
  if (body.filter.class_source !== app.config.filters.class_source[0]) q.set("src", body.filter.class_source);
  if (body.filter.order === "loss") q.set("order", "loss");
  if (body.filter.pair) q.set("pair", `${body.filter.pair.actual}-${body.filter.pair.predicted}`);
  if (body.filter.confidence) q.set("conf", body.filter.confidence.join("-"));
  if (body.filter.disagree) q.set("disagree", "1");
  if (body.filter.model) q.set("fm", body.filter.model);
  q.set("vis", body.visualization.method);
  q.set("sign", body.visualization.sign);
  if (body.visualization.palette && body.visualization.palette !== app.config.visualization.default.palette) q.set("pal", body.visualization.palette);
  if (body.visualization.scale !== undefined && body.visualization.scale !== "map") q.set("scale", body.visualization.scale);
  if (body.visualization.outlier_perc !== app.config.visualization.default.outlier_perc) q.set("outlier", body.visualization.outlier_perc);
  q.set("k", body.top_k);
  q.set("size", body.page_size);
  if (body.page) q.set("page", body.page);
  if (s.zoom !== "m") q.set("zoom", s.zoom);
  if (body.metrics && body.metrics.length) q.set("metrics", body.metrics.length === sets.all.length ? "all" : "1");
  for (const view of app.views.values()) if (view.writeUrl) view.writeUrl(q);
  const url = `${window.location.pathname}?${q.toString()}${window.location.hash}`;
  window.history.replaceState(window.history.state, "", url);
}
