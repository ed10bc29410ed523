// How each kind of feature is shown, by the feature's type (its `type` in /config): one module each;
// a type none of them shows (a user's own) gets values.js.

import general from "./general.js";
import image from "./image.js";
import text from "./text.js";
import values from "./values.js";

const FEATURE_VIEWS = new Map([image, text, general].map((view) => [view.type, view]));

/** What a feature shows for an example's input (null for features that are not shown). */
export function inputView(f) {
  const view = FEATURE_VIEWS.get(f.type);
  return view ? view.input(f) : null;
}

/** One feature's attribution; ctx = {ex, model, method, target}. */
export function attributionView(a, ctx) {
  const view = FEATURE_VIEWS.get(a.type) ?? values; // a type of the user's own: its values as bars
  return view.attribution(a, ctx);
}

const NOT_IMAGES = new Set(["general", "text", "empty"]);

/** Whether the page shows image maps: the image-only controls (image size, how a map is drawn, the map
 * legend) are left out of a tabular or text page. A kind the page does not know may be an image. */
export function showsImages(config) {
  return (config.features || []).some((f) => !NOT_IMAGES.has(f.type));
}
