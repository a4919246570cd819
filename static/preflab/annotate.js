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

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.metaKey) { return; }
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

  // Never leave a request hanging silently: show the failure inside the workbench.
  document.addEventListener("htmx:sendError", function () {
    const line = document.querySelector("#workbench .statusline");
    if (line) { line.insertAdjacentHTML("beforeend", '<span class="notice error" role="alert">Network error: your vote was not sent. Press Enter to retry.</span>'); }
  });
})();
