// Insights web UI: one self-contained ES module (no imports, no build step, no CDN).
//
// `mount(root, transport, options)` builds the whole explorer inside `root` and talks to
// the server only through `transport` (async config(), examples(body, onEvent, signal),
// attribute(body, signal)), so the standalone page (HTTP) and the notebook widget (comm
// messages) share every line of it. `httpTransport(baseUrl)` is the fetch-based transport.

const API = "api/v1";
const MAX_CLASS_OPTIONS = 300;
const COMPARE_DEFAULTS = ["IntegratedGradients", "Saliency", "LayerGradCam", "Occlusion", "GuidedBackprop"];
const COMPARE_MAX = 6;
const ZOOMS = { s: 96, m: 128, l: 192, xl: 256 };

const PARAM_LABELS = {
  n_steps: "Steps",
  method: "Integration rule",
  baseline: "Baseline",
  nt_type: "Noise tunnel type",
  nt_samples: "Noisy samples",
  stdevs: "Noise std-dev",
  abs: "Absolute gradients",
  layer: "Layer",
  perturbations_per_eval: "Perturbations per pass",
  window: "Window",
  stride: "Stride",
  patch: "Patch size",
  seed: "Random seed",
  n_samples: "Samples",
  n_baselines: "Baselines drawn",
  relu_attributions: "ReLU on the map",
  interpolate_mode: "Upsampling",
};
const VIS_LABELS = {
  heat_map: "Heat map",
  blended_heat_map: "Heat map over image",
  masked_image: "Masked image",
  alpha_scaling: "Alpha scaling",
  original_image: "Original image",
};
const SIGN_LABELS = {
  all: "Positive and negative",
  positive: "Positive only",
  negative: "Negative only",
  absolute_value: "Absolute value",
};
const LEGENDS = {
  all: ["linear-gradient(90deg, #ff0000, #ffffff, #008000)", "−", "+"],
  positive: ["linear-gradient(90deg, #f7fcf5, #74c476, #00441b)", "0", "+"],
  negative: ["linear-gradient(90deg, #fff5f0, #fb6a4a, #67000d)", "0", "−"],
  absolute_value: ["linear-gradient(90deg, #f7fbff, #6baed6, #08306b)", "0", "|max|"],
};

// ------------------------------------------------------------------ transport over HTTP

/** Error carrying the server's {"error"} text and, when it names one, the offending field. */
function apiError(message, status) {
  const err = new Error(message || "request failed");
  err.status = status;
  const m = /^([A-Za-z_][\w.\-]*): /.exec(err.message);
  if (m) err.field = m[1];
  return err;
}

/** A transport that calls the JSON API with fetch; `baseUrl` "" means "relative to this page". */
export function httpTransport(baseUrl = "") {
  const base = baseUrl ? String(baseUrl).replace(/\/+$/, "") + "/" : "";
  const url = (path) => base + API + path;

  async function send(path, init) {
    let resp;
    try {
      resp = await fetch(url(path), { credentials: "same-origin", cache: "no-store", ...init });
    } catch (exc) {
      if (exc && exc.name === "AbortError") throw exc;
      throw apiError("Cannot reach the Insights server (is it still running?)", 0);
    }
    if (!resp.ok) {
      let message = `HTTP ${resp.status}`;
      try {
        const data = await resp.json();
        if (data && typeof data.error === "string") message = data.error;
      } catch (_) {
        /* not JSON: keep the status line */
      }
      throw apiError(message, resp.status);
    }
    return resp;
  }

  function post(path, body, signal, accept) {
    return send(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: accept || "application/json" },
      body: JSON.stringify(body),
      signal,
    });
  }

  return {
    async config() {
      const resp = await send("/config", { headers: { Accept: "application/json" } });
      return resp.json();
    },

    async examples(body, onEvent, signal) {
      const resp = await post("/examples", { ...body, stream: true }, signal, "application/x-ndjson");
      const type = resp.headers.get("Content-Type") || "";
      if (!type.includes("ndjson") || !resp.body) {
        const data = await resp.json();
        onEvent({ type: "page", ...data.page });
        for (const example of data.examples || []) onEvent({ type: "example", example });
        onEvent({ type: "done", elapsed_ms: data.elapsed_ms });
        return;
      }
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      const flush = (final) => {
        let cut;
        while ((cut = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, cut).trim();
          buffer = buffer.slice(cut + 1);
          if (line) onEvent(JSON.parse(line));
        }
        if (final && buffer.trim()) {
          onEvent(JSON.parse(buffer));
          buffer = "";
        }
      };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        flush(false);
      }
      buffer += decoder.decode();
      flush(true);
    },

    async attribute(body, signal) {
      const resp = await post("/attribute", body, signal);
      return resp.json();
    },
  };
}

// ------------------------------------------------------------------ DOM helpers

const PROPS = new Set(["value", "checked", "disabled", "selected", "hidden", "indeterminate", "open"]);

/** Create an element: h("div", {class: "x", onclick: fn}, child, "text", [more]). */
function h(tag, attrs, ...children) {
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

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Append children (nodes, strings, arrays; null/false skipped) and return the element. */
function put(el, ...children) {
  return append(el, children);
}

function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

function humanize(name) {
  if (PARAM_LABELS[name]) return PARAM_LABELS[name];
  const words = String(name).replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function pct(score) {
  const v = Math.max(0, Math.min(1, Number(score) || 0)) * 100;
  return v >= 99.95 || v === 0 ? `${v.toFixed(0)}%` : v < 0.1 ? "<0.1%" : `${v.toFixed(1)}%`;
}

function fmt(value) {
  const v = Number(value);
  if (!Number.isFinite(v)) return String(value);
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1000 || a < 0.001 ? v.toExponential(2) : v.toPrecision(3);
}

function fileSafe(text) {
  return String(text).replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^_+|_+$/g, "").slice(0, 60) || "x";
}

function spinner(text) {
  return h("div", { class: "ia-loading", role: "status" }, h("span", { class: "ia-spinner", "aria-hidden": "true" }), text);
}

function sameJson(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

// ------------------------------------------------------------------ URL state

/** Encode one argument for the URL (numbers and strings as themselves, the rest as JSON). */
function encodeArg(value) {
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

/** Decode an argument read from the URL with its parameter schema (bad values kept as typed). */
function decodeArg(param, text) {
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

// ------------------------------------------------------------------ the app

class InsightsApp {
  constructor(root, transport, options) {
    this.root = root;
    this.transport = transport;
    this.options = options;
    this.config = null;
    this.methods = new Map();
    this.state = null; // the form
    this.committed = null; // the body of the page on screen
    this.generation = 0;
    this.abort = null;
    this.cards = new Map();
    this.compareRun = 0;
    this.cleanup = [];
    this.destroyed = false;
  }

  // -------------------------------------------------------------- life cycle

  async start() {
    this.root.classList.add("insights-app");
    const height = this.options.height ?? (this.options.urlState || this.root.style.height ? null : 820);
    if (height) this.root.style.height = typeof height === "number" ? `${height}px` : height;
    put(clear(this.root), h("div", { class: "ia-boot" }, spinner("Loading Insights…")));
    try {
      this.config = await this.transport.config();
    } catch (exc) {
      if (this.destroyed) return;
      put(clear(this.root), 
        h("div", { class: "ia-boot" }, h("div", { class: "ia-alert ia-alert-error", role: "alert" },
          h("strong", null, "Insights could not start. "), exc.message || String(exc))),
      );
      return;
    }
    if (this.destroyed) return;
    for (const m of this.config.methods) this.methods.set(m.name, m);
    this.state = this.defaultState();
    if (this.options.urlState) this.readUrl();
    this.build();
    if (this.options.urlState) {
      if (this.config.title) document.title = this.config.title;
      this.writeUrl();
    }
    if (this.pendingCompare) this.openCompare(this.pendingCompare);
    if (this.options.autoFetch !== false) this.fetchPage(this.state.page, { keepCompare: Boolean(this.pendingCompare) });
    this.pendingCompare = null;
  }

  destroy() {
    this.destroyed = true;
    if (this.abort) this.abort.abort();
    this.compareRun++;
    for (const fn of this.cleanup) fn();
    this.cleanup = [];
    clear(this.root);
  }

  listen(target, type, fn, opts) {
    target.addEventListener(type, fn, opts);
    this.cleanup.push(() => target.removeEventListener(type, fn, opts));
  }

  defaultState() {
    const cfg = this.config;
    const args = {};
    for (const m of cfg.methods) args[m.name] = { ...m.defaults };
    const method = this.methods.has(cfg.default_method) ? cfg.default_method : cfg.methods[0].name;
    return {
      method,
      args,
      vis: { ...cfg.visualization.default },
      top_k: Math.min(cfg.top_k || 3, cfg.classes.length || 1),
      filter: { classes: [], prediction: "all", class_source: "prediction" },
      page: 0,
      page_size: Math.min(4, cfg.limits.page_size_max),
      zoom: "m",
    };
  }

  get imageFeatures() {
    return this.config.features.filter((f) => f.type === "image").length;
  }

  // -------------------------------------------------------------- URL

  readUrl() {
    const q = new URLSearchParams(window.location.search);
    const s = this.state;
    const cfg = this.config;
    if (q.has("method")) {
      const name = q.get("method");
      if (this.methods.has(name)) s.method = name;
      else this.startupWarning = `Unknown method ${JSON.stringify(name)} in the link; using ${s.method}.`;
    }
    const spec = this.methods.get(s.method);
    for (const p of spec.params) {
      const key = `a.${p.name}`;
      if (q.has(key)) s.args[s.method][p.name] = decodeArg(p, q.get(key));
    }
    if (q.has("classes")) {
      s.filter.classes = q.get("classes").split(",").filter((x) => x !== "").map(Number)
        .filter((i) => Number.isInteger(i) && i >= 0 && i < cfg.classes.length);
    }
    if (["all", "correct", "incorrect"].includes(q.get("pred"))) s.filter.prediction = q.get("pred");
    if (["prediction", "label"].includes(q.get("src"))) s.filter.class_source = q.get("src");
    if (cfg.visualization.methods.includes(q.get("vis"))) s.vis.method = q.get("vis");
    if (cfg.visualization.signs.includes(q.get("sign"))) s.vis.sign = q.get("sign");
    const num = (key) => (q.has(key) && q.get(key).trim() !== "" && Number.isFinite(Number(q.get(key))) ? Number(q.get(key)) : null);
    if (num("outlier") !== null) s.vis.outlier_perc = num("outlier");
    if (num("k") !== null) s.top_k = num("k");
    if (num("size") !== null) s.page_size = num("size");
    if (num("page") !== null) s.page = Math.max(0, Math.floor(num("page")));
    if (ZOOMS[q.get("zoom")]) s.zoom = q.get("zoom");
    if (num("compare") !== null) {
      const methods = (q.get("cmp") || "").split(",").filter((m) => this.methods.has(m));
      const target = num("ct");
      this.pendingCompare = { id: num("compare"), methods: methods.length ? methods : null, target };
    }
  }

  /** Put the view on screen in the address bar (never the token: the cookie carries it). */
  writeUrl() {
    if (!this.options.urlState) return;
    const s = this.state;
    const body = this.committed || this.bodyFromState(false);
    const q = new URLSearchParams();
    q.set("method", body.method);
    const spec = this.methods.get(body.method);
    for (const p of spec.params) {
      const v = body.arguments[p.name];
      if (v !== undefined && !sameJson(v, p.default)) q.set(`a.${p.name}`, encodeArg(v));
    }
    if (body.filter.classes.length) q.set("classes", body.filter.classes.join(","));
    if (body.filter.prediction !== "all") q.set("pred", body.filter.prediction);
    if (body.filter.class_source !== "prediction") q.set("src", body.filter.class_source);
    q.set("vis", body.visualization.method);
    q.set("sign", body.visualization.sign);
    if (body.visualization.outlier_perc !== this.config.visualization.default.outlier_perc) q.set("outlier", body.visualization.outlier_perc);
    q.set("k", body.top_k);
    q.set("size", body.page_size);
    if (body.page) q.set("page", body.page);
    if (s.zoom !== "m") q.set("zoom", s.zoom);
    if (this.compare) {
      q.set("compare", this.compare.id);
      q.set("cmp", this.compare.methods.join(","));
      if (this.compare.target !== null && this.compare.target !== undefined) q.set("ct", this.compare.target);
    }
    const url = `${window.location.pathname}?${q.toString()}${window.location.hash}`;
    window.history.replaceState(window.history.state, "", url);
  }

  // -------------------------------------------------------------- request bodies

  /** The request body the form describes; `strict` throws a field error for empty required numbers. */
  bodyFromState(strict) {
    const s = this.state;
    const spec = this.methods.get(s.method);
    const args = {};
    for (const p of spec.params) {
      let v = s.args[s.method][p.name];
      if (v === "" || v === undefined) {
        if (p.nullable) v = null;
        else if (strict) throw apiError(`arguments.${p.name}: enter a value`, 400);
        else v = p.default;
      }
      args[p.name] = v;
    }
    return {
      method: s.method,
      arguments: args,
      visualization: { ...s.vis },
      top_k: s.top_k,
      filter: { classes: [...s.filter.classes], prediction: s.filter.prediction, class_source: s.filter.class_source },
      page: s.page,
      page_size: s.page_size,
    };
  }

  /** The body for /attribute from the page's query (so a re-attribution matches the card). */
  attributeBody(base, exampleId, model, target, method) {
    const body = {
      example_id: exampleId,
      model,
      target,
      method: method || base.method,
      arguments: method && method !== base.method ? {} : base.arguments,
      visualization: base.visualization,
      top_k: base.top_k,
    };
    if (method && method !== base.method && method === this.state.method) {
      try {
        body.arguments = this.bodyFromState(true).arguments;
      } catch (_) {
        body.arguments = {};
      }
    }
    return body;
  }

  // -------------------------------------------------------------- layout

  build() {
    const cfg = this.config;
    this.applyZoom(this.state.zoom);
    const classesText = `${cfg.classes.length} class${cfg.classes.length === 1 ? "" : "es"}`;
    const modelsText = cfg.models.length === 1 ? cfg.models[0].name : `${cfg.models.length} models`;
    const featuresText = cfg.features.map((f) => `${f.name} (${f.type})`).join(", ");
    this.els = {};
    const e = this.els;

    e.alert = h("div", { class: "ia-alerts", "aria-live": "polite" });
    e.status = h("div", { class: "ia-status" }, "");
    e.legend = h("div", { class: "ia-legend", title: "Colour scale of the attribution maps" });
    e.prev = h("button", { type: "button", class: "ia-btn", disabled: true, onclick: () => this.goPage(-1), title: "Previous page" }, "‹ Previous");
    e.next = h("button", { type: "button", class: "ia-btn", disabled: true, onclick: () => this.goPage(1), title: "Next page" }, "Next ›");
    e.pageLabel = h("span", { class: "ia-page-label" }, "");
    e.grid = h("div", { class: "ia-grid" + (this.imageFeatures === cfg.features.length ? "" : " ia-grid-wide"), "aria-live": "polite" });
    e.compare = h("section", { class: "ia-compare", hidden: true, "aria-label": "Compare methods" });
    e.pageView = h("div", { class: "ia-page-view" },
      h("div", { class: "ia-toolbar" },
        h("div", { class: "ia-toolbar-left" }, e.status),
        h("div", { class: "ia-toolbar-right" }, e.legend, h("div", { class: "ia-pager" }, e.prev, e.pageLabel, e.next))),
      e.grid);

    e.fetch = h("button", { type: "submit", class: "ia-btn ia-btn-primary ia-fetch" }, "Fetch");
    e.dirty = h("div", { class: "ia-dirty", hidden: true }, "Settings changed: press Fetch to apply them.");
    e.methodPanel = h("div", { class: "ia-method-params" });
    const form = h("form", { class: "ia-sidebar-form", novalidate: true, onsubmit: (ev) => { ev.preventDefault(); this.fetchPage(0); } },
      h("div", { class: "ia-sidebar-scroll" },
        this.buildFilterSection(),
        this.buildMethodSection(),
        this.buildDisplaySection()),
      h("div", { class: "ia-sidebar-foot" }, e.dirty, e.fetch));
    this.listen(form, "input", () => this.markDirty());
    this.listen(form, "change", () => this.markDirty());

    append(clear(this.root), [
      h("header", { class: "ia-header" },
        h("div", { class: "ia-brand" }, h("span", { class: "ia-logo", "aria-hidden": "true" }), cfg.title || "Insights"),
        h("div", { class: "ia-header-info" },
          h("span", { class: "ia-pill", title: cfg.models.map((m) => m.name).join(", ") }, modelsText),
          h("span", { class: "ia-pill" }, classesText),
          h("span", { class: "ia-pill ia-pill-wide", title: featuresText }, featuresText))),
      h("div", { class: "ia-body" },
        h("aside", { class: "ia-sidebar", "aria-label": "Filters and attribution settings" }, form),
        h("main", { class: "ia-main" }, e.alert, e.pageView, e.compare)),
    ]);
    this.renderMethodParams();
    this.renderLegend(this.state.vis.sign);
    this.renderEmpty(this.options.autoFetch === false ? "Choose filters and a method, then press Fetch." : "");
    if (this.startupWarning) this.showError(this.startupWarning, null, "warning");
  }

  applyZoom(zoom) {
    const px = ZOOMS[zoom] || ZOOMS.m;
    this.root.style.setProperty("--ia-img", `${px}px`);
    this.root.style.setProperty("--ia-img-large", `${Math.round(px * 1.25)}px`);
  }

  field(label, control, opts = {}) {
    return h("div", { class: "ia-field" + (opts.inline ? " ia-field-inline" : ""), dataset: opts.field ? { field: opts.field } : undefined },
      h("label", { class: "ia-label", title: opts.title || null, for: control.id || null }, label,
        opts.range ? h("span", { class: "ia-range" }, opts.range) : null),
      control,
      opts.help ? h("div", { class: "ia-help" }, opts.help) : null);
  }

  uid(name) {
    this.uidCounter = (this.uidCounter || 0) + 1;
    return `ia-${name}-${this.uidCounter}`;
  }

  segmented(name, options, current, onChange) {
    const group = h("div", { class: "ia-seg", role: "radiogroup", "aria-label": name, dataset: { name } });
    const groupName = this.uid(name);
    for (const [value, label] of options) {
      const id = this.uid(`${name}-${value}`);
      put(group, 
        h("input", { type: "radio", id, name: groupName, value, checked: value === current,
          onchange: (ev) => ev.target.checked && onChange(value) }),
        h("label", { for: id }, label));
    }
    return group;
  }

  select(name, options, current, onChange, attrs = {}) {
    const el = h("select", { name, id: this.uid(name), class: "ia-input", onchange: (ev) => onChange(ev.target.value), ...attrs },
      options.map(([value, label]) => h("option", { value, selected: value === current }, label)));
    el.value = current;
    return el;
  }

  numberInput(name, value, { min, max, step, placeholder, onInput }) {
    return h("input", {
      type: "number", name, id: this.uid(name), class: "ia-input", value: value === null || value === undefined ? "" : String(value),
      min: min ?? null, max: max ?? null, step: step ?? "any", placeholder: placeholder || null, inputmode: "decimal",
      oninput: (ev) => onInput(ev.target.value),
    });
  }

  buildFilterSection() {
    const s = this.state;
    const cfg = this.config;
    return h("section", { class: "ia-section" },
      h("h2", { class: "ia-section-title" }, "Examples"),
      this.field("Classes", this.buildClassPicker(), { help: "Show only examples of these classes (none: all classes)." }),
      this.field("Match classes by", this.segmented("class_source", [["prediction", "Prediction"], ["label", "True label"]],
        s.filter.class_source, (v) => { s.filter.class_source = v; })),
      this.field("Predictions", this.segmented("prediction", [["all", "All"], ["correct", "Correct"], ["incorrect", "Incorrect"]],
        s.filter.prediction, (v) => { s.filter.prediction = v; })),
      cfg.models.length > 1 ? h("div", { class: "ia-help" }, "Correct means every model predicts the true label; incorrect, at least one does not.") : null);
  }

  buildClassPicker() {
    const s = this.state;
    const classes = this.config.classes;
    const chips = h("div", { class: "ia-chips" });
    const search = h("input", { type: "search", class: "ia-ms-search", placeholder: "All classes · type to search", "aria-label": "Search classes", autocomplete: "off" });
    const list = h("div", { class: "ia-ms-list", role: "listbox", "aria-multiselectable": "true", hidden: true });
    const box = h("div", { class: "ia-ms" }, h("div", { class: "ia-ms-box", onclick: () => search.focus() }, chips, search), list);

    const toggle = (i, on) => {
      const set = new Set(s.filter.classes);
      if (on) set.add(i); else set.delete(i);
      s.filter.classes = [...set].sort((a, b) => a - b);
      renderChips();
      renderList();
      this.markDirty();
    };
    const renderChips = () => {
      clear(chips);
      for (const i of s.filter.classes) {
        put(chips, h("span", { class: "ia-chip ia-chip-removable" }, classes[i],
          h("button", { type: "button", class: "ia-chip-x", "aria-label": `Remove ${classes[i]}`, onclick: (ev) => { ev.stopPropagation(); toggle(i, false); } }, "×")));
      }
      search.placeholder = s.filter.classes.length ? "Add classes…" : "All classes · type to search";
    };
    const matches = () => {
      const q = search.value.trim().toLowerCase();
      const out = [];
      for (let i = 0; i < classes.length; i++) if (!q || classes[i].toLowerCase().includes(q)) out.push(i);
      return out;
    };
    const renderList = () => {
      if (list.hidden) return;
      clear(list);
      const found = matches();
      const selected = new Set(s.filter.classes);
      put(list, h("div", { class: "ia-ms-actions" },
        h("span", null, `${found.length} of ${classes.length}`),
        h("button", { type: "button", class: "ia-link", onmousedown: (ev) => ev.preventDefault(),
          onclick: () => { for (const i of found.slice(0, MAX_CLASS_OPTIONS)) selected.add(i); s.filter.classes = [...selected].sort((a, b) => a - b); renderChips(); renderList(); this.markDirty(); } }, "Select shown"),
        h("button", { type: "button", class: "ia-link", onmousedown: (ev) => ev.preventDefault(),
          onclick: () => { s.filter.classes = []; renderChips(); renderList(); this.markDirty(); } }, "Clear")));
      for (const i of found.slice(0, MAX_CLASS_OPTIONS)) {
        put(list, h("label", { class: "ia-ms-option", role: "option", "aria-selected": selected.has(i) ? "true" : "false", onmousedown: (ev) => ev.preventDefault() },
          h("input", { type: "checkbox", value: String(i), checked: selected.has(i), onchange: (ev) => toggle(i, ev.target.checked) }),
          h("span", null, classes[i])));
      }
      if (found.length > MAX_CLASS_OPTIONS) put(list, h("div", { class: "ia-help" }, `${found.length - MAX_CLASS_OPTIONS} more: refine the search.`));
      if (!found.length) put(list, h("div", { class: "ia-help" }, "No class matches."));
    };
    const open = () => { list.hidden = false; renderList(); };
    const close = () => { list.hidden = true; };
    search.addEventListener("focus", open);
    search.addEventListener("input", () => { open(); });
    search.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") { close(); search.blur(); }
      if (ev.key === "Enter") {
        ev.preventDefault();
        const first = matches().find((i) => !s.filter.classes.includes(i));
        if (first !== undefined) { toggle(first, true); search.value = ""; renderList(); }
      }
      if (ev.key === "Backspace" && !search.value && s.filter.classes.length) toggle(s.filter.classes[s.filter.classes.length - 1], false);
    });
    this.listen(document, "mousedown", (ev) => { if (!box.contains(ev.target)) close(); });
    search.addEventListener("blur", () => setTimeout(() => { if (!box.contains(document.activeElement)) close(); }, 150));
    this.syncClassPicker = renderChips;
    renderChips();
    return box;
  }

  buildMethodSection() {
    const s = this.state;
    const options = this.config.methods.map((m) => [m.name, m.label]);
    const select = this.select("method", options, s.method, (v) => { s.method = v; this.renderMethodParams(); this.markDirty(); });
    this.els.methodSelect = select;
    this.els.methodHelp = h("div", { class: "ia-help" });
    return h("section", { class: "ia-section" },
      h("h2", { class: "ia-section-title" }, "Attribution"),
      this.field("Method", select),
      this.els.methodHelp,
      this.els.methodPanel);
  }

  /** Controls for the chosen method's parameters, generated from its schema. */
  renderMethodParams() {
    const s = this.state;
    const spec = this.methods.get(s.method);
    const values = s.args[s.method];
    this.els.methodSelect.value = s.method;
    this.els.methodHelp.textContent = spec.help || "";
    const panel = clear(this.els.methodPanel);
    const params = [...spec.params].sort((a, b) => (a.name === "baseline" ? -1 : b.name === "baseline" ? 1 : 0));
    if (!params.length) put(panel, h("div", { class: "ia-help ia-muted" }, "This method has no parameters."));
    for (const p of params) put(panel, this.paramControl(p, values));
    if (params.length) {
      put(panel, h("button", { type: "button", class: "ia-link ia-reset", onclick: () => {
        s.args[s.method] = { ...spec.defaults };
        this.renderMethodParams();
        this.markDirty();
      } }, "Reset to defaults"));
    }
  }

  paramControl(p, values) {
    const fieldName = `arguments.${p.name}`;
    const set = (v) => { values[p.name] = v; };
    const value = values[p.name];
    const title = `${p.name}: ${p.help}`;
    let control;
    let range = null;
    if (p.type === "int" || p.type === "float") {
      const min = p.minimum;
      const max = p.maximum;
      if (min !== undefined || max !== undefined) range = `${min ?? "−∞"} – ${max ?? "∞"}`;
      control = this.numberInput(p.name, value, {
        min, max, step: p.type === "int" ? 1 : "any", placeholder: p.nullable ? "auto" : null,
        onInput: (raw) => set(raw.trim() === "" ? "" : Number.isFinite(Number(raw)) ? Number(raw) : raw),
      });
    } else if (p.type === "bool") {
      control = h("label", { class: "ia-switch" },
        h("input", { type: "checkbox", name: p.name, checked: value === true, onchange: (ev) => set(ev.target.checked) }),
        h("span", null, value === true ? "On" : "Off"));
      control.querySelector("input").addEventListener("change", (ev) => { control.querySelector("span").textContent = ev.target.checked ? "On" : "Off"; });
    } else if (p.type === "enum") {
      const opts = p.choices.map((c) => [c, c]);
      if (typeof value === "string" && !p.choices.includes(value)) opts.push([value, `${value} (invalid)`]);
      control = this.select(p.name, opts, value, set);
    } else if (p.type === "layer") {
      const layers = new Set();
      for (const m of this.config.models) for (const l of m.conv_layers || []) layers.add(l);
      const opts = [["", "Automatic (last convolution)"], ...[...layers].map((l) => [l, l])];
      if (value && !layers.has(value)) opts.push([value, value]);
      control = this.select(p.name, opts, value || "", set);
    } else if (p.type === "shape") {
      const len = p.length || 2;
      const current = Array.isArray(value) ? value : null;
      const inputs = [];
      let auto = null;
      const read = () => {
        if (auto && auto.checked) return null;
        return inputs.map((inp) => (inp.value.trim() === "" ? null : Number(inp.value)));
      };
      const update = () => {
        const v = read();
        set(v === null ? null : v.some((x) => x === null) ? (p.nullable && v.every((x) => x === null) ? null : v.map((x) => (x === null ? "" : x))) : v);
      };
      const image = this.config.image_size || [];
      const maxOf = (i) => (image[i] && p.maximum ? Math.min(image[i], p.maximum) : image[i] || p.maximum || null);
      for (let i = 0; i < len; i++) {
        inputs.push(h("input", { type: "number", class: "ia-input ia-shape-part", min: p.minimum ?? 1, max: maxOf(i), step: 1,
          "aria-label": `${humanize(p.name)} ${i === 0 ? "height" : i === 1 ? "width" : i + 1}`, value: current && current[i] !== undefined ? String(current[i]) : "",
          placeholder: p.nullable ? "auto" : null, disabled: p.nullable && !current, oninput: update }));
      }
      auto = p.nullable ? h("input", { type: "checkbox", checked: !current, onchange: (ev) => {
        for (const inp of inputs) inp.disabled = ev.target.checked;
        if (!ev.target.checked) {
          const side = Math.max(1, Math.ceil(Math.min(...(this.config.image_size || [8, 8])) / 8));
          for (const inp of inputs) if (!inp.value) inp.value = String(side);
        }
        update();
      } }) : null;
      control = h("div", { class: "ia-shape" }, inputs.flatMap((inp, i) => (i ? [h("span", { class: "ia-times" }, "×"), inp] : [inp])),
        auto ? h("label", { class: "ia-auto" }, auto, "auto") : null);
      range = len === 2 && maxOf(0) ? `H × W, up to ${maxOf(0)} × ${maxOf(1)}` : "H × W";
    } else {
      control = h("input", { type: "text", class: "ia-input", name: p.name, value: value ?? "", oninput: (ev) => set(ev.target.value) });
    }
    return this.field(humanize(p.name), control, { help: p.help, field: fieldName, title, range });
  }

  buildDisplaySection() {
    const s = this.state;
    const cfg = this.config;
    const visSelect = this.select("vis_method", cfg.visualization.methods.map((m) => [m, VIS_LABELS[m] || m]), s.vis.method, (v) => {
      s.vis.method = v;
      syncSigns();
    });
    const signSelect = this.select("vis_sign", cfg.visualization.signs.map((m) => [m, SIGN_LABELS[m] || m]), s.vis.sign, (v) => { s.vis.sign = v; });
    const syncSigns = () => {
      const needsOneSign = s.vis.method === "masked_image" || s.vis.method === "alpha_scaling";
      for (const opt of signSelect.options) opt.disabled = needsOneSign && opt.value === "all";
      if (needsOneSign && s.vis.sign === "all") { s.vis.sign = "absolute_value"; signSelect.value = "absolute_value"; }
    };
    syncSigns();
    const outlier = this.numberInput("outlier_perc", s.vis.outlier_perc, { min: 0, max: 50, step: 0.5, onInput: (v) => { s.vis.outlier_perc = v.trim() === "" ? "" : Number(v); } });
    const kMax = Math.min(cfg.limits.top_k_max, cfg.classes.length);
    const topk = this.numberInput("top_k", s.top_k, { min: 1, max: kMax, step: 1, onInput: (v) => { s.top_k = v.trim() === "" ? "" : Number(v); } });
    const size = this.numberInput("page_size", s.page_size, { min: 1, max: cfg.limits.page_size_max, step: 1, onInput: (v) => { s.page_size = v.trim() === "" ? "" : Number(v); } });
    const zoom = this.select("zoom", [["s", "Small"], ["m", "Medium"], ["l", "Large"], ["xl", "Extra large"]], s.zoom, (v) => {
      s.zoom = v;
      this.applyZoom(v);
      this.writeUrl();
    });
    return h("section", { class: "ia-section" },
      h("h2", { class: "ia-section-title" }, "Display"),
      this.field("Visualization", visSelect, { field: "visualization.method" }),
      this.field("Sign", signSelect, { field: "visualization.sign" }),
      h("div", { class: "ia-row2" },
        this.field("Outlier %", outlier, { field: "visualization.outlier_perc", title: "Percentile of the largest attributions clipped before scaling the colours" }),
        this.field("Top-k", topk, { field: "top_k", title: `Predictions shown per model (1 – ${kMax})` })),
      h("div", { class: "ia-row2" },
        this.field("Per page", size, { field: "page_size", title: `Examples per page (1 – ${cfg.limits.page_size_max})` }),
        this.field("Image size", zoom)));
  }

  markDirty() {
    if (!this.els || !this.committed) return;
    let body;
    try {
      body = this.bodyFromState(false);
    } catch (_) {
      body = null;
    }
    const dirty = !body || !sameJson({ ...body, page: 0 }, { ...this.committed, page: 0 });
    this.els.dirty.hidden = !dirty;
    this.els.fetch.classList.toggle("ia-attention", dirty);
  }

  // -------------------------------------------------------------- errors and status

  showError(message, field, kind = "error") {
    const box = h("div", { class: `ia-alert ia-alert-${kind}`, role: "alert" },
      h("span", { class: "ia-alert-text" }, message),
      h("button", { type: "button", class: "ia-alert-x", "aria-label": "Dismiss", onclick: () => box.remove() }, "×"));
    put(clear(this.els.alert), box);
    for (const el of this.root.querySelectorAll(".ia-field.ia-invalid")) el.classList.remove("ia-invalid");
    if (field) {
      const target = [...this.root.querySelectorAll(".ia-field[data-field]")].find((el) => el.dataset.field === field || field.startsWith(el.dataset.field + "."));
      if (target) {
        target.classList.add("ia-invalid");
        if (target.scrollIntoView) target.scrollIntoView({ block: "nearest" });
      }
    }
  }

  clearError() {
    if (!this.els) return;
    clear(this.els.alert);
    for (const el of this.root.querySelectorAll(".ia-field.ia-invalid")) el.classList.remove("ia-invalid");
  }

  renderLegend(sign) {
    const [gradient, lo, hi] = LEGENDS[sign] || LEGENDS.absolute_value;
    put(clear(this.els.legend), h("span", null, lo), h("span", { class: "ia-legend-bar", style: { background: gradient } }), h("span", null, hi));
  }

  renderEmpty(message, detail) {
    clear(this.els.grid);
    if (!message) return;
    put(this.els.grid, h("div", { class: "ia-empty" },
      h("div", { class: "ia-empty-title" }, message),
      detail ? h("div", { class: "ia-help" }, detail) : null));
  }

  setStatus(info, loading) {
    const e = this.els;
    if (!info) {
      e.status.textContent = loading ? "" : "";
      if (loading) put(e.status, spinner(loading));
      return;
    }
    const parts = [];
    const f = this.committed ? this.committed.filter : null;
    const filtered = f && (f.classes.length || f.prediction !== "all");
    const range = info.ids.length ? `#${info.ids[0]}${info.ids.length > 1 ? `–#${info.ids[info.ids.length - 1]}` : ""}` : "";
    if (info.ids.length && filtered) parts.push(`${info.ids.length} match${info.ids.length === 1 ? "" : "es"} (${range})`);
    else if (info.ids.length) parts.push(`Examples ${range}`);
    if (filtered) parts.push(`${info.scanned} scanned${info.exhausted ? " (whole dataset)" : ""}`);
    if (info.total !== null && info.total !== undefined) parts.push(`${info.total} in the dataset`);
    put(clear(e.status), h("span", { class: "ia-status-text" }, parts.join(" · ")));
    if (loading) put(e.status, spinner(loading));
    e.pageLabel.textContent = `Page ${info.page + 1}`;
    e.prev.disabled = !info.has_prev;
    e.next.disabled = !info.has_next;
  }

  // -------------------------------------------------------------- pages

  goPage(delta) {
    if (!this.committed) return;
    const page = Math.max(0, this.committed.page + delta);
    this.runPage({ ...this.committed, page });
  }

  fetchPage(page = 0, opts = {}) {
    let body;
    this.state.page = page;
    try {
      body = this.bodyFromState(true);
    } catch (exc) {
      this.showError(exc.message, exc.field);
      return Promise.resolve();
    }
    if (!opts.keepCompare) this.closeCompare();
    return this.runPage(body);
  }

  async runPage(body) {
    if (this.abort) this.abort.abort();
    const ctrl = typeof AbortController !== "undefined" ? new AbortController() : null;
    this.abort = ctrl;
    const gen = ++this.generation;
    const e = this.els;
    this.clearError();
    const previous = { committed: this.committed, info: this.lastInfo };
    this.committed = JSON.parse(JSON.stringify(body));
    this.state.page = body.page;
    this.writeUrl();
    this.markDirty();
    e.fetch.disabled = true;
    e.prev.disabled = true;
    e.next.disabled = true;
    e.grid.setAttribute("aria-busy", "true");
    this.root.classList.add("ia-busy");
    this.setStatus(null, "Finding examples…");
    this.renderLegend(body.visualization.sign);
    let info = null;
    let failed = null;
    let done = false;
    const pending = new Map();
    const onEvent = (ev) => {
      if (gen !== this.generation || !ev) return;
      if (ev.type === "page") {
        info = ev;
        this.lastInfo = ev;
        this.cards.clear();
        clear(e.grid);
        if (!ev.ids.length) this.renderEmpty(ev.message || "No example on this page.", this.emptyHint(body, ev));
        for (const id of ev.ids) {
          const card = this.placeholderCard(id);
          pending.set(id, card);
          put(e.grid, card.el);
        }
        this.setStatus(ev, ev.ids.length ? `Computing ${ev.ids.length} example${ev.ids.length === 1 ? "" : "s"}…` : null);
      } else if (ev.type === "example") {
        const card = pending.get(ev.example.id);
        if (!card) return;
        pending.delete(ev.example.id);
        this.fillCard(card, ev.example, body);
        if (info) this.setStatus(info, pending.size ? `Computing ${pending.size} more…` : null);
      } else if (ev.type === "error") {
        failed = ev.error || "the page failed";
      } else if (ev.type === "done") {
        done = true;
        if (info && ev.elapsed_ms !== undefined) this.lastElapsed = ev.elapsed_ms;
      }
    };
    try {
      await this.transport.examples(body, onEvent, ctrl ? ctrl.signal : undefined);
    } catch (exc) {
      if (gen !== this.generation || (exc && exc.name === "AbortError")) return;
      failed = exc;
    }
    if (gen !== this.generation) return;
    e.fetch.disabled = false;
    e.grid.removeAttribute("aria-busy");
    this.root.classList.remove("ia-busy");
    if (failed) {
      const message = typeof failed === "string" ? failed : failed.message || String(failed);
      this.showError(message, typeof failed === "string" ? apiError(message).field : failed.field);
    }
    for (const card of pending.values()) {
      this.failCard(card, failed ? "Not computed: the request failed (see the message above)." : done ? "The server sent no result for this example." : "The connection closed before this example was computed.");
    }
    if (info) {
      this.setStatus(info, null);
      return;
    }
    // Refused before any page arrived: the previous page stays on screen, and so do its URL and pager.
    this.committed = previous.committed;
    this.lastInfo = previous.info;
    if (previous.committed) this.state.page = previous.committed.page;
    this.writeUrl();
    this.markDirty();
    this.setStatus(previous.info || null, null);
    if (!e.grid.querySelector(".ia-card")) this.renderEmpty(failed ? "Nothing to show: fix the settings and press Fetch." : "No page was returned.");
  }

  emptyHint(body, info) {
    const f = body.filter;
    if (!f.classes.length && f.prediction === "all") return info.page > 0 ? "Press Previous to go back." : null;
    return info.exhausted ? "Change the class or prediction filter to see examples." : "Press Next to scan further, or change the filter.";
  }

  // -------------------------------------------------------------- cards

  placeholderCard(id) {
    const el = h("article", { class: "ia-card ia-card-loading", dataset: { exampleId: String(id) }, "aria-busy": "true" },
      h("header", { class: "ia-card-head" }, h("span", { class: "ia-card-id" }, `#${id}`)),
      h("div", { class: "ia-card-body" },
        h("div", { class: "ia-skeleton ia-skeleton-img" }),
        h("div", { class: "ia-skeleton-lines" }, h("div", { class: "ia-skeleton" }), h("div", { class: "ia-skeleton" }), h("div", { class: "ia-skeleton ia-short" })),
        h("div", { class: "ia-skeleton ia-skeleton-img" })),
      h("div", { class: "ia-card-foot" }, spinner("Computing attributions…")));
    const card = { id, el, example: null, rows: new Map() };
    this.cards.set(id, card);
    return card;
  }

  failCard(card, message) {
    card.el.classList.remove("ia-card-loading");
    card.el.removeAttribute("aria-busy");
    card.el.classList.add("ia-card-failed");
    const foot = card.el.querySelector(".ia-card-foot");
    if (foot) put(clear(foot), h("div", { class: "ia-inline-error", role: "alert" }, message));
  }

  fillCard(card, ex, body) {
    card.example = ex;
    card.body = body;
    const el = card.el;
    el.classList.remove("ia-card-loading");
    el.removeAttribute("aria-busy");
    const label = ex.label;
    const wrongModels = label ? ex.models.filter((m) => m.predictions.length && m.predictions[0].index !== label.index) : [];
    const verdict = !label ? null : wrongModels.length
      ? h("span", { class: "ia-badge ia-badge-bad", title: "Top prediction differs from the true label" }, ex.models.length > 1 ? `${wrongModels.length}/${ex.models.length} wrong` : "Misclassified")
      : h("span", { class: "ia-badge ia-badge-good" }, "Correct");
    const truth = label
      ? h("button", { type: "button", class: "ia-chip ia-chip-truth", title: "Attribute every model to the true label", onclick: () => this.retargetAll(card, label.index) }, label.name)
      : h("span", { class: "ia-muted" }, "no label");
    const rows = h("div", { class: "ia-model-rows" });
    card.rows.clear();
    for (const m of ex.models) {
      const row = this.modelRow(card, m);
      put(rows, row.el);
    }
    put(clear(el), 
      h("header", { class: "ia-card-head" },
        h("span", { class: "ia-card-id", title: "Example id (position in the dataset)" }, `#${ex.id}`),
        h("span", { class: "ia-truth" }, h("span", { class: "ia-muted" }, "True label"), truth),
        verdict,
        h("span", { class: "ia-spacer" }),
        h("button", { type: "button", class: "ia-btn ia-btn-small ia-compare-btn", title: "Show several methods side by side for this example", onclick: () => this.openCompare({ id: ex.id }) }, "Compare methods")),
      h("div", { class: "ia-card-body" },
        h("div", { class: "ia-inputs" }, ex.features.map((f) => this.inputView(f))),
        rows));
  }

  inputView(f) {
    if (f.type === "image") {
      return h("figure", { class: "ia-figure" }, this.image(f.original, `${f.name} (input)`), h("figcaption", null, f.name));
    }
    if (f.type === "text") {
      return h("div", { class: "ia-text-input" }, h("div", { class: "ia-mini-title" }, f.name),
        h("div", { class: "ia-tokens" }, (f.original || []).map((t) => h("span", { class: "ia-token" }, t))));
    }
    if (f.type === "general") {
      const cats = f.categories || [];
      const values = f.original || [];
      return h("div", { class: "ia-general-input" }, h("div", { class: "ia-mini-title" }, f.name),
        h("table", { class: "ia-values" }, h("tbody", null, values.slice(0, 50).map((v, i) => h("tr", null, h("th", null, cats[i] ?? `#${i}`), h("td", null, fmt(v)))))));
    }
    return null;
  }

  image(src, alt) {
    const img = h("img", { class: "ia-img", src, alt, draggable: "false", decoding: "async" });
    img.addEventListener("load", () => {
      if (img.naturalWidth && img.naturalWidth < 96) img.classList.add("ia-pixelated");
    });
    return img;
  }

  modelRow(card, m) {
    const row = { model: m, el: h("section", { class: "ia-model", dataset: { model: String(m.index) } }) };
    card.rows.set(m.index, row);
    this.renderModelRow(card, row, m);
    return row;
  }

  renderModelRow(card, row, m) {
    const ex = card.example;
    const label = ex.label;
    row.model = m;
    const target = m.target ? m.target.index : null;
    const preds = h("ol", { class: "ia-preds", "aria-label": `Top predictions of ${m.name}` },
      m.predictions.map((p) => h("li", null,
        h("button", {
          type: "button", class: "ia-pred" + (p.index === target ? " ia-pred-target" : "") + (label && p.index === label.index ? " ia-pred-true" : ""),
          "aria-pressed": p.index === target ? "true" : "false", dataset: { classIndex: String(p.index) },
          title: `Attribute to ${p.label} (${(p.score * 100).toFixed(2)}%)`, onclick: () => this.retarget(card, row, p.index),
        },
        h("span", { class: "ia-pred-top" }, h("span", { class: "ia-pred-label" }, p.label), h("span", { class: "ia-pred-score" }, pct(p.score))),
        h("span", { class: "ia-bar" }, h("span", { class: "ia-bar-fill", style: { width: `${Math.max(0, Math.min(1, p.score)) * 100}%` } }))))));
    const attrs = h("div", { class: "ia-attrs" });
    if (m.error) put(attrs, h("div", { class: "ia-inline-error", role: "alert" }, m.error));
    const body = card.body;
    const side = h("div", { class: "ia-attr-side" });
    for (const a of m.attributions) {
      const view = this.attributionView(a, { ex, model: m, method: body.method, target: m.target });
      put(a.type === "image" ? attrs : side, view);
    }
    if (m.attributions.length > 1) put(side, this.contributionBars(m.attributions));
    if (side.childNodes.length) put(attrs, side);
    const showName = this.config.models.length > 1;
    put(clear(row.el), 
      showName || m.error ? h("div", { class: "ia-model-head" }, h("span", { class: "ia-model-name" }, m.name)) : null,
      h("div", { class: "ia-model-main" }, preds, attrs),
      h("div", { class: "ia-row-overlay", hidden: true }, spinner("Attributing…")));
  }

  attributionView(a, ctx) {
    const targetName = ctx.target ? ctx.target.name : "output";
    if (a.type === "image" && a.image) {
      const name = `insights-${ctx.ex.id}-${fileSafe(ctx.model.name)}-${fileSafe(ctx.method)}-${fileSafe(targetName)}.png`;
      return h("figure", { class: "ia-figure ia-attr", dataset: { feature: a.name } },
        this.image(a.image, `${ctx.method} attribution of ${a.name} for ${targetName}`),
        h("figcaption", null,
          h("span", { class: "ia-attr-target", title: `Attribution target: ${targetName}` }, `→ ${targetName}`),
          h("a", { class: "ia-download", href: a.image, download: name, title: "Download this attribution as PNG" }, "PNG")));
    }
    if (a.type === "text") return this.tokenView(a);
    if (a.type === "general") return this.barChart(a);
    if (a.scores) return h("div", { class: "ia-help" }, `${a.name}: ${a.scores.length} attribution values`);
    return null;
  }

  tokenView(a) {
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
  }

  barChart(a) {
    const scores = a.scores || [];
    const cats = a.categories || [];
    const maxAbs = Math.max(1e-12, ...scores.map((s) => Math.abs(s)));
    const order = scores.map((s, i) => i);
    if (order.length > 30) order.sort((i, j) => Math.abs(scores[j]) - Math.abs(scores[i]));
    return h("div", { class: "ia-general-attr ia-wide", dataset: { feature: a.name } },
      h("div", { class: "ia-mini-title" }, a.name, order.length > 30 ? h("span", { class: "ia-muted" }, " · 30 largest") : null),
      h("div", { class: "ia-barchart", role: "img", "aria-label": `Attribution per category of ${a.name}` },
        order.slice(0, 30).map((i) => {
          const s = scores[i];
          const w = (Math.abs(s) / maxAbs) * 50;
          return h("div", { class: "ia-barchart-row", title: `${cats[i] ?? i}: ${fmt(s)}` },
            h("span", { class: "ia-barchart-label" }, cats[i] ?? `#${i}`),
            h("span", { class: "ia-barchart-track" },
              h("span", { class: "ia-barchart-axis" }),
              h("span", { class: `ia-barchart-bar ${s >= 0 ? "ia-pos" : "ia-neg"}`, style: s >= 0 ? { left: "50%", width: `${w}%` } : { right: "50%", width: `${w}%` } })),
            h("span", { class: "ia-barchart-value" }, fmt(s)));
        })));
  }

  contributionBars(attributions) {
    return h("div", { class: "ia-contrib ia-wide" },
      h("div", { class: "ia-mini-title" }, "Contribution per feature"),
      attributions.map((a) => h("div", { class: "ia-contrib-row", title: `${a.name}: ${(a.contribution * 100).toFixed(1)}% of the total absolute attribution` },
        h("span", { class: "ia-contrib-label" }, a.name),
        h("span", { class: "ia-bar" }, h("span", { class: "ia-bar-fill", style: { width: `${Math.max(0, Math.min(1, a.contribution)) * 100}%` } })),
        h("span", { class: "ia-contrib-value" }, pct(a.contribution)))));
  }

  retargetAll(card, target) {
    for (const row of card.rows.values()) this.retarget(card, row, target);
  }

  async retarget(card, row, target) {
    const overlay = row.el.querySelector(".ia-row-overlay");
    if (overlay) overlay.hidden = false;
    row.el.classList.add("ia-model-busy");
    const token = (row.token = (row.token || 0) + 1);
    const body = this.attributeBody(card.body, card.example.id, row.model.index, target);
    try {
      const result = await this.transport.attribute(body);
      if (token !== row.token || !card.el.isConnected) return;
      const m = result.example.models.find((x) => x.index === row.model.index) || result.example.models[0];
      this.renderModelRow(card, row, m);
    } catch (exc) {
      if (token !== row.token || !card.el.isConnected) return;
      if (overlay) overlay.hidden = true;
      const attrs = row.el.querySelector(".ia-attrs");
      if (attrs) {
        for (const old of attrs.querySelectorAll(".ia-inline-error")) old.remove();
        attrs.prepend(h("div", { class: "ia-inline-error", role: "alert" }, exc.message || String(exc)));
      }
    } finally {
      if (token === row.token) row.el.classList.remove("ia-model-busy");
    }
  }

  // -------------------------------------------------------------- compare mode

  openCompare({ id, methods, target }) {
    const base = this.committed || this.bodyFromState(false);
    const chosen = methods && methods.length ? methods.filter((m) => this.methods.has(m)) : [];
    if (!chosen.length) {
      chosen.push(base.method);
      for (const m of COMPARE_DEFAULTS) if (chosen.length < 4 && this.methods.has(m) && !chosen.includes(m)) chosen.push(m);
    }
    this.compare = { id: Number(id), methods: chosen.slice(0, COMPARE_MAX), target: target ?? null, base };
    this.els.pageView.hidden = true;
    this.els.compare.hidden = false;
    this.renderCompare();
    this.writeUrl();
  }

  closeCompare() {
    if (!this.compare) return;
    this.compare = null;
    this.compareRun++;
    if (!this.els) return;
    this.els.compare.hidden = true;
    clear(this.els.compare);
    this.els.pageView.hidden = false;
    this.writeUrl();
  }

  renderCompare() {
    const c = this.compare;
    const cfg = this.config;
    const run = ++this.compareRun;
    const root = clear(this.els.compare);
    const targetOptions = [["", "Each model's top prediction"], ...cfg.classes.map((name, i) => [String(i), name])];
    const targetSelect = this.select("compare_target", targetOptions, c.target === null ? "" : String(c.target), (v) => {
      c.target = v === "" ? null : Number(v);
      this.writeUrl();
      this.renderCompare();
    });
    const picker = h("div", { class: "ia-method-picker", role: "group", "aria-label": "Methods to compare" },
      cfg.methods.map((m) => h("label", { class: "ia-check-chip" + (c.methods.includes(m.name) ? " ia-on" : ""), title: m.help },
        h("input", { type: "checkbox", value: m.name, checked: c.methods.includes(m.name), onchange: (ev) => {
          if (ev.target.checked) {
            if (c.methods.length >= COMPARE_MAX) { ev.target.checked = false; this.showError(`Compare at most ${COMPARE_MAX} methods at once.`, null, "warning"); return; }
            c.methods.push(m.name);
          } else c.methods = c.methods.filter((x) => x !== m.name);
          this.writeUrl();
          this.renderCompare();
        } }), m.label)));
    const table = h("div", { class: "ia-compare-grid", style: { gridTemplateColumns: `calc(var(--ia-img) + 4px) repeat(${Math.max(1, c.methods.length)}, minmax(calc(var(--ia-img) + 4px), 1fr))` } });
    const inputCell = h("div", { class: "ia-compare-input" }, spinner("Loading…"));
    put(table, h("div", { class: "ia-compare-colhead" }, "Input"));
    for (const name of c.methods) {
      const spec = this.methods.get(name);
      const args = name === c.base.method ? c.base.arguments : spec.defaults;
      const summary = Object.entries(args || {}).filter(([, v]) => v !== null && v !== "").slice(0, 3).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("×") : v}`).join(", ");
      put(table, h("div", { class: "ia-compare-colhead", title: spec.help }, spec.label, summary ? h("div", { class: "ia-help" }, name === c.base.method ? `${summary} (your settings)` : summary || "defaults") : null));
    }
    const cells = [];
    for (const model of cfg.models) {
      put(table, cfg.models.length > 1 ? h("div", { class: "ia-compare-rowhead" }, model.name) : null);
      if (cfg.models.length > 1) for (let i = 0; i < c.methods.length; i++) put(table, h("div", { class: "ia-compare-rowhead ia-filler" }));
      put(table, model.index === 0 ? inputCell : h("div", { class: "ia-compare-input ia-muted" }, "same input"));
      for (const name of c.methods) {
        const cell = h("div", { class: "ia-compare-cell", dataset: { method: name, model: String(model.index) } }, spinner("Computing…"));
        put(table, cell);
        cells.push({ cell, model: model.index, method: name });
      }
    }
    append(root, [
      h("div", { class: "ia-compare-head" },
        h("button", { type: "button", class: "ia-btn", onclick: () => this.closeCompare() }, "‹ Back to examples"),
        h("h2", { class: "ia-compare-title" }, `Example #${c.id}: methods side by side`),
        h("span", { class: "ia-spacer" }),
        h("label", { class: "ia-inline-field" }, "Target", targetSelect)),
      picker,
      h("div", { class: "ia-compare-label" }),
      c.methods.length ? table : h("div", { class: "ia-empty" }, h("div", { class: "ia-empty-title" }, "Pick at least one method above.")),
    ]);
    const labelBox = root.querySelector(".ia-compare-label");
    let inputShown = false;
    const queue = cells.slice();
    const worker = async () => {
      while (queue.length && run === this.compareRun) {
        const { cell, model, method } = queue.shift();
        const body = this.attributeBody(c.base, c.id, model, c.target, method);
        try {
          const result = await this.transport.attribute(body);
          if (run !== this.compareRun) return;
          const ex = result.example;
          const m = ex.models[0];
          if (!inputShown) {
            inputShown = true;
            put(clear(inputCell), ex.features.map((f) => this.inputView(f)));
            const truth = ex.label ? `True label: ${ex.label.name}` : "No label";
            const top = m.predictions.length ? ` · ${m.name} predicts ${m.predictions[0].label} (${pct(m.predictions[0].score)})` : "";
            labelBox.textContent = truth + top;
          }
          clear(cell);
          if (m.error) put(cell, h("div", { class: "ia-inline-error", role: "alert" }, m.error));
          for (const a of m.attributions) put(cell, this.attributionView(a, { ex, model: m, method, target: m.target }));
        } catch (exc) {
          if (run !== this.compareRun) return;
          put(clear(cell), h("div", { class: "ia-inline-error", role: "alert" }, exc.message || String(exc)));
          if (!inputShown && exc.field === "example_id") put(clear(inputCell), h("div", { class: "ia-inline-error" }, exc.message));
        }
      }
    };
    worker();
    worker();
  }
}

/**
 * Build the Insights explorer inside `root`.
 *
 * transport: {config(), examples(body, onEvent, signal?), attribute(body, signal?)}, each async;
 *   examples() calls onEvent for every event ({type: "page"|"example"|"done"|"error"}) and resolves
 *   when the stream ends; a rejection's message is shown to the user (the server's {"error"} text).
 * options: urlState (keep the view in the address bar; default false), autoFetch (load the first
 *   page at once; default true), height (CSS height of the root; default 820px outside urlState mode
 *   unless the root already has one).
 * Returns {ready (a promise), destroy(), fetch(page), state()}.
 */
export function mount(root, transport, options = {}) {
  if (!root) throw new Error("mount: no root element");
  if (!transport || typeof transport.config !== "function") throw new Error("mount: transport needs config(), examples() and attribute()");
  const app = new InsightsApp(root, transport, { urlState: false, autoFetch: true, ...options });
  const ready = app.start();
  return {
    ready,
    destroy: () => app.destroy(),
    fetch: (page = 0) => app.fetchPage(page),
    state: () => (app.committed ? JSON.parse(JSON.stringify(app.committed)) : null),
  };
}
