// Image features: the input as shown, and its attribution map with a PNG download.

import { fileSafe, h } from "../../lib/dom.js";
import { legend, zeroNote } from "../legend.js";

/** An image that stays crisp when small inputs are scaled up. */
export function image(src, alt) {
  const img = h("img", { class: "ia-img", src, alt, draggable: "false", decoding: "async" });
  img.addEventListener("load", () => {
    if (img.naturalWidth && img.naturalWidth < 96) img.classList.add("ia-pixelated");
  });
  return img;
}

export default {
  type: "image",
  input(f) {
    return h("figure", { class: "ia-figure" }, image(f.original, `${f.name} (input)`), h("figcaption", null, f.name));
  },
  attribution(a, ctx) {
    if (!a.image) return null;
    const targetName = ctx.target ? ctx.target.name : "output";
    const name = `insights-${ctx.ex.id}-${fileSafe(ctx.model.name)}-${fileSafe(ctx.method)}-${fileSafe(targetName)}.png`;
    const drawn = ctx.vis && ctx.vis.method !== "original_image";
    const note = drawn ? zeroNote(a, ctx.vis.sign) : null;
    const img = image(a.image, `${ctx.methodLabel || ctx.method} attribution of ${a.name} for ${targetName}`);
    const shown = ctx.onEnlarge
      ? h("button", { type: "button", class: "ia-enlarge", title: "Enlarge: the input and the map side by side, values under the pointer",
        "aria-label": `Enlarge the ${ctx.methodLabel || ctx.method} map of ${a.name}`, onclick: (ev) => ctx.onEnlarge(a, ev.currentTarget) }, img)
      : img;
    return h("figure", { class: "ia-figure ia-attr", dataset: { feature: a.name } },
      shown,
      h("figcaption", null,
        h("span", { class: "ia-attr-target", title: `Attribution target: ${targetName}` }, `→ ${targetName}`),
        h("a", { class: "ia-download", href: a.image, download: name, title: "Download this attribution as PNG" }, "PNG")),
      note,
      drawn && a.scale && ctx.config && !note ? legend(ctx.config, ctx.vis, a.scale, { compact: true }) : null);
  },
};
