// The sanity check of one example's map (the model-randomization test): the map drawn on the model as
// it is, then on copies with more and more of its layers re-initialized, last layer first, each with
// its Spearman rank correlation and SSIM against the original, and the verdict: a map that barely
// changes on a random model shows the input, not what the model learned. Opened from a card
// ("Sanity check"); its state is in the URL (?sanity=id). Escape or "Back" closes it.

import { clear, h, put, spinner } from "../lib/dom.js";
import { attributionView } from "./features/index.js";
import { image } from "./features/image.js";

/** Two decimals, or "n/a". */
function two(v) {
  return typeof v === "number" && Number.isFinite(v) ? v.toFixed(2) : "n/a";
}

class SanityView {
  constructor(app) {
    this.app = app;
    this.el = h("section", { class: "ia-sanity", hidden: true, "aria-label": "Sanity check" });
    this.el.addEventListener("keydown", (ev) => {
      if (ev.key !== "Escape" || !this.current || ev.defaultPrevented) return;
      ev.preventDefault();
      this.app.closeView();
    });
    this.current = null; // {id, targets, base} while open
    this.abort = null;
  }

  get isOpen() {
    return this.current !== null;
  }

  writeUrl(q) {
    if (this.current) q.set("sanity", this.current.id);
  }

  open({ id, targets }) {
    const app = this.app;
    this.current = { id: Number(id), targets: targets || [], base: app.committed || app.bodyFromState(false) };
    this.render();
  }

  /** Close; the answer is what gets the focus back: the card's Sanity check button, when it is on screen. */
  close() {
    const id = this.current ? this.current.id : null;
    this.current = null;
    if (this.abort) this.abort.abort();
    this.abort = null;
    clear(this.el);
    const card = id === null ? null : this.app.root.querySelector(`.ia-card[data-example-id="${id}"]`);
    return card ? card.querySelector(".ia-sanity-btn") : null;
  }

  destroy() {
    if (this.abort) this.abort.abort();
  }

  async render() {
    const app = this.app;
    const c = this.current;
    const cfg = app.config;
    if (this.abort) this.abort.abort();
    const ctrl = typeof AbortController !== "undefined" ? new AbortController() : null;
    this.abort = ctrl;
    const spec = app.methods.get(c.base.method);
    const label = spec ? spec.label : c.base.method;
    const announcer = h("div", { class: "ia-sr-only", role: "status" });
    const sections = cfg.models.map((model) => h("section", { class: "ia-sanity-model", dataset: { model: String(model.index) } },
      cfg.models.length > 1 ? h("h3", { class: "ia-sanity-model-name" }, model.name) : null,
      spinner("Randomizing the model's layers and drawing the map again…")));
    put(clear(this.el),
      h("div", { class: "ia-compare-head" },
        h("button", { type: "button", class: "ia-btn", onclick: () => app.closeView() }, "‹ Back to examples"),
        h("h2", { class: "ia-compare-title ia-sanity-title", tabindex: "-1" }, `Example #${c.id}: sanity check of ${label}`)),
      h("p", { class: "ia-help ia-sanity-intro" },
        "The map is drawn again (as a heat map) on copies of the model whose layers are re-initialized, from the last one down (your model is not touched). ",
        "A map that depends on what the model learned changes; one that stays nearly the same (Spearman and SSIM both at least 0.8 with every layer randomized) is flagged insensitive to the model."),
      announcer, sections);
    this.el.querySelector(".ia-sanity-title").focus();
    const verdicts = [];
    for (const model of cfg.models) {
      const box = sections[model.index];
      const body = app.attributeBody(c.base, c.id, model.index, c.targets[model.index] ?? null, c.base.method);
      delete body.metrics; // the check is about the maps, not their scores
      // Heat maps alone: drawn over the input (or masking it), every map would look like the input.
      body.visualization = { ...body.visualization, method: "heat_map" };
      try {
        const answer = await app.transport.request("sanity", body, { signal: ctrl ? ctrl.signal : undefined });
        if (this.current !== c) return;
        verdicts.push(this.drawModel(box, model, answer, body));
      } catch (exc) {
        if (this.current !== c || (exc && exc.name === "AbortError")) return;
        put(clear(box), cfg.models.length > 1 ? h("h3", { class: "ia-sanity-model-name" }, model.name) : null,
          h("div", { class: "ia-inline-error", role: "alert" }, exc.message || String(exc)));
        verdicts.push(null);
      }
    }
    const said = verdicts.filter(Boolean);
    announcer.textContent = `Sanity check done: ${said.length ? said.join("; ") : "it could not run"}.`;
  }

  /** One model's row: the verdict, the original map and each randomized step's. Returns the verdict in words. */
  drawModel(box, model, answer, body) {
    const cfg = this.app.config;
    const ex = answer.example;
    const m = ex.models[0];
    const s = answer.sanity;
    const head = cfg.models.length > 1 ? h("h3", { class: "ia-sanity-model-name" }, model.name) : null;
    if (!s || s.error || !Array.isArray(s.steps)) {
      put(clear(box), head, h("div", { class: "ia-inline-error", role: "alert" }, (s && s.error) || m.error || "The check could not run."));
      return `${model.name}: not run`;
    }
    const targetName = m.target ? m.target.name : "output";
    const last = s.steps.length ? s.steps[s.steps.length - 1] : null;
    const threshold = typeof s.threshold === "number" ? s.threshold : 0.8;
    const figures = last ? `with every layer randomized, Spearman ${two(last.spearman)} · SSIM ${two(last.ssim)} (flagged at ${threshold} and above)` : "";
    const verdict = s.insensitive
      ? h("div", { class: "ia-alert ia-alert-warning ia-sanity-verdict ia-sanity-insensitive" },
        h("span", { class: "ia-sanity-icon", "aria-hidden": "true" }, "⚠"),
        h("span", null, h("strong", null, "Insensitive to the model: "), `the map barely changes when the model is randomized (${figures}). It shows the input more than what the model learned.`))
      : h("div", { class: "ia-alert ia-alert-ok ia-sanity-verdict ia-sanity-depends" },
        h("span", { class: "ia-sanity-icon", "aria-hidden": "true" }, "✓"),
        h("span", null, h("strong", null, "The map depends on the model: "), `it changes when the model's layers are randomized (${figures}).`));
    const row = h("div", { class: "ia-sanity-row" },
      this.figure(m.attributions, "Original model", null, { ex, m, body }),
      s.steps.map((step, i) => this.figure(step.attributions,
        // Each step is named by the model's layers ("fc (Linear)", "Linear (layer 13)"), cumulative from the last one.
        `${i === 0 ? step.randomized : `${s.steps[0].randomized} down to ${step.randomized}`} randomized`,
        `Spearman ${two(step.spearman)} · SSIM ${two(step.ssim)}`, { ex, m, body })));
    put(clear(box), head,
      h("div", { class: "ia-help" }, `${model.name} → ${targetName}`),
      verdict, row);
    return `${model.name}: ${s.insensitive ? "insensitive to the model" : "the map depends on the model"}`;
  }

  /** One map of the row with its caption (what is randomized; how close it is to the original). */
  figure(attributions, title, numbers, { ex, m, body }) {
    const spec = this.app.methods.get(body.method);
    const maps = (attributions || []).map((a) => (a.image
      ? image(a.image, `${spec ? spec.label : body.method} map of ${a.name}, ${title.toLowerCase()}`)
      : attributionView(a, { ex, model: m, method: body.method, methodLabel: spec ? spec.label : body.method, target: m.target, vis: body.visualization, config: this.app.config })));
    return h("figure", { class: "ia-figure ia-sanity-step" }, maps,
      h("figcaption", { class: "ia-sanity-caption" }, h("span", { class: "ia-sanity-what" }, numbers ? `${title}:` : title), numbers ? h("span", { class: "ia-sanity-numbers" }, numbers) : null));
  }
}

export default {
  name: "sanity",
  create: (app) => new SanityView(app),
  /** What a link asks the sanity check to open (?sanity=id), or null. */
  readUrl(q, num) {
    return num("sanity") === null ? null : { id: num("sanity") };
  },
};
