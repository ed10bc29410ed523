// Insights web UI: ES modules, no build step, no CDN.
//
// `mount(root, transport, options)` builds the whole explorer inside `root` and talks to the server
// only through `transport.request(kind, body, {onEvent, signal})` (see lib/transport.js), so the
// standalone page (HTTP) and the notebook widget (comm messages) share every line of it.
//
// The parts: lib/ (DOM helpers, the transports, the form state and its URL), controls/ (the
// sidebar's sections), views/ (the main area's views, registered in views/index.js, and the
// feature views in views/features/). This module holds their life cycle and the layout.

import { append, clear, h, put, sameJson, spinner } from "./lib/dom.js";
import { ZOOMS, attributeBody, bodyFromState, defaultState, metricSets } from "./lib/state.js";
import { readUrl, writeUrl } from "./lib/url-state.js";
import { displaySection } from "./controls/display.js";
import { filterSection } from "./controls/filters.js";
import { methodSection } from "./controls/method-params.js";
import { VIEWS } from "./views/index.js";

export { httpTransport } from "./lib/transport.js";

class InsightsApp {
  constructor(root, transport, options) {
    this.root = root;
    this.transport = transport;
    this.options = options;
    this.config = null;
    this.methods = new Map();
    this.state = null; // the form
    this.committed = null; // the body of the page on screen
    this.views = new Map(); // name -> view (views/index.js); the first is the default view
    this.controls = {}; // what one sidebar section offers another (the Display section's showSign)
    this.cleanup = [];
    this.destroyed = false;
  }

  // -------------------------------------------------------------- life cycle

  async start() {
    this.root.classList.add("insights-app");
    // undefined: 820px unless the page or the root already sizes it; 0, null or "auto": grow with the content.
    const height = this.options.height !== undefined ? this.options.height
      : (this.options.urlState || this.root.style.height ? null : 820);
    if (height && height !== "auto") this.root.style.height = typeof height === "number" ? `${height}px` : height;
    put(clear(this.root), h("div", { class: "ia-boot" }, spinner("Loading Insights…")));
    try {
      this.config = await this.transport.request("config");
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
    this.state = defaultState(this.config, this.methods);
    const fromUrl = this.options.urlState ? readUrl(this, VIEWS, window.location.search) : { warning: null, views: {} };
    this.viewModules = VIEWS; // what the views are before they are made (the toolbar's entries read it)
    for (const view of VIEWS) this.views.set(view.name, view.create(this));
    this.build(fromUrl.warning);
    if (this.options.urlState && this.config.title) document.title = this.config.title;
    this.writeUrl();
    const [opened, params] = Object.entries(fromUrl.views).find(([name]) => name !== this.mainView.name) || [];
    if (opened) this.openView(opened, params);
    if (this.options.autoFetch !== false) this.fetchPage(this.state.page, { keepView: Boolean(opened) });
  }

  destroy() {
    this.destroyed = true;
    for (const view of this.views.values()) view.destroy();
    for (const fn of this.cleanup) fn();
    this.cleanup = [];
    clear(this.root);
  }

  listen(target, type, fn, opts) {
    target.addEventListener(type, fn, opts);
    this.cleanup.push(() => target.removeEventListener(type, fn, opts));
  }

  get mainView() {
    return this.views.values().next().value;
  }

  // -------------------------------------------------------------- state

  bodyFromState(strict) {
    return bodyFromState(this.state, this.methods, strict, metricSets(this.config));
  }

  attributeBody(base, exampleId, model, target, method) {
    return attributeBody(base, exampleId, model, target, method, this.state, this.methods, this.config);
  }

  writeUrl() {
    if (this.options.urlState) writeUrl(this);
  }

  // -------------------------------------------------------------- layout

  build(warning) {
    const cfg = this.config;
    this.applyZoom(this.state.zoom);
    const classesText = `${cfg.classes.length} class${cfg.classes.length === 1 ? "" : "es"}`;
    const modelsText = cfg.models.length === 1 ? cfg.models[0].name : `${cfg.models.length} models`;
    const featuresText = cfg.features.map((f) => `${f.name} (${f.type})`).join(", ");
    const e = (this.els = {});
    e.alert = h("div", { class: "ia-alerts", "aria-live": "polite" });
    e.fetch = h("button", { type: "submit", class: "ia-btn ia-btn-primary ia-fetch" }, "Fetch");
    e.cancel = h("button", { type: "button", class: "ia-btn ia-cancel", hidden: true, title: "Stop computing this page (what has arrived stays)", onclick: () => this.mainView.cancel() }, "Cancel");
    e.dirty = h("div", { class: "ia-dirty", hidden: true }, "Settings changed: press Fetch to apply them.");
    // On a narrow root (css/narrow.css) the form folds away under this button, leaving Fetch and the cards.
    e.settings = h("button", { type: "button", class: "ia-btn ia-settings-toggle", "aria-expanded": "false",
      onclick: () => {
        const open = e.settings.getAttribute("aria-expanded") !== "true";
        e.settings.setAttribute("aria-expanded", String(open));
        this.root.querySelector(".ia-sidebar").classList.toggle("ia-sidebar-open", open);
      } }, "Settings");
    const form = h("form", { class: "ia-sidebar-form", novalidate: true, onsubmit: (ev) => { ev.preventDefault(); this.fetchPage(0); } },
      h("div", { class: "ia-sidebar-scroll" }, (e.filters = filterSection(this)), methodSection(this), displaySection(this)),
      h("div", { class: "ia-sidebar-foot" }, e.dirty, h("div", { class: "ia-foot-buttons" }, e.settings, e.cancel, e.fetch)));
    this.listen(form, "input", () => this.markDirty());
    this.listen(form, "change", () => this.markDirty());
    for (const view of this.views.values()) view.el.hidden = view !== this.mainView;

    append(clear(this.root), [
      h("header", { class: "ia-header" },
        // The page's one h1; inside a notebook the app is a part of someone else's document.
        h(this.options.urlState ? "h1" : "h2", { class: "ia-brand" }, h("span", { class: "ia-logo", "aria-hidden": "true" }), cfg.title || "Insights"),
        h("div", { class: "ia-header-info" },
          h("span", { class: "ia-pill", title: cfg.models.map((m) => m.name).join(", ") }, modelsText),
          h("span", { class: "ia-pill" }, classesText),
          h("span", { class: "ia-pill ia-pill-wide", title: featuresText }, featuresText))),
      h("div", { class: "ia-body" },
        h("aside", { class: "ia-sidebar", "aria-label": "Filters and attribution settings" }, form),
        h("main", { class: "ia-main" }, e.alert, [...this.views.values()].map((view) => view.el))),
    ]);
    this.mainView.renderEmpty(this.options.autoFetch === false ? "Choose filters and a method, then press Fetch." : "");
    if (warning) this.showError(warning, null, "warning");
  }

  /** Redraw the Examples section from the state (a view changed the filter: a confusion cell, the loss order). */
  refreshFilters() {
    if (!this.els || !this.els.filters) return;
    const fresh = filterSection(this);
    this.els.filters.replaceWith(fresh);
    this.els.filters = fresh;
  }

  applyZoom(zoom) {
    const px = ZOOMS[zoom] || ZOOMS.m;
    this.root.style.setProperty("--ia-img", `${px}px`);
    this.root.style.setProperty("--ia-img-large", `${Math.round(px * 1.25)}px`);
  }

  /** Mark the Fetch button when the form differs from the page on screen. */
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
    for (const view of this.views.values()) if (view.markStale) view.markStale(body);
  }

  /** While a page computes: Cancel shows; Fetch, the pager and the form stay usable (a new Fetch replaces the page). */
  setBusy(busy) {
    this.els.cancel.hidden = !busy;
    this.root.classList.toggle("ia-busy", busy);
  }

  // -------------------------------------------------------------- views

  /** Show the view `name` instead of the others, opened with `params`. */
  openView(name, params) {
    const view = this.views.get(name);
    for (const other of this.views.values()) {
      if (other === view) continue;
      if (other !== this.mainView && other.isOpen) other.close();
      other.el.hidden = true;
    }
    view.el.hidden = false;
    view.open(params || {});
    this.writeUrl();
  }

  /** Back to the default view. */
  closeView() {
    const open = [...this.views.values()].filter((view) => view !== this.mainView && view.isOpen);
    if (!open.length || !this.els) return;
    let focusBack = null; // what a view says should have the focus once it is closed
    for (const view of open) {
      focusBack = view.close() || focusBack;
      view.el.hidden = true;
    }
    this.mainView.el.hidden = false;
    if (focusBack && focusBack.isConnected) focusBack.focus();
    this.writeUrl();
  }

  /** Fetch page `page` of what the form describes into the default view (`keepView`: leave the open view open). */
  fetchPage(page = 0, opts = {}) {
    return this.mainView.fetch(page, opts);
  }

  // -------------------------------------------------------------- errors

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
}

/**
 * Build the Insights explorer inside `root`.
 *
 * transport: {request(kind, body, {onEvent, signal})}, async (see lib/transport.js: httpTransport,
 *   commTransport); a rejection's message is shown to the user (the server's {"error"} text).
 * options: urlState (keep the view in the address bar; default false), autoFetch (load the first
 *   page at once; default true), height (CSS height of the root, a number of px or a CSS length;
 *   default 820px outside urlState mode unless the root already has one; 0, null or "auto": no fixed
 *   height, the root grows with its content).
 * The root takes its container's width (never more: a narrow container gets the narrow layout, see
 *   css/narrow.css) and follows a dark Jupyter or VS Code theme (css/theme.css); the standalone page
 *   (body.insights-standalone) follows the system's dark mode.
 * Returns {ready (a promise), destroy(), fetch(page), state()}.
 */
export function mount(root, transport, options = {}) {
  if (!root) throw new Error("mount: no root element");
  if (!transport || typeof transport.request !== "function") throw new Error("mount: transport needs request(kind, body, options)");
  const app = new InsightsApp(root, transport, { urlState: false, autoFetch: true, ...options });
  const ready = app.start();
  return {
    ready,
    destroy: () => app.destroy(),
    fetch: (page = 0) => app.fetchPage(page),
    state: () => (app.committed ? JSON.parse(JSON.stringify(app.committed)) : null),
  };
}
