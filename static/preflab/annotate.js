// Keyboard shortcuts for the annotation workbench. Listeners sit on the document so they keep
// working after htmx swaps the workbench for the next comparison.
(function () {
  "use strict";

  function typingInField(target) {
    return target instanceof HTMLElement &&
      (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName) &&
        !(target instanceof HTMLInputElement && target.type === "radio"));
  }

  function voteForm() { return document.getElementById("vote-form"); }

  // A fast typist can press Enter in the few milliseconds between htmx swapping in a new
  // form and wiring it up; process it first so the vote never falls back to a full reload.
  function submit(form) {
    if (window.htmx) { window.htmx.process(form); }
    form.requestSubmit();
  }

  document.addEventListener("click", function (event) {
    if (event.target instanceof Element && event.target.closest("[data-open-guidelines]")) {
      document.getElementById("guidelines").showModal();
    }
  });

  // The skip-or-flag panel: k (skip) or f (flag) opens it with that action chosen and puts
  // focus on the reason; inside it Enter sends, Esc closes it, and the vote keys do nothing.
  function openFlagPanel(kind) {
    const panel = document.getElementById("flag-panel");
    if (!panel) { return; }
    panel.open = true;
    const action = panel.querySelector('input[data-flag-kind="' + kind + '"]');
    if (action) { action.checked = true; }
    const reason = panel.querySelector('input[name="reason"]:checked') ||
      panel.querySelector('input[name="reason"]');
    if (reason) { reason.focus(); }
  }

  function closeFlagPanel(panel) {
    panel.open = false;
    panel.querySelector("summary").focus();
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.metaKey) { return; }
    const flagPanel = event.target instanceof Element ? event.target.closest("#flag-panel") : null;
    const flagForm = document.getElementById("flag-form");
    if (flagPanel && event.key === "Escape" && flagPanel.open) {
      event.preventDefault();
      closeFlagPanel(flagPanel);
      return;
    }
    if (flagForm && event.target instanceof Element && flagForm.contains(event.target)) {
      // Inside the panel's form: Enter sends it (Ctrl+Enter from the note); other keys type.
      if (event.key === "Enter" &&
          (!(event.target instanceof HTMLTextAreaElement) || event.ctrlKey)) {
        event.preventDefault();
        submit(flagForm);
      }
      return;
    }
    // On the panel's summary, Enter and Space open or close it as usual; the rest vote.
    if (flagPanel && (event.key === "Enter" || event.key === " ")) { return; }
    const form = voteForm();
    if (event.target instanceof HTMLTextAreaElement) {
      if (event.key === "Enter" && event.ctrlKey && form) {
        event.preventDefault();
        submit(form);
      } else if (event.key === "Escape") {
        event.target.blur();
      }
      return;
    }
    if (event.ctrlKey || typingInField(event.target)) { return; }
    if (document.querySelector("dialog[open]")) { return; }
    const key = event.key.toLowerCase();
    if (key === "g" || key === "?") {
      event.preventDefault();
      document.getElementById("guidelines").showModal();
      return;
    }
    if (key === "u") {
      const undo = document.getElementById("undo-form");
      if (undo) { event.preventDefault(); submit(undo); }
      return;
    }
    if (!form) { return; }
    if (key === "k" || key === "f") {
      event.preventDefault();
      openFlagPanel(key === "k" ? "skip" : "flag");
      return;
    }
    if (key === "enter") {
      event.preventDefault();
      submit(form);
      return;
    }
    if (key === "r") {
      event.preventDefault();
      form.querySelector("textarea").focus();
      return;
    }
    const radio = form.querySelector('input[data-key="' + CSS.escape(key) + '"]');
    if (radio) {
      event.preventDefault();
      radio.checked = true;
      radio.dispatchEvent(new Event("change", { bubbles: true }));
    }
  });

  // htmx puts focus back on the element with the same id after a swap. For the rationale box
  // that would swallow the next comparison's shortcut keys as text, so the workbench lets go
  // of focus before it is replaced; the live region announces the new comparison instead.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const workbench = document.getElementById("workbench");
    const active = document.activeElement;
    if (workbench && event.detail.target === workbench && active instanceof HTMLElement &&
        workbench.contains(active)) {
      active.blur();
    }
  });

  // Announce each swapped-in comparison through the page's persistent live region.
  document.addEventListener("htmx:afterSettle", function (event) {
    const workbench = document.getElementById("workbench");
    const announcer = document.getElementById("announcer");
    if (!workbench || !announcer || !(event.target instanceof Node) ||
        !(event.target === workbench || workbench.contains(event.target) || event.target.contains(workbench))) { return; }
    const text = workbench.querySelector("[data-announce]");
    announcer.textContent = text ? text.textContent : "";
  });

  // Strength only means something for a decisive vote; grey it out otherwise.
  document.addEventListener("change", function (event) {
    const form = voteForm();
    if (!form || !(event.target instanceof HTMLInputElement) || event.target.name !== "choice") { return; }
    const decisive = event.target.value === "A" || event.target.value === "B";
    form.querySelector("fieldset.strength").disabled = !decisive;
  });

  // --- Idempotent submits and failures shown in place ---------------------------------------
  // Each vote carries a key made here once; a retry of the same vote (the form is not replaced
  // when a request fails) resends the same key, so the server stores it at most once and says
  // "already saved" if the first try got through.
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

  function failureText(kind, status) {
    // The request may have reached the server even when its answer did not come back, so
    // never claim a vote was not sent: say it could not be confirmed, and that a retry is safe.
    const unsure = " It may or may not have been saved; retrying is safe, a vote is never stored twice.";
    if (kind === "timeout") { return "No answer from the server in time." + unsure; }
    if (kind === "network") { return "The connection to the server failed." + unsure; }
    if (status >= 500) { return "The server had a problem (HTTP " + status + ")." + unsure; }
    return "The request was refused (HTTP " + status + "). Reload the page and try again.";
  }

  function showFailure(source, kind, status) {
    const workbench = document.getElementById("workbench");
    if (!workbench || !(source instanceof Element) || !workbench.contains(source)) { return; }
    let box = workbench.querySelector("[data-request-failure]");
    if (!box) {
      box = document.createElement("div");
      box.className = "notice error request-failure";
      box.setAttribute("role", "alert");
      box.setAttribute("data-request-failure", "");
      box.setAttribute("data-testid", "request-failure");
      workbench.insertBefore(box, workbench.firstChild);
    }
    const form = source.closest("form");
    box.replaceChildren();
    const text = document.createElement("span");
    text.textContent = failureText(kind, status);
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
})();
