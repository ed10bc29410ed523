// The class multi-select of the Examples section: chips for the chosen classes and a combobox (a
// search input owning a listbox). Keyboard: the input keeps the focus; ArrowDown/ArrowUp move the
// active option, Enter toggles it (or, with none active, adds the first match), Escape closes the
// list, Backspace in an empty input removes the last chip. The list opens on typing, a click or
// ArrowDown, not on focus alone, so Tab passes the picker in one press whatever the class count.

import { clear, h, put } from "../lib/dom.js";
import { uid } from "./fields.js";

const MAX_CLASS_OPTIONS = 300;

/** The picker over `app.state.filter.classes` (its element). */
export function classPicker(app) {
  const s = app.state;
  const classes = app.config.classes;
  const listId = uid("classes-list");
  const chips = h("div", { class: "ia-chips" });
  const search = h("input", {
    type: "text", class: "ia-ms-search", placeholder: "All classes · type to search", autocomplete: "off",
    role: "combobox", "aria-label": "Classes: type to search", "aria-autocomplete": "list",
    "aria-expanded": "false", "aria-controls": listId,
  });
  const count = h("span", { class: "ia-ms-count" });
  const list = h("div", { class: "ia-ms-list", id: listId, role: "listbox", "aria-multiselectable": "true", "aria-label": "Classes" });
  const note = h("div", { class: "ia-help", hidden: true });
  const keepFocus = (ev) => ev.preventDefault();
  const selectShown = () => {
    const set = new Set(s.filter.classes);
    for (const i of shown) set.add(i);
    commit(set);
  };
  const actions = h("div", { class: "ia-ms-actions" }, count,
    h("button", { type: "button", class: "ia-link", onclick: selectShown }, "Select shown"),
    h("button", { type: "button", class: "ia-link", onclick: () => commit(new Set()) }, "Clear"));
  // A press anywhere in the popup (options, buttons, the scroll bar) leaves the focus in the input.
  const popup = h("div", { class: "ia-ms-popup", hidden: true, onmousedown: keepFocus }, actions, list, note);
  const box = h("div", { class: "ia-ms" },
    h("div", { class: "ia-ms-box", onclick: () => { search.focus(); open(); } }, chips, search), popup);

  let shown = []; // class indices listed, in order
  let active = -1; // index into `shown` of the active option, -1 for none

  const commit = (set) => {
    s.filter.classes = [...set].sort((a, b) => a - b);
    renderChips();
    renderList();
    app.markDirty();
  };
  const toggle = (i, on) => {
    const set = new Set(s.filter.classes);
    if (on) set.add(i); else set.delete(i);
    commit(set);
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
  const optionId = (k) => `${listId}-${k}`;
  const setActive = (k) => {
    active = shown.length ? Math.max(0, Math.min(shown.length - 1, k)) : -1;
    for (const el of list.children) el.classList.toggle("ia-ms-active", el.id === optionId(active));
    if (active >= 0) {
      search.setAttribute("aria-activedescendant", optionId(active));
      const el = list.children[active];
      if (el && el.scrollIntoView) el.scrollIntoView({ block: "nearest" });
    } else search.removeAttribute("aria-activedescendant");
  };
  const renderList = () => {
    if (popup.hidden) return;
    const found = matches();
    shown = found.slice(0, MAX_CLASS_OPTIONS);
    const selected = new Set(s.filter.classes);
    count.textContent = `${found.length} of ${classes.length}`;
    clear(list);
    shown.forEach((i, k) => {
      const on = selected.has(i);
      put(list, h("div", {
        class: "ia-ms-option", role: "option", id: optionId(k), "aria-selected": on ? "true" : "false", dataset: { index: String(i) },
        onclick: () => { setActive(k); toggle(i, !on); },
      }, h("span", { class: "ia-ms-check" + (on ? " ia-ms-checked" : ""), "aria-hidden": "true" }), h("span", null, classes[i])));
    });
    note.hidden = found.length > 0 && found.length <= MAX_CLASS_OPTIONS;
    note.textContent = !found.length ? "No class matches." : `${found.length - MAX_CLASS_OPTIONS} more: refine the search.`;
    setActive(active);
  };
  const open = () => {
    if (!popup.hidden) return;
    popup.hidden = false;
    search.setAttribute("aria-expanded", "true");
    active = -1;
    renderList();
  };
  const close = () => {
    popup.hidden = true;
    active = -1;
    search.setAttribute("aria-expanded", "false");
    search.removeAttribute("aria-activedescendant");
  };
  search.addEventListener("input", () => { open(); active = -1; renderList(); });
  search.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      if (popup.hidden) { open(); setActive(ev.key === "ArrowDown" ? 0 : shown.length - 1); return; }
      setActive(active < 0 ? (ev.key === "ArrowDown" ? 0 : shown.length - 1) : active + (ev.key === "ArrowDown" ? 1 : -1));
    } else if (ev.key === "Escape") {
      if (!popup.hidden) { ev.preventDefault(); ev.stopPropagation(); close(); }
    } else if (ev.key === "Enter") {
      ev.preventDefault();
      if (!popup.hidden && active >= 0) {
        const i = shown[active];
        toggle(i, !s.filter.classes.includes(i));
        return;
      }
      const first = matches().find((i) => !s.filter.classes.includes(i));
      if (first !== undefined) { toggle(first, true); search.value = ""; renderList(); }
    } else if (ev.key === "Backspace" && !search.value && s.filter.classes.length) {
      toggle(s.filter.classes[s.filter.classes.length - 1], false);
    }
  });
  // A press outside moves the focus out (to the body at least), which closes the list.
  box.addEventListener("focusout", (ev) => { if (!box.contains(ev.relatedTarget)) close(); });
  renderChips();
  return box;
}
