// The examples view's "Export report" button: the page on screen (its filter, method, arguments and
// display) as a self-contained HTML report, made by the server's export view and saved as a file.
//
// The answer is JSON ({filename, media_type, content}), so the same request works over HTTP and over
// the notebook widget's comm; the file is saved through a Blob and an <a download> link. While the
// report is made the button stays focusable but does nothing (aria-disabled), and a polite live
// region says what is happening: "Making the report…", then "Report downloaded" or the error.

import { h } from "../lib/dom.js";

/** The report's request: the page on screen (else the form), without its page, page size or stream. */
export function exportBody(app, format = "html") {
  const base = app.committed || app.bodyFromState(true);
  const body = JSON.parse(JSON.stringify(base));
  for (const key of ["page", "page_size", "stream"]) delete body[key];
  return { ...body, format };
}

/** Save `text` as a file named `name` (a Blob and a temporary <a download> inside the app's root). */
export function saveText(root, text, name, type) {
  const url = URL.createObjectURL(new Blob([text], { type: type || "application/octet-stream" }));
  const a = h("a", { href: url, download: name, hidden: true });
  root.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** The button and its status, for the examples view's toolbar. */
export function exportReportControl(app) {
  let abort = null;
  const status = h("span", { class: "ia-export-status", role: "status", "aria-live": "polite" });
  const setStatus = (text, kind) => {
    status.textContent = text;
    status.dataset.kind = kind || "";
  };
  const button = h("button", {
    type: "button", class: "ia-btn ia-btn-small ia-export-btn",
    title: "Save the examples on screen (their filter, method and display) as a self-contained HTML report",
    onclick: () => run(),
  }, "Export report");

  async function run() {
    if (abort) return; // one report at a time
    let body;
    try {
      body = exportBody(app);
    } catch (exc) {
      setStatus(`Report failed: ${exc.message || exc}`, "error");
      return;
    }
    abort = typeof AbortController !== "undefined" ? new AbortController() : { signal: undefined, abort() {} };
    button.setAttribute("aria-disabled", "true");
    button.classList.add("ia-export-busy");
    setStatus("Making the report…", "busy");
    try {
      const answer = await app.transport.request("export", body, { signal: abort.signal });
      if (app.destroyed) return;
      if (!answer || typeof answer.content !== "string") throw new Error("the server sent no report");
      saveText(app.root, answer.content, answer.filename || "insights-report.html", answer.media_type || "text/html");
      setStatus("Report downloaded", "done");
    } catch (exc) {
      if (app.destroyed || (exc && exc.name === "AbortError")) return;
      setStatus(`Report failed: ${exc && exc.message ? exc.message : exc}`, "error");
    } finally {
      abort = null;
      button.removeAttribute("aria-disabled");
      button.classList.remove("ia-export-busy");
    }
  }

  app.cleanup.push(() => { if (abort) abort.abort(); }); // the app is destroyed: the server stops too
  return h("div", { class: "ia-export" }, button, status);
}
