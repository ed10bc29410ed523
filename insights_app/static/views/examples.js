// The examples view (the default one): a page of cards, the pager, the status line and the legend.
// A page streams in: the ids first (placeholder cards), then each example as it is computed.

import { clear, h, put, spinner } from "../lib/dom.js";
import { apiError } from "../lib/transport.js";
import { failCard, fillCard, placeholderCard } from "./cards.js";

const LEGENDS = {
  all: ["linear-gradient(90deg, #ff0000, #ffffff, #008000)", "−", "+"],
  positive: ["linear-gradient(90deg, #f7fcf5, #74c476, #00441b)", "0", "+"],
  negative: ["linear-gradient(90deg, #fff5f0, #fb6a4a, #67000d)", "0", "−"],
  absolute_value: ["linear-gradient(90deg, #f7fbff, #6baed6, #08306b)", "0", "|max|"],
};

class ExamplesView {
  constructor(app) {
    this.app = app;
    this.generation = 0; // the page on screen; events of older pages are dropped
    this.abort = null;
    this.lastInfo = null;
    const cfg = app.config;
    const imagesOnly = cfg.features.filter((f) => f.type === "image").length === cfg.features.length;
    this.status = h("div", { class: "ia-status" }, "");
    this.legend = h("div", { class: "ia-legend", title: "Colour scale of the attribution maps" });
    this.prev = h("button", { type: "button", class: "ia-btn", disabled: true, onclick: () => this.go(-1), title: "Previous page" }, "‹ Previous");
    this.next = h("button", { type: "button", class: "ia-btn", disabled: true, onclick: () => this.go(1), title: "Next page" }, "Next ›");
    this.pageLabel = h("span", { class: "ia-page-label" }, "");
    this.grid = h("div", { class: "ia-grid" + (imagesOnly ? "" : " ia-grid-wide"), "aria-live": "polite" });
    this.el = h("div", { class: "ia-page-view" },
      h("div", { class: "ia-toolbar" },
        h("div", { class: "ia-toolbar-left" }, this.status),
        h("div", { class: "ia-toolbar-right" }, this.legend, h("div", { class: "ia-pager" }, this.prev, this.pageLabel, this.next))),
      this.grid);
    this.renderLegend(app.state.vis.sign);
  }

  get isOpen() {
    return true; // the default view: shown whenever no other view is
  }

  open() {}

  close() {}

  destroy() {
    if (this.abort) this.abort.abort();
  }

  go(delta) {
    const committed = this.app.committed;
    if (!committed) return;
    this.run({ ...committed, page: Math.max(0, committed.page + delta) });
  }

  /** Fetch page `page` of what the form describes (a form error is shown instead). */
  fetch(page = 0, { keepView = false } = {}) {
    const app = this.app;
    app.state.page = page;
    let body;
    try {
      body = app.bodyFromState(true);
    } catch (exc) {
      app.showError(exc.message, exc.field);
      return Promise.resolve();
    }
    if (!keepView) app.closeView();
    return this.run(body);
  }

  async run(body) {
    const app = this.app;
    if (this.abort) this.abort.abort();
    const ctrl = typeof AbortController !== "undefined" ? new AbortController() : null;
    this.abort = ctrl;
    const gen = ++this.generation;
    app.clearError();
    const previous = { committed: app.committed, info: this.lastInfo };
    app.committed = JSON.parse(JSON.stringify(body));
    app.state.page = body.page;
    app.writeUrl();
    app.markDirty();
    app.setBusy(true);
    this.prev.disabled = true;
    this.next.disabled = true;
    this.grid.setAttribute("aria-busy", "true");
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
        clear(this.grid);
        if (!ev.ids.length) this.renderEmpty(ev.message || "No example on this page.", emptyHint(body, ev));
        for (const id of ev.ids) {
          const card = placeholderCard(id);
          pending.set(id, card);
          put(this.grid, card.el);
        }
        this.setStatus(ev, ev.ids.length ? `Computing ${ev.ids.length} example${ev.ids.length === 1 ? "" : "s"}…` : null);
      } else if (ev.type === "example") {
        const card = pending.get(ev.example.id);
        if (!card) return;
        pending.delete(ev.example.id);
        fillCard(app, card, ev.example, body);
        if (info) this.setStatus(info, pending.size ? `Computing ${pending.size} more…` : null);
      } else if (ev.type === "error") {
        failed = ev.error || "the page failed";
      } else if (ev.type === "done") {
        done = true;
      }
    };
    try {
      const answer = await app.transport.request("examples", body, { onEvent, signal: ctrl ? ctrl.signal : undefined });
      if (answer && answer.page) asEvents(answer, onEvent); // the page as one document (it did not stream)
    } catch (exc) {
      if (gen !== this.generation || (exc && exc.name === "AbortError")) return;
      failed = exc;
    }
    if (gen !== this.generation) return;
    app.setBusy(false);
    this.grid.removeAttribute("aria-busy");
    if (failed) {
      const message = typeof failed === "string" ? failed : failed.message || String(failed);
      app.showError(message, typeof failed === "string" ? apiError(message).field : failed.field);
    }
    for (const card of pending.values()) {
      failCard(card, failed ? "Not computed: the request failed (see the message above)." : done ? "The server sent no result for this example." : "The connection closed before this example was computed.");
    }
    if (info) {
      this.setStatus(info, null);
      return;
    }
    // Refused before any page arrived: the previous page stays on screen, and so do its URL and pager.
    app.committed = previous.committed;
    this.lastInfo = previous.info;
    if (previous.committed) app.state.page = previous.committed.page;
    app.writeUrl();
    app.markDirty();
    this.setStatus(previous.info || null, null);
    if (!this.grid.querySelector(".ia-card")) this.renderEmpty(failed ? "Nothing to show: fix the settings and press Fetch." : "No page was returned.");
  }

  renderLegend(sign) {
    const [gradient, lo, hi] = LEGENDS[sign] || LEGENDS.absolute_value;
    put(clear(this.legend), h("span", null, lo), h("span", { class: "ia-legend-bar", style: { background: gradient } }), h("span", null, hi));
  }

  renderEmpty(message, detail) {
    clear(this.grid);
    if (!message) return;
    put(this.grid, h("div", { class: "ia-empty" },
      h("div", { class: "ia-empty-title" }, message),
      detail ? h("div", { class: "ia-help" }, detail) : null));
  }

  setStatus(info, loading) {
    if (!info) {
      this.status.textContent = "";
      if (loading) put(this.status, spinner(loading));
      return;
    }
    const parts = [];
    const f = this.app.committed ? this.app.committed.filter : null;
    const filtered = f && (f.classes.length || f.prediction !== "all");
    const range = info.ids.length ? `#${info.ids[0]}${info.ids.length > 1 ? `–#${info.ids[info.ids.length - 1]}` : ""}` : "";
    if (info.ids.length && filtered) parts.push(`${info.ids.length} match${info.ids.length === 1 ? "" : "es"} (${range})`);
    else if (info.ids.length) parts.push(`Examples ${range}`);
    if (filtered) parts.push(`${info.scanned} scanned${info.exhausted ? " (whole dataset)" : ""}`);
    if (info.total !== null && info.total !== undefined) parts.push(`${info.total} in the dataset`);
    put(clear(this.status), h("span", { class: "ia-status-text" }, parts.join(" · ")));
    if (loading) put(this.status, spinner(loading));
    this.pageLabel.textContent = `Page ${info.page + 1}`;
    this.prev.disabled = !info.has_prev;
    this.next.disabled = !info.has_next;
  }
}

/** A page answered as one document, handed on as the events a stream would have sent. */
function asEvents(doc, onEvent) {
  onEvent({ type: "page", ...doc.page });
  for (const example of doc.examples || []) onEvent({ type: "example", example });
  onEvent({ type: "done", elapsed_ms: doc.elapsed_ms });
}

/** What to do about an empty page. */
function emptyHint(body, info) {
  const f = body.filter;
  if (!f.classes.length && f.prediction === "all") return info.page > 0 ? "Press Previous to go back." : null;
  return info.exhausted ? "Change the class or prediction filter to see examples." : "Press Next to scan further, or change the filter.";
}

export default { name: "examples", create: (app) => new ExamplesView(app) };
