// Form fields: a labelled field, radio-button groups, selects and number inputs.

import { h, put } from "../lib/dom.js";

// Element ids must be unique in the document, which may hold several apps (notebook widgets), each
// possibly with its own copy of this module: a random prefix per copy, a counter within it.
const ID_PREFIX = Math.random().toString(36).slice(2, 8);
let idCounter = 0;

/** A fresh element id. */
export function uid(name) {
  idCounter += 1;
  return `ia-${ID_PREFIX}-${name}-${idCounter}`;
}

/** A labelled field; `opts.field` names the request field it edits (an error for it marks it). */
export function field(label, control, opts = {}) {
  return h("div", { class: "ia-field" + (opts.inline ? " ia-field-inline" : ""), dataset: opts.field ? { field: opts.field } : undefined },
    h("label", { class: "ia-label", title: opts.title || null, for: control.id || null }, label,
      opts.range ? h("span", { class: "ia-range" }, opts.range) : null),
    control,
    opts.help ? h("div", { class: "ia-help" }, opts.help) : null);
}

/** A group of radio buttons shown as one segmented control. */
export function segmented(name, options, current, onChange) {
  const group = h("div", { class: "ia-seg", role: "radiogroup", "aria-label": name, dataset: { name } });
  const groupName = uid(name);
  for (const [value, label] of options) {
    const id = uid(`${name}-${value}`);
    put(group,
      h("input", { type: "radio", id, name: groupName, value, checked: value === current,
        onchange: (ev) => ev.target.checked && onChange(value) }),
      h("label", { for: id }, label));
  }
  return group;
}

export function select(name, options, current, onChange, attrs = {}) {
  const el = h("select", { name, id: uid(name), class: "ia-input", onchange: (ev) => onChange(ev.target.value), ...attrs },
    options.map(([value, label]) => h("option", { value, selected: value === current }, label)));
  el.value = current;
  return el;
}

export function numberInput(name, value, { min, max, step, placeholder, onInput }) {
  return h("input", {
    type: "number", name, id: uid(name), class: "ia-input", value: value === null || value === undefined ? "" : String(value),
    min: min ?? null, max: max ?? null, step: step ?? "any", placeholder: placeholder || null, inputmode: "decimal",
    oninput: (ev) => onInput(ev.target.value),
  });
}
