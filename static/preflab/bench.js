// What the annotate and rank pages share: the guidelines dialog, idempotent submits (a client
// key per submit), failed requests shown in place with Retry, and announcing each swapped-in
// item. A page's bench is the element with data-bench (its value names what a submit stores:
// "vote", "ranking"); htmx swaps it whole, so every listener sits on the document.
(function () {
  "use strict";

  function bench() { return document.querySelector("[data-bench]"); }

  // A fast typist can press Enter in the few milliseconds between htmx swapping in a new
  // form and wiring it up; process it first so the submit never falls back to a full reload.
  function submit(form) {
    if (window.htmx) { window.htmx.process(form); }
    form.requestSubmit();
  }

  document.addEventListener("click", function (event) {
    if (event.target instanceof Element && event.target.closest("[data-open-guidelines]")) {
      document.getElementById("guidelines").showModal();
    }
  });

  // htmx puts focus back on the element with the same id after a swap. For a text box that
  // would swallow the next item's shortcut keys as text, so the bench lets go of focus before
  // it is replaced; the live region announces the new item instead.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const current = bench();
    const active = document.activeElement;
    if (current && event.detail.target === current && active instanceof HTMLElement &&
        current.contains(active)) {
      active.blur();
    }
  });

  // Announce each swapped-in item through the page's persistent live region.
  document.addEventListener("htmx:afterSettle", function (event) {
    const current = bench();
    const announcer = document.getElementById("announcer");
    if (!current || !announcer || !(event.target instanceof Node) ||
        !(event.target === current || current.contains(event.target) || event.target.contains(current))) { return; }
    const text = current.querySelector("[data-announce]");
    announcer.textContent = text ? text.textContent : "";
  });

  // --- Idempotent submits and failures shown in place ---------------------------------------
  // Each submit carries a key made here once; a retry of the same submit (the form is not
  // replaced when a request fails) resends the same key, so the server stores it at most once
  // and says "already saved" if the first try got through.
  function newKey() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    // Outside a secure context (plain HTTP to a host other than localhost) randomUUID is
    // missing; 16 random bytes from getRandomValues serve the same purpose.
    const bytes = window.crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  // Capture phase on the document: runs before htmx reads the form's values.
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement)) { return; }
    const key = form.querySelector("input[data-client-key]");
    if (key && !key.value) { key.value = newKey(); }
  }, true);

  function failureText(kind, status, noun) {
    // The request may have reached the server even when its answer did not come back, so
    // never claim it was not sent: say it could not be confirmed, and that a retry is safe.
    const unsure = " It may or may not have been saved; retrying is safe, a " + noun +
      " is never stored twice.";
    if (kind === "timeout") { return "No answer from the server in time." + unsure; }
    if (kind === "network") { return "The connection to the server failed." + unsure; }
    if (status >= 500) { return "The server had a problem (HTTP " + status + ")." + unsure; }
    return "The request was refused (HTTP " + status + "). Reload the page and try again.";
  }

  function showFailure(source, kind, status) {
    const current = bench();
    if (!current || !(source instanceof Element) || !current.contains(source)) { return; }
    let box = current.querySelector("[data-request-failure]");
    if (!box) {
      box = document.createElement("div");
      box.className = "notice error request-failure";
      box.setAttribute("role", "alert");
      box.setAttribute("data-request-failure", "");
      box.setAttribute("data-testid", "request-failure");
      current.insertBefore(box, current.firstChild);
    }
    const form = source.closest("form");
    box.replaceChildren();
    const text = document.createElement("span");
    text.textContent = failureText(kind, status, current.getAttribute("data-bench") || "vote");
    box.append(text);
    if (form && form.id && (kind !== "refused")) {
      const retry = document.createElement("button");
      retry.type = "button";
      retry.className = "primary";
      retry.textContent = "Retry";
      retry.setAttribute("data-retry", form.id);
      box.append(" ", retry);
      retry.focus();
    } else {
      const reload = document.createElement("button");
      reload.type = "button";
      reload.textContent = "Reload the page";
      reload.setAttribute("data-reload", "");
      box.append(" ", reload);
    }
  }

  document.addEventListener("click", function (event) {
    if (!(event.target instanceof Element)) { return; }
    const retry = event.target.closest("[data-retry]");
    if (retry) {
      const form = document.getElementById(retry.getAttribute("data-retry"));
      retry.closest("[data-request-failure]").remove();
      if (form) { submit(form); }
    } else if (event.target.closest("[data-reload]")) {
      window.location.reload();
    }
  });

  // 5xx answers are not swapped (the htmx-config meta in base.html): show them here.
  document.addEventListener("htmx:responseError", function (event) {
    const status = event.detail.xhr ? event.detail.xhr.status : 0;
    showFailure(event.detail.elt, status >= 500 ? "server" : "refused", status);
  });
  document.addEventListener("htmx:sendError", function (event) {
    showFailure(event.detail.elt, "network", 0);
  });
  document.addEventListener("htmx:timeout", function (event) {
    showFailure(event.detail.elt, "timeout", 0);
  });

  window.PrefLabBench = { submit: submit };
})();
