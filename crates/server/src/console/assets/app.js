// Switchboard console: shared helpers of every signed-in page (loaded before page scripts).
// No framework, no build: plain DOM. The CSP forbids inline scripts, so pages pass data in
// data-* attributes and <meta> tags.
"use strict";

(function () {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrfToken = meta ? meta.getAttribute("content") : "";

  // fetch() for the console's own API calls: same origin, the session cookie, and the CSRF
  // header every non-GET request needs. Rejects on a non-2xx answer with the API's message.
  async function api(path, options) {
    const opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
    opts.headers = Object.assign({ Accept: "application/json" }, opts.headers);
    if (opts.method && opts.method !== "GET" && opts.method !== "HEAD") {
      opts.headers["X-CSRF-Token"] = csrfToken;
    }
    const response = await fetch(path, opts);
    const text = await response.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = text; }
    if (!response.ok) {
      const message = body && body.error && body.error.message ? body.error.message : response.statusText;
      const error = new Error(message);
      error.status = response.status;
      error.body = body;
      throw error;
    }
    return body;
  }

  // Builds an element: el("li", {class: "user"}, "text", child, ...).
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) node.setAttribute(k, v);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  // Builds an SVG element with attributes.
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) node.setAttribute(k, v);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  // "1234" ms -> "1.23 s"; below a second "850 ms".
  function ms(value) {
    if (value === null || value === undefined) return "–";
    return Math.abs(value) >= 1000 ? (value / 1000).toFixed(2) + " s" : Math.round(value) + " ms";
  }

  // A form that deletes, revokes or clears something asks first: its data-confirm attribute is
  // the question (no inline handler: the CSP forbids inline scripts). Cancelling sends nothing.
  document.addEventListener("submit", (event) => {
    const form = event.target;
    const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
    if (question && !window.confirm(question)) event.preventDefault();
  });

  window.Switchboard = { api, el, svg, ms, csrfToken };
})();
