// The views of the main area, one module each; the first is the default view.
// A view module exports {name, create(app), readUrl?(query, num, app), entry?}: readUrl says what a
// link asks the view to open; entry ({label, title, params(app)}) puts a button that opens it on the
// examples toolbar. The instance has `el`, `isOpen`, open(params), close(), destroy(), and
// writeUrl?(query) to put its own part of the view in the address bar.
// Adding a view: its module, and one line here.

import compare from "./compare.js";
import dataset from "./dataset.js";
import examples from "./examples.js";
import sanity from "./sanity.js";

export const VIEWS = [examples, compare, dataset, sanity];
