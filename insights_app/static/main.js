// Entry point of the standalone page: the whole UI lives in app.js (shared with the notebook widget).
import { mount, httpTransport } from "./app.js";

mount(document.getElementById("app"), httpTransport(""), { urlState: true });
