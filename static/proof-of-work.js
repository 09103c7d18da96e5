// The proof of work of an opt-in form (a page with `proof_of_work`): loads the vendored
// ALTCHA widget, gives it its SHA-256 worker and holds the form back until the widget
// has solved its challenge. Runs on Capture's pages and, from the embed snippet, on
// other sites (where a worker cannot start from another site's URL: it is wrapped).
import "./vendor/altcha/altcha.min.js";

const workerUrl = new URL("vendor/altcha/sha.js", import.meta.url);

function startWorker() {
  if (workerUrl.origin === location.origin) return new Worker(workerUrl);
  const wrapper = new Blob(["importScripts(" + JSON.stringify(workerUrl.href) + ");"],
                           {type: "text/javascript"});
  return new Worker(URL.createObjectURL(wrapper));
}

globalThis.$altcha.algorithms.set("SHA-256", startWorker);

// A form sent before the check is done (the widget starts when the visitor is in the
// form) waits for it, then goes; a failed or expired check starts again.
document.querySelectorAll("altcha-widget").forEach((widget) => {
  const form = widget.closest("form");
  if (!form) return;
  form.addEventListener("submit", (event) => {
    const state = widget.getState && widget.getState();
    if (state === "verified") return;
    event.preventDefault();
    event.stopImmediatePropagation();
    const submitter = event.submitter;
    widget.addEventListener("verified", () => form.requestSubmit(submitter), {once: true});
    if (state !== "verifying") widget.verify();
  }, {capture: true});
});
