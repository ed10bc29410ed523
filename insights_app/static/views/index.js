// The views of the main area, one module each; the first is the default view.
// A view module exports {name, create(app), readUrl?(query, num, app)}: readUrl says what a link
// asks the view to open. The instance has `el`, `isOpen`, open(params), close(), destroy(), and
// writeUrl?(query) to put its own part of the view in the address bar.

import compare from "./compare.js";
import dataset from "./dataset.js";
import examples from "./examples.js";
import sanity from "./sanity.js";

export const VIEWS = [examples, compare, dataset, sanity];
