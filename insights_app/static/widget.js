// Entry point of the notebook widget (anywidget). anywidget loads this file from a blob: URL, where
// the page's relative imports cannot resolve, so the kernel sends every module of the page as the
// `_modules` trait (path -> source). They are linked here, leaves first, each into a blob: URL whose
// imports name its dependencies' blob: URLs, then the app is mounted with the comm transport.

// Static imports and re-exports of a relative path, one statement per line at the start of the line:
// `import { a } from "./x.js";`, `export { b } from "../y.js";`, `import "./z.js";`. That is how the
// page's modules are written (the widget test links them all and checks that no relative specifier is
// left); statements split over lines, dynamic import() and import cycles are not supported.
const RELATIVE_IMPORT = /^(\s*(?:import|export)\b[^"'\n;]*?\bfrom\s*|\s*import\s*)(["'])(\.\.?\/[^"'\n]+)\2/gm;

/** Link `sources` (path -> module source) into blob: URLs; link(path) gives a module's URL. */
export function linkModules(sources, toUrl = (code) => URL.createObjectURL(new Blob([code], { type: "text/javascript" }))) {
  const urls = new Map();
  const linking = new Set();
  const link = (path) => {
    if (urls.has(path)) return urls.get(path);
    if (!Object.prototype.hasOwnProperty.call(sources, path)) throw new Error(`the widget has no module ${path}`);
    if (linking.has(path)) throw new Error(`import cycle through ${path}`);
    linking.add(path);
    const code = sources[path].replace(RELATIVE_IMPORT, (_, head, quote, spec) => {
      const target = new URL(spec, `file:///${path}`).pathname.slice(1);
      return `${head}${quote}${link(target)}${quote}`;
    });
    linking.delete(path);
    const url = toUrl(code);
    urls.set(path, url);
    return url;
  };
  return { link, urls };
}

export default {
  async render({ model, el }) {
    // The app's root takes the cell's width (css/layout.css: never wider, the narrow layout in a
    // narrow cell) and follows the notebook's theme (css/theme.css). Its height is the `height` trait
    // in px, the page scrolling inside it; 0 or None: no fixed height, the widget grows with its content.
    const root = document.createElement("div");
    root.className = "insights-app insights-notebook";
    const height = () => {
      const h = Number(model.get("height"));
      return Number.isFinite(h) && h > 0 ? h : 0;
    };
    const setHeight = () => {
      const h = height();
      root.style.height = h ? `${h}px` : "auto";
    };
    setHeight();
    model.on("change:height", setHeight);
    el.appendChild(root);
    let app = null;
    let comm = null;
    const linked = linkModules(model.get("_modules") || {});
    try {
      const [{ mount }, { commTransport }] = await Promise.all([
        import(linked.link("app.js")), import(linked.link("lib/transport.js"))]);
      comm = commTransport(model);
      app = mount(root, comm.transport, { urlState: false, height: height() || null });
    } catch (err) {
      root.textContent = `Insights failed to start: ${err && err.message ? err.message : err}`;
    } finally {
      for (const url of linked.urls.values()) URL.revokeObjectURL(url); // the loaded modules stay
    }
    return () => {
      model.off("change:height", setHeight);
      if (comm) comm.close();
      if (app) app.destroy();
    };
  },
};
