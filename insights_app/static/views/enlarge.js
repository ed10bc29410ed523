// The large view of one example's attribution: the input and the map side by side at the image's
// own resolution (scaled to the space there is), the map over the input with an opacity slider,
// the attribution value under the pointer, and two downloads: a figure (input, map, legend,
// method, target) at a readable size, and the raw map as a NumPy .npy file.
//
// It asks the server for the map once more as a plain heat map with its values (`values: true`:
// float32, the map as drawn), so the overlay and the readout show exactly what the card shows.

import { clear, fileSafe, fmt, h, put, spinner } from "../lib/dom.js";
import { stops } from "../lib/colors.js";
import { argumentSummary } from "../lib/state.js";
import { legend } from "./legend.js";

const FIGURE_PANEL = 320; // px: each image of an exported figure is at least this large

/** Decode a {shape, data} values object (base64 float32, row-major) into {w, h, data}. */
export function decodeValues(values) {
  const bytes = Uint8Array.from(atob(values.data), (c) => c.charCodeAt(0));
  const [hgt, wid] = values.shape.length === 2 ? values.shape : [1, values.shape[0] || 0];
  return { w: wid, h: hgt, data: new Float32Array(bytes.buffer, 0, wid * hgt) };
}

/** A NumPy .npy file (format 1.0) holding a float32 array of `shape`. */
export function npyBlob(floats, shape) {
  const header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(", ")}${shape.length === 1 ? "," : ""}), }`;
  const unpadded = 10 + header.length + 1;
  const padded = header + " ".repeat((64 - (unpadded % 64)) % 64) + "\n";
  const head = new Uint8Array(10 + padded.length);
  head.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, padded.length & 255, padded.length >> 8]);
  for (let i = 0; i < padded.length; i++) head[10 + i] = padded.charCodeAt(i);
  return new Blob([head, new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength)], { type: "application/octet-stream" });
}

function download(app, blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name, hidden: true });
  app.root.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the image could not be decoded"));
    img.src = src;
  });
}

/**
 * Open the large view. `what`: {ex, model (the card's model entry), body (the request that drew
 * the card: method, arguments, visualization, top_k), feature (the attribution's feature name),
 * opener (the element to give the focus back to)}.
 */
export function openLarge(app, what) {
  const { ex, model, body, opener } = what;
  const featureIndex = Math.max(0, ex.features.findIndex((f) => f.name === what.feature));
  const input = ex.features[featureIndex];
  const spec = app.methods.get(body.method);
  const methodLabel = spec ? spec.label : body.method;
  const targetName = model.target ? model.target.name : "output";
  const titleId = `ia-large-title-${Math.random().toString(36).slice(2, 8)}`;
  const opacity = h("input", { type: "range", min: 0, max: 100, value: 60, "aria-label": "Opacity of the map over the input" });
  const readout = h("div", { class: "ia-large-readout", "aria-live": "off" }, "Point at the image to read the attribution.");
  const panes = h("div", { class: "ia-large-panes" }, spinner("Loading the map…"));
  const legendBox = h("div", { class: "ia-large-legend" });
  const figureBtn = h("button", { type: "button", class: "ia-btn", disabled: true, title: "Input, map, legend, method and target in one PNG" }, "Download figure");
  const rawBtn = h("button", { type: "button", class: "ia-btn", disabled: true, title: "The attribution map as drawn, float32 (numpy.load reads it)" }, "Download raw map (.npy)");
  const close = h("button", { type: "button", class: "ia-btn ia-large-close", "aria-label": "Close the large view" }, "Close");
  const args = argumentSummary(body.arguments);
  const dialog = h("div", { class: "ia-large", role: "dialog", "aria-modal": "true", "aria-labelledby": titleId },
    h("div", { class: "ia-large-box" },
      h("div", { class: "ia-large-head" },
        h("h2", { class: "ia-large-title", id: titleId }, `#${ex.id} · ${methodLabel} → ${targetName}`),
        h("span", { class: "ia-muted ia-large-sub" }, [model.name, args].filter(Boolean).join(" · ")),
        h("span", { class: "ia-spacer" }),
        close),
      panes,
      h("footer", { class: "ia-large-foot" },
        h("label", { class: "ia-inline-field ia-large-opacity" }, "Map opacity", opacity),
        legendBox,
        readout,
        h("span", { class: "ia-spacer" }),
        figureBtn, rawBtn)));
  const backdrop = h("div", { class: "ia-large-backdrop" }, dialog);
  let closed = false;
  const shut = () => {
    if (closed) return;
    closed = true;
    backdrop.remove();
    app.root.removeEventListener("keydown", onKey, true);
    if (opener && opener.isConnected) opener.focus();
  };
  const onKey = (ev) => {
    if (ev.key === "Escape") {
      ev.preventDefault();
      ev.stopPropagation();
      shut();
    } else if (ev.key === "Tab") { // keep the focus inside the dialog
      const focusable = [...dialog.querySelectorAll("button:not([disabled]), input, a[href]")];
      if (!focusable.length) return;
      const first = focusable[0];
      const last = focusable[focusable.length - 1];
      if (ev.shiftKey && document.activeElement === first) { ev.preventDefault(); last.focus(); }
      else if (!ev.shiftKey && document.activeElement === last) { ev.preventDefault(); first.focus(); }
    }
  };
  close.addEventListener("click", shut);
  backdrop.addEventListener("click", (ev) => { if (ev.target === backdrop) shut(); });
  app.root.addEventListener("keydown", onKey, true);
  app.root.append(backdrop);
  close.focus();

  const request = {
    example_id: ex.id, model: model.index, target: model.target ? model.target.index : null, method: body.method,
    arguments: body.arguments, visualization: { ...body.visualization, method: "heat_map" }, top_k: body.top_k, values: true,
  };
  app.transport.request("attribute", request).then(async (result) => {
    if (closed) return;
    const m = result.example.models[0];
    const a = m.attributions.find((x) => x.name === input.name) || m.attributions[0];
    if (m.error || !a || !a.values) {
      put(clear(panes), h("div", { class: "ia-inline-error", role: "alert" }, m.error || "This feature has no image map to enlarge."));
      return;
    }
    const values = decodeValues(a.values);
    const [original, heat] = await Promise.all([loadImage(input.original), loadImage(a.image)]);
    if (closed) return;
    show(original, heat, values, a.scale);
  }).catch((exc) => {
    if (!closed) put(clear(panes), h("div", { class: "ia-inline-error", role: "alert" }, exc.message || String(exc)));
  });

  function show(original, heat, values, scale) {
    const vis = body.visualization;
    // As large as the panes allow, in whole multiples of a small image's pixels (crisp), never
    // beyond the display bound the server drew it at.
    const boxW = Math.max(160, (dialog.clientWidth - 72) / 2);
    const boxH = Math.max(160, window.innerHeight - 260);
    let factor = Math.min(boxW / values.w, boxH / values.h);
    if (factor >= 2) factor = Math.floor(factor);
    const w = Math.max(1, Math.round(values.w * factor));
    const hgt = Math.max(1, Math.round(values.h * factor));
    const size = { width: `${w}px`, height: `${hgt}px` };
    const crisp = factor >= 2 ? " ia-pixelated" : "";
    const mk = (src, alt, cls = "") => h("img", { src, alt, class: `ia-large-img${crisp}${cls}`, style: size, draggable: "false" });
    const heatImg = mk(heat.src, "", " ia-large-heat");
    heatImg.style.opacity = String(Number(opacity.value) / 100);
    opacity.addEventListener("input", () => { heatImg.style.opacity = String(Number(opacity.value) / 100); });
    const left = h("figure", { class: "ia-large-pane" }, h("div", { class: "ia-large-stack", style: size }, mk(original.src, `${input.name} (input)`)), h("figcaption", null, "Input"));
    const right = h("figure", { class: "ia-large-pane" },
      h("div", { class: "ia-large-stack", style: size }, mk(original.src, ""), heatImg),
      h("figcaption", null, `${methodLabel} → ${targetName}`));
    right.querySelector(".ia-large-stack img").setAttribute("aria-hidden", "true");
    heatImg.setAttribute("alt", `${methodLabel} attribution of ${input.name} for ${targetName}, over the input`);
    put(clear(panes), left, right);
    put(clear(legendBox), legend(app.config, vis, scale || null));
    const onMove = (ev) => {
      const rect = ev.currentTarget.getBoundingClientRect();
      const x = Math.min(values.w - 1, Math.max(0, Math.floor(((ev.clientX - rect.left) / rect.width) * values.w)));
      const y = Math.min(values.h - 1, Math.max(0, Math.floor(((ev.clientY - rect.top) / rect.height) * values.h)));
      const v = values.data[y * values.w + x];
      readout.textContent = `x ${x}, y ${y}: ${fmt(v)}`;
      readout.dataset.value = String(v);
    };
    for (const stack of panes.querySelectorAll(".ia-large-stack")) {
      stack.addEventListener("mousemove", onMove);
      stack.addEventListener("mouseleave", () => { readout.textContent = "Point at the image to read the attribution."; });
    }
    const base = `insights-${ex.id}-${fileSafe(model.name)}-${fileSafe(body.method)}-${fileSafe(targetName)}`;
    rawBtn.disabled = false;
    rawBtn.addEventListener("click", () => download(app, npyBlob(values.data, [values.h, values.w]), `${base}.npy`));
    figureBtn.disabled = false;
    figureBtn.addEventListener("click", () => {
      const canvas = figure({ original, heat, values, scale, vis, opacity: Number(opacity.value) / 100,
        title: `Example #${ex.id}${ex.label ? ` · true label ${ex.label.name}` : ""} · ${model.name}`,
        subtitle: `${methodLabel}${args ? ` (${args})` : ""} → ${targetName}` });
      canvas.toBlob((blob) => { if (blob) download(app, blob, `${base}-figure.png`); }, "image/png");
    });
  }

  /** The exported figure: title lines, the input and the map over it, and a legend with numbers. */
  function figure({ original, heat, values, scale, vis, opacity: alpha, title, subtitle }) {
    const factor = Math.max(1, Math.ceil(FIGURE_PANEL / Math.max(values.w, values.h)));
    const pw = values.w * factor;
    const ph = values.h * factor;
    const pad = 24;
    const width = Math.max(pad * 3 + pw * 2, pad * 2 + pw + Math.min(pw, 260) + 140);
    const height = pad + 44 + ph + 24 + 64;
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const g = canvas.getContext("2d");
    g.fillStyle = "#ffffff";
    g.fillRect(0, 0, width, height);
    g.fillStyle = "#1d2733";
    g.font = "600 16px system-ui, sans-serif";
    g.fillText(title, pad, pad + 8);
    g.font = "14px system-ui, sans-serif";
    g.fillText(subtitle, pad, pad + 30);
    const top = pad + 44;
    g.imageSmoothingEnabled = factor < 2;
    g.drawImage(original, pad, top, pw, ph);
    g.drawImage(original, pad * 2 + pw, top, pw, ph);
    g.globalAlpha = alpha;
    g.drawImage(heat, pad * 2 + pw, top, pw, ph);
    g.globalAlpha = 1;
    g.font = "12px system-ui, sans-serif";
    g.fillStyle = "#667281";
    g.fillText("Input", pad, top + ph + 16);
    g.fillText(`Attribution (map at ${Math.round(alpha * 100)}% over the input)`, pad * 2 + pw, top + ph + 16);
    // The legend: the colour bar and the values at its ends (and 0 in the middle of a signed one).
    const colors = stops(app.config, vis.palette, vis.sign);
    const barX = pad * 2 + pw;
    const barY = top + ph + 32;
    const barW = Math.min(pw, 260);
    const grad = g.createLinearGradient(barX, 0, barX + barW, 0);
    colors.forEach((c, i) => grad.addColorStop(i / (colors.length - 1), c));
    g.fillStyle = grad;
    g.fillRect(barX, barY, barW, 12);
    g.strokeStyle = "#c5ccd5";
    g.strokeRect(barX + 0.5, barY + 0.5, barW - 1, 11);
    g.fillStyle = "#1d2733";
    const lo = scale ? fmt(scale.low) : "";
    const hi = scale ? fmt(scale.high) : "";
    g.textAlign = "left";
    g.fillText(lo, barX, barY + 28);
    g.textAlign = "right";
    g.fillText(hi, barX + barW, barY + 28);
    if (vis.sign === "all") {
      g.textAlign = "center";
      g.fillText("0", barX + barW / 2, barY + 28);
    }
    g.textAlign = "left";
    g.fillStyle = "#667281";
    g.fillText(vis.sign === "absolute_value" ? "|attribution|" : vis.sign === "all" ? "attribution" : `${vis.sign} attribution`,
      barX + barW + 8, barY + 10);
    return canvas;
  }

  return { close: shut, dialog };
}
