// Image features: the input as shown, and its attribution map with a PNG download.

import { fileSafe, h } from "../../lib/dom.js";

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
    return h("figure", { class: "ia-figure ia-attr", dataset: { feature: a.name } },
      image(a.image, `${ctx.method} attribution of ${a.name} for ${targetName}`),
      h("figcaption", null,
        h("span", { class: "ia-attr-target", title: `Attribution target: ${targetName}` }, `→ ${targetName}`),
        h("a", { class: "ia-download", href: a.image, download: name, title: "Download this attribution as PNG" }, "PNG")));
  },
};
