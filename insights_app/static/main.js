// Entry point of the standalone page: the UI lives in app.js and its modules (shared with the notebook widget).
import { mount } from "./app.js";
import { httpTransport } from "./lib/transport.js";

mount(document.getElementById("app"), httpTransport(""), { urlState: true });
