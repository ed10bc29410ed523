// The class multi-select of the Examples section: chips for the chosen classes, a searchable list.

import { clear, h, put } from "../lib/dom.js";

const MAX_CLASS_OPTIONS = 300;

/** The picker over `app.state.filter.classes` (its element). */
export function classPicker(app) {
  const s = app.state;
  const classes = app.config.classes;
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
    app.markDirty();
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
        onclick: () => { for (const i of found.slice(0, MAX_CLASS_OPTIONS)) selected.add(i); s.filter.classes = [...selected].sort((a, b) => a - b); renderChips(); renderList(); app.markDirty(); } }, "Select shown"),
      h("button", { type: "button", class: "ia-link", onmousedown: (ev) => ev.preventDefault(),
        onclick: () => { s.filter.classes = []; renderChips(); renderList(); app.markDirty(); } }, "Clear")));
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
  app.listen(document, "mousedown", (ev) => { if (!box.contains(ev.target)) close(); });
  search.addEventListener("blur", () => setTimeout(() => { if (!box.contains(document.activeElement)) close(); }, 150));
  renderChips();
  return box;
}
