// Small progressive enhancements for every page. Each works without this file too: menus are
// <details>, hidden form fields are only hidden when the script runs, and the server checks
// every field whether it was shown or not.
(function () {
  "use strict";

  // Menus: close on Escape and on a click elsewhere.
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details[data-menu][open]").forEach(function (menu) {
      if (!(event.target instanceof Node) || !menu.contains(event.target)) { menu.open = false; }
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") { return; }
    document.querySelectorAll("details[data-menu][open]").forEach(function (menu) {
      menu.open = false;
      menu.querySelector("summary").focus();
    });
  });

  // A read-only secret selects itself when focused, ready to copy.
  document.addEventListener("focusin", function (event) {
    if (event.target instanceof HTMLInputElement && event.target.hasAttribute("data-select-on-focus")) {
      event.target.select();
    }
  });

  // Fields that apply only for some value of another field:
  //   <div data-show-when="FIELD_NAME" data-show-values="a b"> or data-hide-values="all">.
  function applies(rule, form) {
    const control = form.elements.namedItem(rule.dataset.showWhen);
    if (!control) { return true; }
    const value = control.value;
    if (rule.dataset.showValues) { return rule.dataset.showValues.split(" ").includes(value); }
    if (rule.dataset.hideValues) { return !rule.dataset.hideValues.split(" ").includes(value); }
    return true;
  }

  function refresh(form) {
    form.querySelectorAll("[data-show-when]").forEach(function (rule) {
      const show = applies(rule, form);
      rule.hidden = !show;
      // A hidden field is not sent, so it can neither be required nor fail validation.
      rule.querySelectorAll("input, select, textarea").forEach(function (field) { field.disabled = !show; });
    });
  }

  function refreshAll(root) {
    root.querySelectorAll("form").forEach(function (form) {
      if (form.querySelector("[data-show-when]")) { refresh(form); }
    });
  }

  document.addEventListener("change", function (event) {
    const target = event.target;
    if (target instanceof HTMLElement && target.closest("form")) {
      const form = target.closest("form");
      if (form.querySelector("[data-show-when]")) { refresh(form); }
    }
  });
  document.addEventListener("DOMContentLoaded", function () { refreshAll(document); });
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target instanceof Element) { refreshAll(event.target); }
  });
})();
