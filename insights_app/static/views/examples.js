// The examples view (the default one): a page of cards, the pager, the status line and the legend.
// A page streams in: the ids first (placeholder cards), then each example as it is computed.

import { clear, h, put, spinner } from "../lib/dom.js";
import { isFiltered, sameMaps } from "../lib/state.js";
import { legend } from "./legend.js";
import { showsImages } from "./features/index.js";
import { apiError } from "../lib/transport.js";
import { failCard, fillCard, placeholderCard } from "./cards.js";
import { exportReportControl } from "../controls/export-report.js";
import { TimeLeft } from "../lib/eta.js";

/** A toolbar button that opens a view which declares an entry (views/index.js). */
function viewEntry(app, view) {
  const { label, title, params } = view.entry;
  return h("button", { type: "button", class: `ia-btn ia-btn-small ia-view-btn ia-${view.name}-btn`, title,
    onclick: () => app.openView(view.name, params ? params(app) : {}) }, label);
}

class ExamplesView {
  constructor(app) {
    this.app = app;
    this.generation = 0; // the page on screen; events of older pages are dropped
    this.abort = null;
    this.lastInfo = null;
    this.cards = new Map(); // example id -> the card on screen
    this.cancelled = 0; // the generation the user cancelled
    const cfg = app.config;
    const imagesOnly = cfg.features.filter((f) => f.type === "image").length === cfg.features.length;
    this.status = h("div", { class: "ia-status" }, "");
    // What a screen reader hears: one polite sentence when a page is in (or counted, or cancelled),
    // not every streamed card or the time left.
    this.announcer = h("div", { class: "ia-sr-only", role: "status" });
    this.legend = h("div", { class: "ia-legend-slot" });
    this.prev = h("button", { type: "button", class: "ia-btn", disabled: true, onclick: () => this.go(-1), title: "Previous page" }, "‹ Previous");
    this.next = h("button", { type: "button", class: "ia-btn", disabled: true, onclick: () => this.go(1), title: "Next page" }, "Next ›");
    this.pageLabel = h("span", { class: "ia-page-label" }, "");
    this.grid = h("div", { class: "ia-grid" + (imagesOnly ? "" : " ia-grid-wide"), "aria-label": "Examples", role: "region" });
    this.el = h("div", { class: "ia-page-view" },
      h("div", { class: "ia-toolbar" },
        h("div", { class: "ia-toolbar-left" },
          app.viewModules.filter((view) => view.entry).map((view) => viewEntry(app, view)),
          exportReportControl(app), this.status, this.announcer),
        h("div", { class: "ia-toolbar-right" }, this.legend, h("div", { class: "ia-pager" }, this.prev, this.pageLabel, this.next))),
      this.grid);
    app.controls.sharedScale = () => this.sharedScale();
    this.renderLegend(app.state.vis);
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

  /** Stop the page being computed (the server stops too); what has arrived stays on screen. */
  cancel() {
    if (!this.abort || !this.app.root.classList.contains("ia-busy")) return;
    this.cancelled = this.generation;
    this.abort.abort();
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
    this.grid.setAttribute("aria-busy", "true");
    this.setStatus(null, "Finding examples…");
    this.maxScale = 0;
    this.legendShared = false;
    this.renderLegend(body.visualization);
    let info = null;
    let failed = null;
    let done = false;
    let eta = new TimeLeft(); // when the attributions started (after the previews), and their chunks' times
    eta.start(now());
    let computed = 0;
    const pending = new Map();
    // "about 12 s left" from the chunks finished so far (not the first one's time), counted down each second.
    const leftText = (remaining) => {
      const ms = eta.left(now(), remaining);
      return ms === null ? "" : ms >= 1000 ? ` · about ${duration(ms)} left` : " · finishing";
    };
    let shared = null; // the shared-scale progress (computed, total), when the page draws on one scale
    const progress = () => {
      if (!info) return;
      if (!pending.size) {
        // Every card is in: the page is usable, while a filter may still be counting its matches.
        const counting = !info.exhausted && isFiltered(body.filter);
        app.setBusy(false);
        this.grid.removeAttribute("aria-busy");
        this.setStatus(info, counting && !done ? "Counting the matches…" : null);
        this.announce(info);
        return;
      }
      if (shared) {
        this.setStatus(info, `Computed ${shared.computed} of ${shared.total}; the maps are drawn together on one scale${leftText(shared.total - shared.computed)}…`);
        return;
      }
      this.setStatus(info, `Computing ${computed ? `${pending.size} more` : `${pending.size} example${pending.size === 1 ? "" : "s"}`}${leftText(pending.size)}…`);
    };
    const ticker = setInterval(() => { if (gen === this.generation && pending.size) progress(); }, 1000);
    const onEvent = (ev) => {
      if (gen !== this.generation || !ev) return;
      if (ev.type === "page") {
        info = ev;
        this.lastInfo = ev;
        this.cards.clear();
        clear(this.grid);
        if (!ev.ids.length) this.renderEmpty(ev.message || "No example on this page.", this.emptyHint(body, ev));
        for (const id of ev.ids) {
          const card = placeholderCard(id);
          pending.set(id, card);
          this.cards.set(id, card);
          put(this.grid, card.el);
        }
        eta = new TimeLeft();
        eta.start(now());
        progress();
      } else if (ev.type === "preview") {
        const card = pending.get(ev.example.id);
        if (card) fillCard(app, card, ev.example, body);
        eta = new TimeLeft();
        eta.start(now());
      } else if (ev.type === "example") {
        const card = pending.get(ev.example.id);
        if (!card) return;
        pending.delete(ev.example.id);
        computed += 1;
        if (!shared) eta.done(now(), 1);
        fillCard(app, card, ev.example, body);
        this.noteScales(ev.example, body.visualization);
        progress();
      } else if (ev.type === "progress") {
        // A shared scale: the maps are computed first and drawn together at the end.
        computed = ev.computed;
        if (ev.computed) eta.done(now(), 0, ev.computed);
        shared = ev.computed < ev.total ? { computed: ev.computed, total: ev.total } : null;
        for (const card of pending.values()) card.el.dataset.progress = `${ev.computed}/${ev.total}`;
        if (info) progress();
      } else if (ev.type === "count") {
        info = { ...ev, type: "page" };
        this.lastInfo = info;
        this.setStatus(info, null);
        this.announce(info);
      } else if (ev.type === "error") {
        failed = ev.error || "the page failed";
      } else if (ev.type === "done") {
        done = true;
      }
    };
    let cancelled = false;
    try {
      const answer = await app.transport.request("examples", body, { onEvent, signal: ctrl ? ctrl.signal : undefined });
      if (answer && answer.page) asEvents(answer, onEvent); // the page as one document (it did not stream)
    } catch (exc) {
      clearInterval(ticker);
      if (gen !== this.generation) return;
      if (exc && exc.name === "AbortError") {
        if (this.cancelled !== gen) return;
        cancelled = true;
      } else failed = exc;
    }
    clearInterval(ticker);
    if (gen !== this.generation) return;
    app.setBusy(false);
    this.grid.removeAttribute("aria-busy");
    if (failed) {
      const message = typeof failed === "string" ? failed : failed.message || String(failed);
      app.showError(message, typeof failed === "string" ? apiError(message).field : failed.field);
    }
    for (const card of pending.values()) {
      if (cancelled) failCard(card, "Cancelled before its attribution was computed: press Fetch to compute it.", { quiet: true });
      else failCard(card, failed ? "Not computed: the request failed (see the message above)."
        : done ? "The server sent no result for this example." : "The connection closed before this example was computed.");
    }
    if (info) {
      const note = cancelled ? `Cancelled: ${computed} of ${info.ids.length} computed` : null;
      this.setStatus(info, null, note);
      this.announce(info, note || (failed ? "The page failed." : null));
      return;
    }
    // Refused (or cancelled) before any page arrived: the previous page stays on screen, and so do its URL and pager.
    app.committed = previous.committed;
    this.lastInfo = previous.info;
    if (previous.committed) app.state.page = previous.committed.page;
    app.writeUrl();
    app.markDirty();
    this.setStatus(previous.info || null, null);
    if (!this.grid.querySelector(".ia-card")) this.renderEmpty(failed ? "Nothing to show: fix the settings and press Fetch." : cancelled ? "Cancelled." : "No page was returned.");
  }

  /** Mark the cards drawn with other settings than the form's (`formBody`, null when the form is invalid). */
  markStale(formBody) {
    for (const card of this.cards.values()) {
      if (!card.body) continue;
      card.el.classList.toggle("ia-stale", !sameMaps(card.body, formBody));
    }
  }

  /** The toolbar's legend for `vis`: with numbers when the page's maps share a scale, else a note. */
  renderLegend(vis, shared = null) {
    if (!showsImages(this.app.config)) return; // the cards' bars and tokens carry their own numbers
    const fixed = typeof vis.scale === "number" ? scaleRange(vis.sign, vis.scale) : null;
    const scale = fixed || shared;
    const note = scale ? (vis.scale === "page" ? "shared by the page" : fixed ? "fixed" : "") : "per map";
    put(clear(this.legend), legend(this.app.config, vis, scale, { note }));
  }

  /** The largest magnitude drawn at full colour on the page (a start for a fixed scale). */
  sharedScale() {
    return this.maxScale || null;
  }

  /** Remember an arrived example's map scales (for the legend of a shared scale, and sharedScale()). */
  noteScales(ex, vis) {
    for (const m of ex.models) {
      for (const a of m.attributions || []) {
        if (a.type !== "image" || !a.scale) continue;
        const magnitude = Math.max(Math.abs(a.scale.low), Math.abs(a.scale.high));
        this.maxScale = Math.max(this.maxScale || 0, magnitude);
        if (vis.scale === "page" && !this.legendShared) {
          this.legendShared = true;
          this.renderLegend(vis, a.scale);
        }
      }
    }
  }

  /** Tell assistive technology what the page now shows (only when that changed). */
  announce(info, note = null) {
    const filtered = isFiltered(this.app.committed ? this.app.committed.filter : null);
    const page = `Page ${info.page + 1}${info.last_page !== null && info.last_page !== undefined ? ` of ${info.last_page + 1}` : ""}`;
    const text = [`${page}: ${statusText(info, filtered)}.`, note].filter(Boolean).join(" ");
    if (this.announcer.textContent !== text) this.announcer.textContent = text;
  }

  renderEmpty(message, detail) {
    clear(this.grid);
    if (!message) return;
    put(this.grid, h("div", { class: "ia-empty" },
      h("div", { class: "ia-empty-title" }, message),
      detail ? h("div", { class: "ia-help" }, detail) : null));
  }

  setStatus(info, loading, note = null) {
    if (!info) {
      this.status.textContent = "";
      if (loading) put(this.status, spinner(loading));
      return;
    }
    const filtered = isFiltered(this.app.committed ? this.app.committed.filter : null);
    put(clear(this.status), h("span", { class: "ia-status-text" }, statusText(info, filtered)));
    if (note) put(this.status, h("span", { class: "ia-status-note" }, note));
    if (loading) put(this.status, spinner(loading));
    this.pageLabel.textContent = `Page ${info.page + 1}${info.last_page !== null && info.last_page !== undefined ? ` of ${info.last_page + 1}` : ""}`;
    this.prev.disabled = !info.has_prev;
    this.next.disabled = !info.has_next;
  }

  /** What to do about an empty page: a button to the last page when there is one, else a hint. */
  emptyHint(body, info) {
    if (info.last_page !== null && info.last_page !== undefined && info.page > info.last_page) {
      return h("button", { type: "button", class: "ia-btn ia-goto-last", onclick: () => this.run({ ...body, page: info.last_page }) },
        `Go to the last page (${info.last_page + 1})`);
    }
    const f = body.filter;
    if (!f.classes.length && f.prediction === "all") return info.page > 0 ? "Press Previous to go back." : null;
    return info.exhausted ? "Change the class or prediction filter to see examples." : "Press Next to scan further, or change the filter.";
  }
}

/** The status line: which examples are shown, out of how many, and how much of the dataset a filter has scanned. */
function statusText(info, filtered) {
  const n = info.ids.length;
  const size = info.dataset_size ?? info.total;
  if (!filtered) {
    const range = n ? `#${info.ids[0]}${n > 1 ? `–#${info.ids[n - 1]}` : ""}` : "";
    return [n ? `Examples ${range}` : "", size !== null && size !== undefined ? `${size} in the dataset` : ""].filter(Boolean).join(" · ");
  }
  const matched = info.matched ?? n;
  const of = info.exhausted ? `${matched}` : `at least ${matched}`;
  const first = (info.first ?? 0) + 1;
  const parts = [n ? `Match${n === 1 ? "" : "es"} ${first}${n > 1 ? `–${first + n - 1}` : ""} of ${of}`
    : `${of} match${matched === 1 ? "" : "es"}`];
  parts.push(info.exhausted ? `whole dataset scanned (${info.scanned})`
    : `${info.scanned}${size !== null && size !== undefined ? ` of ${size}` : ""} scanned so far`);
  return parts.join(" · ");
}

/** The values at the ends of a colour bar for a sign and magnitude (the server's scale_range). */
export function scaleRange(sign, scale) {
  return { low: sign === "all" || sign === "negative" ? -scale : 0, high: sign === "negative" ? 0 : scale };
}

function now() {
  return typeof performance !== "undefined" ? performance.now() : Date.now();
}

/** A time left in words ("4 s", "2 min"). */
function duration(ms) {
  const s = Math.max(1, Math.round(ms / 1000));
  return s < 90 ? `${s} s` : `${Math.round(s / 60)} min`;
}

/** A page answered as one document, handed on as the events a stream would have sent. */
function asEvents(doc, onEvent) {
  onEvent({ type: "page", ...doc.page });
  for (const example of doc.examples || []) onEvent({ type: "example", example });
  onEvent({ type: "done", elapsed_ms: doc.elapsed_ms });
}

export default { name: "examples", create: (app) => new ExamplesView(app) };
