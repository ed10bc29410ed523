// The Dataset view's "Method report": every chosen method's quality metrics over a sample of the
// dataset (mean ± std per model), and the sanity check on a few of its examples, from the server's
// method_report view. It can take minutes: the request streams (progress events, then the report), so
// a <progress> bar shows the share done and "about N s left" (the server's estimate from the steps
// finished so far, counted down between events); Cancel aborts the request, which stops the server's
// work (the transports turn an aborted request into the engine's Cancel). A polite live region says
// what is happening; the tables mark each column's best value (bold, and "best" for screen readers).

import { clear, fmt, h, put, spinner } from "../lib/dom.js";
import { numberInput, uid } from "../controls/fields.js";
import { metricSets } from "../lib/state.js";
import { metricTexts } from "../controls/metrics.js";
import { betterText, metricSpecs } from "./metrics.js";

// The methods the report judges unless the user picks others (the server's own default list).
const REPORT_DEFAULTS = ["IntegratedGradients", "Saliency", "InputXGradient", "GuidedBackprop", "DeepLift", "Occlusion"];
const SAMPLE_MAX = 1024;
const SANITY_MAX = 64;

function two(v) {
  return typeof v === "number" && Number.isFinite(v) ? v.toFixed(2) : "n/a";
}

function duration(ms) {
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return s < 90 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

/** The section: {el, stop()} (stop aborts a running report, e.g. when the Dataset view closes). */
export function methodReport(app) {
  const cfg = app.config;
  const chosen = new Set(REPORT_DEFAULTS.filter((m) => app.methods.has(m)));
  if (!chosen.size) chosen.add(cfg.methods[0].name);
  let sample = 64;
  let sanity = 8;
  let slow = false;
  let abort = null;
  let timer = null;
  const status = h("div", { class: "ia-report-status", role: "status", "aria-live": "polite" });
  const elapsed = h("span", { class: "ia-muted ia-report-elapsed" }); // not live: it ticks every second
  const bar = h("progress", { class: "ia-report-progress", max: "1", value: "0", "aria-label": "Method report progress", hidden: true });
  let last = null; // the latest progress event and when it came
  const results = h("div", { class: "ia-report-results" });
  const picker = h("div", { class: "ia-method-picker", role: "group", "aria-label": "Methods in the report" },
    cfg.methods.map((m) => h("label", { class: "ia-check-chip" + (chosen.has(m.name) ? " ia-on" : ""), title: m.help },
      h("input", { type: "checkbox", value: m.name, name: "report_method", checked: chosen.has(m.name), onchange: (ev) => {
        if (ev.target.checked) chosen.add(m.name);
        else chosen.delete(m.name);
        ev.target.parentElement.classList.toggle("ia-on", ev.target.checked);
      } }), m.label)));
  const sampleInput = numberInput("report_sample", sample, { min: 1, max: SAMPLE_MAX, step: 1, onInput: (v) => { sample = Number(v); } });
  const sanityInput = numberInput("report_sanity", sanity, { min: 0, max: SANITY_MAX, step: 1, onInput: (v) => { sanity = Number(v); } });
  const slowBox = h("input", { type: "checkbox", name: "report_slow", onchange: (ev) => { slow = ev.target.checked; } });
  const runBtn = h("button", { type: "button", class: "ia-btn ia-btn-primary ia-report-run", onclick: () => run() }, "Run method report");
  const cancelBtn = h("button", { type: "button", class: "ia-btn ia-report-cancel", hidden: true, onclick: () => { if (abort) abort.abort(); } }, "Cancel");
  const label = (text, control) => h("label", { class: "ia-inline-field", for: control.id }, text, control);

  const setBusy = (busy) => {
    cancelBtn.hidden = !busy;
    runBtn.disabled = busy;
    if (timer) clearInterval(timer);
    timer = null;
    bar.hidden = !busy;
    if (!busy) {
      elapsed.textContent = "";
      bar.value = 0;
      last = null;
    }
  };

  // "12 s so far · about 8 s left": the server's estimate (from the finished steps' measured time),
  // counted down since its event; past it, "finishing" rather than a wrong number.
  const tick = (started) => {
    const parts = [`${duration(Date.now() - started)} so far`];
    if (last && typeof last.ev.left_ms === "number") {
      const left = last.ev.left_ms - (Date.now() - last.at);
      parts.push(left >= 1000 ? `about ${duration(left)} left` : "finishing");
    }
    if (last && last.ev.step) parts.push(last.ev.step);
    elapsed.textContent = parts.join(" · ");
  };

  async function run() {
    if (abort) return;
    const methods = cfg.methods.map((m) => m.name).filter((m) => chosen.has(m));
    if (!methods.length) { status.textContent = "Pick at least one method."; return; }
    if (!Number.isInteger(sample) || sample < 1 || sample > SAMPLE_MAX) { status.textContent = `The sample is 1 to ${SAMPLE_MAX} examples.`; return; }
    if (!Number.isInteger(sanity) || sanity < 0 || sanity > Math.min(sample, SANITY_MAX)) {
      status.textContent = `The sanity check runs on 0 to ${Math.min(sample, SANITY_MAX)} examples (at most the sample).`;
      return;
    }
    const sets = metricSets(cfg);
    const body = { methods, sample, sanity, metrics: slow ? sets.all : sets.fast };
    const ctrl = typeof AbortController !== "undefined" ? new AbortController() : { signal: undefined, abort() {} };
    abort = ctrl;
    setBusy(true);
    const started = Date.now();
    status.textContent = `Running the method report: ${methods.length} method${methods.length === 1 ? "" : "s"} on ${sample} example${sample === 1 ? "" : "s"}…`;
    put(clear(results), spinner("Computing the metrics…"));
    timer = setInterval(() => tick(started), 1000);
    let report = null;
    let failed = null;
    const onEvent = (ev) => {
      if (app.destroyed || abort !== ctrl || !ev) return;
      if (ev.type === "progress") {
        last = { ev, at: Date.now() };
        bar.value = Math.min(1, Math.max(0, Number(ev.done) || 0));
        bar.setAttribute("aria-valuetext", `${Math.round(bar.value * 100)}%${typeof ev.left_ms === "number" ? `, about ${duration(ev.left_ms)} left` : ""}`);
        tick(started);
      } else if (ev.type === "report") report = ev.report;
      else if (ev.type === "error") failed = ev.error || "the method report failed";
    };
    try {
      const answer = await app.transport.request("method_report", body, { signal: ctrl.signal, onEvent });
      if (app.destroyed || abort !== ctrl) return;
      if (answer && answer.models) report = answer; // answered as one document (it did not stream)
      if (failed || !report) throw new Error(failed || "the method report ended without its results");
      put(clear(results), report.models.map((model) => modelTable(report, model, metricSpecs(cfg))));
      const flagged = report.models.flatMap((m) => m.methods.filter((r) => r.sanity && r.sanity.flag).map((r) => r.label));
      status.textContent = `Method report ready: ${report.examples} examples in ${duration(report.elapsed_ms)}.${flagged.length ? ` Insensitive to the model: ${[...new Set(flagged)].join(", ")}.` : ""}`;
    } catch (exc) {
      if (app.destroyed || abort !== ctrl) return;
      clear(results);
      if (exc && exc.name === "AbortError") status.textContent = "Method report cancelled.";
      else put(results, h("div", { class: "ia-alert ia-alert-error", role: "alert" }, exc.message || String(exc)));
      if (!(exc && exc.name === "AbortError")) status.textContent = "The method report failed.";
    } finally {
      if (abort === ctrl) {
        abort = null;
        setBusy(false);
      }
    }
  }

  const texts = metricTexts(cfg);
  const titleId = uid("report-title");
  const el = h("section", { class: "ia-dcard ia-report", "aria-labelledby": titleId },
    h("div", { class: "ia-dcard-head" }, h("h3", { id: titleId }, "Method report")),
    h("p", { class: "ia-help" }, "Which method to trust for this model: each method's quality metrics over a sample spread over the dataset, and the sanity check on a few of its examples. ",
      h("strong", null, "It can take minutes"), ` (each example costs each method's own passes, plus ${texts.fastPasses} for ${texts.fastNames}); a second run reads what is stored.`),
    picker,
    h("div", { class: "ia-report-form" },
      label("Sample", sampleInput),
      label("Sanity check on", sanityInput),
      h("label", { class: "ia-switch" }, slowBox, texts.slowLabel),
      runBtn, cancelBtn, bar, elapsed),
    status, results);
  return {
    el,
    stop() {
      if (abort) abort.abort();
    },
  };
}

/** One model's table: a row per method, each metric's mean ± std, the best per column marked, the sanity verdict. */
function modelTable(report, model, specs) {
  const metrics = report.metrics.filter((k) => specs.has(k));
  const lower = (k) => (report.lower_is_better && k in report.lower_is_better ? report.lower_is_better[k] : specs.get(k).lower);
  const best = {};
  for (const k of metrics) {
    const values = model.methods.map((r) => r.metrics[k] && r.metrics[k].mean).filter((v) => typeof v === "number");
    if (values.length > 1) best[k] = lower(k) ? Math.min(...values) : Math.max(...values);
  }
  const sanityRun = model.methods.some((r) => r.sanity);
  const head = h("tr", null,
    h("th", { scope: "col" }, "Method"),
    metrics.map((k) => h("th", { scope: "col", class: "ia-num", title: `${specs.get(k).label} ${betterText({ lower: lower(k) })}` },
      `${k[0].toUpperCase()}${k.slice(1)} `, h("span", { "aria-hidden": "true" }, lower(k) ? "↓" : "↑"), h("span", { class: "ia-sr-only" }, betterText({ lower: lower(k) })))),
    sanityRun ? h("th", { scope: "col", class: "ia-num", title: "The map on the fully randomized model against the original (mean over the checked examples)" }, "Randomized model: Spearman / SSIM") : null,
    sanityRun ? h("th", { scope: "col" }, "Sanity check") : null);
  const rows = model.methods.map((r) => h("tr", { dataset: { method: r.method } },
    h("th", { scope: "row" }, r.label, r.failed ? h("span", { class: "ia-muted" }, ` (${r.failed} failed)`) : null),
    metrics.map((k) => {
      const s = r.metrics[k];
      if (!s || s.mean === null || s.mean === undefined) return h("td", { class: "ia-num ia-muted" }, "n/a");
      const text = `${fmt(s.mean)} ± ${fmt(s.std)}`;
      const isBest = best[k] !== undefined && s.mean === best[k];
      return h("td", { class: "ia-num" + (isBest ? " ia-best" : ""), title: `mean ± std over ${s.n} examples` },
        isBest ? h("strong", null, text) : text, isBest ? h("span", { class: "ia-sr-only" }, " (best)") : null);
    }),
    sanityRun ? h("td", { class: "ia-num" }, r.sanity && r.sanity.examples ? `${two(r.sanity.spearman)} / ${two(r.sanity.ssim)}` : "—") : null,
    sanityRun ? h("td", { class: "ia-report-verdict" }, !r.sanity || !r.sanity.examples ? h("span", { class: "ia-muted" }, "not run")
      : r.sanity.flag ? h("span", { class: "ia-flag-insensitive" }, h("span", { "aria-hidden": "true" }, "⚠ "), "insensitive to the model",
        h("span", { class: "ia-muted" }, ` (${r.sanity.insensitive} of ${r.sanity.examples})`))
        : h("span", { class: "ia-sanity-pass" }, `depends on the model${r.sanity.insensitive ? ` (${r.sanity.insensitive} of ${r.sanity.examples} flagged)` : ""}`)) : null));
  return h("div", { class: "ia-report-model", dataset: { model: String(model.index) } },
    // A wide table scrolls sideways in a narrow view: the keyboard reaches it too (tabindex, a named region).
    h("div", { class: "ia-table-scroll ia-report-scroll", tabindex: "0", role: "region", "aria-label": `Method report of ${model.name}` }, h("table", { class: "ia-table ia-report-table" },
      h("caption", null, `${model.name}: ${report.examples} examples`),
      h("thead", null, head),
      h("tbody", null, rows))));
}
