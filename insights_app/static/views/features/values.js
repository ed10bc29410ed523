// Features of a type no view is registered for (a user's own BaseFeature subclass whose
// visualization_type() is, say, "real"): their attribution values as the general view's signed
// bars, labelled by position, under the feature's name and type.

import { h } from "../../lib/dom.js";
import general from "./general.js";

export default {
  type: "",
  input() {
    return null; // the server's base renderer shows no input for a type it does not know
  },
  attribution(a, ctx = {}) {
    if (!Array.isArray(a.scores)) return null;
    return h("div", { class: "ia-values-attr", dataset: { type: a.type || "" } },
      general.attribution(a, ctx),
      h("div", { class: "ia-help" }, `${a.scores.length} attribution value${a.scores.length === 1 ? "" : "s"} of a "${a.type}" feature`));
  },
};
