// Keyboard shortcuts for the annotation workbench. Listeners sit on the document so they keep
// working after htmx swaps the workbench for the next comparison. What the rank page shares
// (guidelines, client keys, failures with Retry, announcements) is in bench.js.
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

  // Strength only means something for a decisive vote; grey it out otherwise.
  document.addEventListener("change", function (event) {
    const form = voteForm();
    if (!form || !(event.target instanceof HTMLInputElement) || event.target.name !== "choice") { return; }
    const decisive = event.target.value === "A" || event.target.value === "B";
    form.querySelector("fieldset.strength").disabled = !decisive;
  });
})();
