// The Attribution section: the method, and controls for its parameters generated from its schema.

import { clear, h, put } from "../lib/dom.js";
import { signFor } from "../lib/state.js";
import { field, numberInput, select } from "./fields.js";

/** The section; changing the method or a parameter edits `app.state` and marks the form dirty. */
export function methodSection(app) {
  const s = app.state;
  const panel = h("div", { class: "ia-method-params" });
  const help = h("div", { class: "ia-help" });
  const options = app.config.methods.map((m) => [m.name, m.label]);
  const methodSelect = select("method", options, s.method, (v) => {
    const previous = app.methods.get(s.method);
    s.method = v;
    // Signed methods show their sign, unsigned ones their magnitude (unless the user picked a sign).
    const sign = signFor(app.config, app.methods.get(v), s.vis, previous);
    if (sign !== s.vis.sign) {
      s.vis.sign = sign;
      if (app.controls.showSign) app.controls.showSign(sign);
    }
    render();
    app.markDirty();
  });

  function render() {
    const spec = app.methods.get(s.method);
    const values = s.args[s.method];
    methodSelect.value = s.method;
    help.textContent = spec.help || "";
    clear(panel);
    const params = [...spec.params].sort((a, b) => (a.name === "baseline" ? -1 : b.name === "baseline" ? 1 : 0));
    if (!params.length) put(panel, h("div", { class: "ia-help ia-muted" }, "This method has no parameters."));
    for (const p of params) put(panel, paramControl(app, p, values));
    if (params.length) {
      put(panel, h("button", { type: "button", class: "ia-link ia-reset", onclick: () => {
        s.args[s.method] = { ...spec.defaults };
        render();
        app.markDirty();
      } }, "Reset to defaults"));
    }
  }

  render();
  return h("section", { class: "ia-section" },
    h("h2", { class: "ia-section-title" }, "Attribution"),
    field("Method", methodSelect),
    help,
    panel);
}

/** The control of one parameter, by its type (int, float, bool, enum, layer, shape). */
function paramControl(app, p, values) {
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
    control = numberInput(p.name, value, {
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
    control = select(p.name, opts, value, set);
  } else if (p.type === "layer") {
    const layers = new Set();
    for (const m of app.config.models) for (const l of m.conv_layers || []) layers.add(l);
    const opts = [["", "Automatic (last convolution)"], ...[...layers].map((l) => [l, l])];
    if (value && !layers.has(value)) opts.push([value, value]);
    control = select(p.name, opts, value || "", set);
  } else if (p.type === "shape") {
    ({ control, range } = shapeControl(app, p, value, set));
  } else {
    control = h("input", { type: "text", class: "ia-input", name: p.name, value: value ?? "", oninput: (ev) => set(ev.target.value) });
  }
  return field(p.label, control, { help: p.help, field: fieldName, title, range });
}

/** H x W number boxes with an "auto" box for nullable shapes (window, stride). */
function shapeControl(app, p, value, set) {
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
  const image = app.config.image_size || [];
  const maxOf = (i) => (image[i] && p.maximum ? Math.min(image[i], p.maximum) : image[i] || p.maximum || null);
  for (let i = 0; i < len; i++) {
    inputs.push(h("input", { type: "number", class: "ia-input ia-shape-part", min: p.minimum ?? 1, max: maxOf(i), step: 1,
      "aria-label": `${p.label} ${i === 0 ? "height" : i === 1 ? "width" : i + 1}`, value: current && current[i] !== undefined ? String(current[i]) : "",
      placeholder: p.nullable ? "auto" : null, disabled: p.nullable && !current, oninput: update }));
  }
  auto = p.nullable ? h("input", { type: "checkbox", checked: !current, onchange: (ev) => {
    for (const inp of inputs) inp.disabled = ev.target.checked;
    if (!ev.target.checked) {
      const side = Math.max(1, Math.ceil(Math.min(...(app.config.image_size || [8, 8])) / 8));
      for (const inp of inputs) if (!inp.value) inp.value = String(side);
    }
    update();
  } }) : null;
  const control = h("div", { class: "ia-shape" }, inputs.flatMap((inp, i) => (i ? [h("span", { class: "ia-times" }, "×"), inp] : [inp])),
    auto ? h("label", { class: "ia-auto" }, auto, "auto") : null);
  const range = len === 2 && maxOf(0) ? `H × W, up to ${maxOf(0)} × ${maxOf(1)}` : "H × W";
  return { control, range };
}
