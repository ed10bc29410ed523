// One example's card: the input, the true label, and per model its top predictions and attribution.
// Clicking a predicted class (or the true label) attributes the example to that class.

import { clear, fmt, h, pct, put, spinner } from "../lib/dom.js";
import { argumentSummary } from "../lib/state.js";
import { openLarge } from "./enlarge.js";
import { attributionView, inputView } from "./features/index.js";
import { metricsView } from "./metrics.js";

/** A card waiting for its example (skeleton lines and a spinner). */
export function placeholderCard(id) {
  const el = h("article", { class: "ia-card ia-card-loading", dataset: { exampleId: String(id) }, "aria-busy": "true" },
    h("header", { class: "ia-card-head" }, h("span", { class: "ia-card-id" }, `#${id}`)),
    h("div", { class: "ia-card-body" },
      h("div", { class: "ia-skeleton ia-skeleton-img" }),
      h("div", { class: "ia-skeleton-lines" }, h("div", { class: "ia-skeleton" }), h("div", { class: "ia-skeleton" }), h("div", { class: "ia-skeleton ia-short" })),
      h("div", { class: "ia-skeleton ia-skeleton-img" })),
    h("div", { class: "ia-card-foot" }, spinner("Computing attributions…")));
  return { id, el, example: null, rows: new Map() };
}

/** A card whose attribution will not come (its input and predictions stay when they arrived). */
export function failCard(card, message, { quiet = false } = {}) {
  const el = card.el;
  el.classList.remove("ia-card-loading", "ia-card-pending");
  el.removeAttribute("aria-busy");
  el.classList.add(quiet ? "ia-card-cancelled" : "ia-card-failed");
  for (const spot of el.querySelectorAll(".ia-attr-pending")) put(clear(spot), h("span", { class: "ia-muted" }, "Not computed"));
  let foot = el.querySelector(".ia-card-foot");
  if (!foot) el.append((foot = h("div", { class: "ia-card-foot" })));
  put(clear(foot), h("div", { class: quiet ? "ia-inline-note" : "ia-inline-error", role: quiet ? null : "alert" }, message));
}

/** Show an example in its card; `body` is the page query it came from. */
export function fillCard(app, card, ex, body) {
  card.example = ex;
  card.body = body;
  const el = card.el;
  const pending = ex.models.some((m) => m.pending);
  el.classList.remove("ia-card-loading");
  el.classList.toggle("ia-card-pending", pending);
  if (pending) el.setAttribute("aria-busy", "true");
  else el.removeAttribute("aria-busy");
  const label = ex.label;
  const wrongModels = label ? ex.models.filter((m) => m.predictions.length && m.predictions[0].index !== label.index) : [];
  const verdict = !label ? null : wrongModels.length
    ? h("span", { class: "ia-badge ia-badge-bad", title: "Top prediction differs from the true label" }, ex.models.length > 1 ? `${wrongModels.length}/${ex.models.length} wrong` : "Misclassified")
    : h("span", { class: "ia-badge ia-badge-good" }, "Correct");
  const truth = label
    ? h("button", { type: "button", class: "ia-chip ia-chip-truth", title: "Attribute every model to the true label", onclick: () => retargetAll(app, card, label.index) }, label.name)
    : h("span", { class: "ia-muted" }, "no label");
  // Each model's loss, once the dataset pass has it (the cards ordered by loss show why they come first).
  const withLoss = ex.models.filter((m) => typeof m.loss === "number");
  const loss = withLoss.length ? h("span", { class: "ia-loss", title: withLoss.map((m) => `${m.name}: loss ${m.loss}`).join("\n") },
    `Loss ${withLoss.map((m) => fmt(m.loss)).join(" / ")}`) : null;
  const rows = h("div", { class: "ia-model-rows" });
  card.rows.clear();
  for (const m of ex.models) {
    const row = { model: m, el: h("section", { class: "ia-model", dataset: { model: String(m.index) } }) };
    card.rows.set(m.index, row);
    renderModelRow(app, card, row, m);
    put(rows, row.el);
  }
  put(clear(el),
    h("header", { class: "ia-card-head" },
      h("span", { class: "ia-card-id", title: "Example id (position in the dataset)" }, `#${ex.id}`),
      h("span", { class: "ia-truth" }, h("span", { class: "ia-muted" }, "True label"), truth),
      verdict,
      loss,
      h("span", { class: "ia-spacer" }),
      h("div", { class: "ia-card-actions" },
        h("button", { type: "button", class: "ia-btn ia-btn-small ia-compare-btn", title: "Show several methods side by side for this example", onclick: () => app.openView("compare", { id: ex.id }) }, "Compare methods"),
        h("button", { type: "button", class: "ia-btn ia-btn-small ia-sanity-btn", title: "Draw this map again on the model with its layers randomized: does the map depend on the model?",
          onclick: () => app.openView("sanity", { id: ex.id, targets: [...card.rows.values()].map((r) => (r.model.target ? r.model.target.index : null)) }) }, "Sanity check"))),
    h("div", { class: "ia-card-body" },
      h("div", { class: "ia-inputs" }, ex.features.map((f) => inputView(f))),
      rows),
    madeWith(app, body));
}

/** The line that says which method and arguments drew the card's maps (and, once the form changed, that it is stale). */
export function madeWith(app, body) {
  const spec = app.methods.get(body.method);
  const args = argumentSummary(body.arguments);
  const label = spec ? spec.label : body.method;
  return h("div", { class: "ia-card-made", title: `${label}${args ? `: ${args}` : " (no arguments)"}` },
    h("span", { class: "ia-muted" }, "Maps: "),
    h("span", { class: "ia-card-method" }, label),
    args ? h("span", { class: "ia-card-args" }, ` · ${args}`) : null,
    h("span", { class: "ia-stale-note" }, " · made with other settings: press Fetch to update"));
}

function renderModelRow(app, card, row, m) {
  // A re-target redraws the row under the pressed button: the focus goes back to the same class.
  const active = row.el.getRootNode().activeElement;
  const focusedClass = active && row.el.contains(active) ? active.dataset.classIndex ?? "" : null;
  const ex = card.example;
  const label = ex.label;
  row.model = m;
  const target = m.target ? m.target.index : null;
  const preds = h("ol", { class: "ia-preds", "aria-label": `Top predictions of ${m.name}` },
    m.predictions.map((p) => h("li", null,
      h("button", {
        type: "button", class: "ia-pred" + (p.index === target ? " ia-pred-target" : "") + (label && p.index === label.index ? " ia-pred-true" : ""),
        "aria-pressed": p.index === target ? "true" : "false", dataset: { classIndex: String(p.index) },
        title: `Attribute to ${p.label} (${(p.score * 100).toFixed(2)}%)`, onclick: () => retarget(app, card, row, p.index),
      },
      h("span", { class: "ia-pred-top" }, h("span", { class: "ia-pred-label" }, p.label), h("span", { class: "ia-pred-score" }, pct(p.score))),
      h("span", { class: "ia-bar" }, h("span", { class: "ia-bar-fill", style: { width: `${Math.max(0, Math.min(1, p.score)) * 100}%` } }))))));
  const attrs = h("div", { class: "ia-attrs" });
  if (m.error) put(attrs, h("div", { class: "ia-inline-error", role: "alert" }, m.error));
  else if (m.pending) put(attrs, h("div", { class: "ia-attr-pending" }, spinner("Computing the attribution…")));
  const side = h("div", { class: "ia-attr-side" });
  const barScale = sharedBarScale(m.attributions);
  for (const a of m.attributions) {
    const spec = app.methods.get(card.body.method);
    const view = attributionView(a, { ex, model: m, method: card.body.method, methodLabel: spec ? spec.label : card.body.method,
      target: m.target, vis: card.body.visualization, config: app.config, barScale,
      onEnlarge: (attr, opener) => openLarge(app, { ex, model: m, body: card.body, feature: attr.name, opener }) });
    put(a.type === "image" ? attrs : side, view);
  }
  if (m.attributions.length > 1) put(side, contributionBars(m.attributions));
  if (side.childNodes.length) put(attrs, side);
  put(attrs, metricsView(app.config, m));
  const showName = app.config.models.length > 1;
  put(clear(row.el),
    showName || m.error ? h("div", { class: "ia-model-head" }, h("span", { class: "ia-model-name" }, m.name)) : null,
    h("div", { class: "ia-model-main" }, preds, attrs),
    h("div", { class: "ia-row-overlay", hidden: true }, spinner("Attributing…")));
  if (focusedClass !== null) {
    const again = focusedClass !== "" ? row.el.querySelector(`.ia-pred[data-class-index="${focusedClass}"]`) : null;
    const fallback = again || row.el.querySelector(".ia-pred");
    if (fallback) fallback.focus();
  }
}

/** One bar length for all of a card's tabular features: a model's columns come in groups (categorical,
 * continuous), each with its own scale from the server; bars drawn each to its own would make -0.2 look
 * as large as 2.7. The largest of the groups' scales (or of their values) is the card's full bar. */
function sharedBarScale(attributions) {
  let peak = 0;
  for (const a of attributions) {
    if (a.type !== "general") continue;
    const own = a.scale && a.scale.high > 0 ? a.scale.high : 0;
    peak = Math.max(peak, own, ...(a.scores || []).map((s) => Math.abs(Number(s)) || 0));
  }
  return peak > 0 ? peak : null;
}

/** Each feature's share of the total absolute attribution (several features only). */
function contributionBars(attributions) {
  return h("div", { class: "ia-contrib ia-wide" },
    h("div", { class: "ia-mini-title" }, "Contribution per feature"),
    attributions.map((a) => h("div", { class: "ia-contrib-row", title: `${a.name}: ${(a.contribution * 100).toFixed(1)}% of the total absolute attribution` },
      h("span", { class: "ia-contrib-label" }, a.name),
      h("span", { class: "ia-bar" }, h("span", { class: "ia-bar-fill", style: { width: `${Math.max(0, Math.min(1, a.contribution)) * 100}%` } })),
      h("span", { class: "ia-contrib-value" }, pct(a.contribution)))));
}

function retargetAll(app, card, target) {
  for (const row of card.rows.values()) retarget(app, card, row, target);
}

async function retarget(app, card, row, target) {
  const overlay = row.el.querySelector(".ia-row-overlay");
  if (overlay) overlay.hidden = false;
  row.el.classList.add("ia-model-busy");
  const token = (row.token = (row.token || 0) + 1);
  const body = app.attributeBody(card.body, card.example.id, row.model.index, target);
  try {
    const result = await app.transport.request("attribute", body);
    if (token !== row.token || !card.el.isConnected) return;
    const m = result.example.models.find((x) => x.index === row.model.index) || result.example.models[0];
    renderModelRow(app, card, row, m);
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
