// How the page talks to its server: one request(kind, body, {onEvent, signal}) for every view.
//
// A kind is a view of the API (config, examples, attribute, ...). Over HTTP it is the route
// api/v1/<kind>: GET when there is no body, POST with a JSON body otherwise. In a notebook it is a
// widget message {id, kind, body} that the kernel answers with the same function. A streaming view
// (examples) streams when asked to, with onEvent: each event is handed to onEvent as it arrives and
// the promise resolves when the stream ends (over the comm it always streams). Otherwise the
// promise resolves with the JSON answer. A refusal rejects with an Error carrying the server's
// {"error"} text (and .field when the message names one); an abort rejects with an AbortError.

const API = "api/v1";

/** Error carrying the server's {"error"} text and, when it names one, the offending field. */
export function apiError(message, status) {
  const err = new Error(message || "request failed");
  err.status = status;
  const m = /^([A-Za-z_][\w.\-]*): /.exec(err.message);
  if (m) err.field = m[1];
  return err;
}

function abortError() {
  try {
    return new DOMException("the request was cancelled", "AbortError");
  } catch (_) {
    const err = new Error("the request was cancelled");
    err.name = "AbortError";
    return err;
  }
}

/** Read an NDJSON body, handing each parsed line to onEvent. */
async function readLines(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const flush = (final) => {
    let cut;
    while ((cut = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, cut).trim();
      buffer = buffer.slice(cut + 1);
      if (line) onEvent(JSON.parse(line));
    }
    if (final && buffer.trim()) {
      onEvent(JSON.parse(buffer));
      buffer = "";
    }
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    flush(false);
  }
  buffer += decoder.decode();
  flush(true);
}

/** A transport that calls the JSON API with fetch; `baseUrl` "" means "relative to this page". */
export function httpTransport(baseUrl = "") {
  const base = baseUrl ? String(baseUrl).replace(/\/+$/, "") + "/" : "";

  async function request(kind, body, { onEvent, signal } = {}) {
    const streaming = typeof onEvent === "function";
    const init = { credentials: "same-origin", cache: "no-store", signal,
      headers: { Accept: streaming ? "application/x-ndjson" : "application/json" } };
    if (body !== null && body !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(streaming ? { ...body, stream: true } : body);
    }
    let resp;
    try {
      resp = await fetch(`${base}${API}/${kind}`, init);
    } catch (exc) {
      if (exc && exc.name === "AbortError") throw exc;
      throw apiError("Cannot reach the Insights server (is it still running?)", 0);
    }
    if (!resp.ok) {
      let message = `HTTP ${resp.status}`;
      try {
        const data = await resp.json();
        if (data && typeof data.error === "string") message = data.error;
      } catch (_) {
        /* not JSON: keep the status line */
      }
      throw apiError(message, resp.status);
    }
    const type = resp.headers.get("Content-Type") || "";
    if (streaming && type.includes("ndjson") && resp.body) return readLines(resp.body, onEvent);
    return resp.json();
  }

  return { request };
}

/**
 * A transport over an anywidget model's custom messages (the notebook widget).
 *
 * The kernel answers a request {id, kind, body} with zero or more {id, event} messages, then
 * exactly one {id, result} or {id, error}; an aborted request sends {id, kind: "cancel"}.
 * Returns {transport, close()}.
 */
export function commTransport(model) {
  const prefix = Math.random().toString(36).slice(2);
  const pending = new Map();
  let counter = 0;
  const onMessage = (msg) => {
    if (!msg || typeof msg !== "object" || typeof msg.id !== "string") return;
    const req = pending.get(msg.id);
    if (!req) return; // another view of the same widget asked
    if (Object.prototype.hasOwnProperty.call(msg, "event")) {
      if (req.onEvent) {
        try { req.onEvent(msg.event); } catch (err) { console.error("insights: event handler failed", err); }
      }
      return;
    }
    pending.delete(msg.id);
    if (Object.prototype.hasOwnProperty.call(msg, "error")) req.reject(apiError(String(msg.error)));
    else req.resolve(msg.result);
  };
  model.on("msg:custom", onMessage);

  const request = (kind, body, { onEvent, signal } = {}) => new Promise((resolve, reject) => {
    if (signal && signal.aborted) { reject(abortError()); return; }
    const id = `${prefix}-${++counter}`;
    const onAbort = () => {
      if (!pending.has(id)) return;
      pending.delete(id);
      try { model.send({ id, kind: "cancel", body: null }); } catch (_) { /* the kernel is gone */ }
      reject(abortError());
    };
    const done = (fn) => (value) => {
      if (signal) signal.removeEventListener("abort", onAbort);
      fn(value);
    };
    pending.set(id, { resolve: done(resolve), reject: done(reject), onEvent: typeof onEvent === "function" ? onEvent : null });
    if (signal) signal.addEventListener("abort", onAbort);
    try {
      model.send({ id, kind, body: body === undefined ? null : body });
    } catch (err) {
      pending.delete(id);
      done(reject)(err);
    }
  });

  return {
    transport: { request },
    close() {
      model.off("msg:custom", onMessage);
      for (const req of pending.values()) req.reject(new Error("the widget was closed"));
      pending.clear();
    },
  };
}
