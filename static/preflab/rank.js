// The ranking page: order K responses best first, with the keyboard or by dragging (SortableJS).
//
// The list's DOM order is the ranking, top is best; a response with data-tied="true" is tied
// with the one above it, so a tie group is a run of tied responses under its first one. Moving
// a response (keys, drag) always makes it a group of its own at its new place. After every
// change the hidden `ranking` field gets the canonical positions best first, tie groups as
// lists ([2, [0, 3], 1]), the badges show each response's position, and the live region says
// where the moved response is. Listeners sit on the document: htmx swaps the bench for each task.
(function () {
  "use strict";

  function rankList() { return document.querySelector("[data-rank-list]"); }
  function rankForm() { return document.getElementById("rank-form"); }
  function itemsOf(list) { return Array.from(list.querySelectorAll(":scope > .rank-item")); }
  function isTied(item) { return item.dataset.tied === "true"; }
  function setTied(item, tied) { item.dataset.tied = tied ? "true" : "false"; }
  function nameOf(item) { return "Response " + item.dataset.letter; }

  function submit(form) {
    if (window.PrefLabBench) { window.PrefLabBench.submit(form); } else { form.requestSubmit(); }
  }

  function announce(text) {
    const announcer = document.getElementById("announcer");
    if (announcer) { announcer.textContent = text; }
  }

  function groupsOf(list) {
    const groups = [];
    itemsOf(list).forEach(function (item, index) {
      if (index === 0 || !isTied(item)) { groups.push([]); }
      groups[groups.length - 1].push(item);
    });
    return groups;
  }

  function describe(item, groups) {
    const at = groups.findIndex(function (group) { return group.includes(item); });
    const others = groups[at].filter(function (other) { return other !== item; }).map(nameOf);
    return "position " + (at + 1) + " of " + groups.length +
      (others.length ? ", tied with " + others.join(" and ") : "");
  }

  // Badges, screen-reader text and the hidden field, from the list as it stands.
  function refresh(list) {
    const items = itemsOf(list);
    if (items.length) { setTied(items[0], false); }
    const groups = groupsOf(list);
    groups.forEach(function (group, at) {
      group.forEach(function (item, index) {
        item.querySelector("[data-place]").textContent = (at + 1) + (group.length > 1 ? "=" : "");
        item.querySelector("[data-place-text]").textContent = ": " + describe(item, groups);
        item.classList.toggle("tied", index > 0);
        item.classList.toggle("tie-head", index === 0 && group.length > 1);
      });
    });
    const ranking = groups.map(function (group) {
      const positions = group.map(function (item) { return Number(item.dataset.position); })
        .sort(function (a, b) { return a - b; });
      return positions.length === 1 ? positions[0] : positions;
    });
    const field = list.closest("form").querySelector("[data-ranking]");
    if (field) { field.value = JSON.stringify(ranking); }
    return groups;
  }

  function settle(list, item) {
    const groups = refresh(list);
    item.focus();
    announce(nameOf(item) + ": " + describe(item, groups) + ".");
  }

  // Taking a response out of its place: the one below it was tied to it only if it headed its
  // group; then the one below heads what is left of the group.
  function detach(item) {
    const below = item.nextElementSibling;
    if (below && isTied(below) && !isTied(item)) { setTied(below, false); }
  }

  // Put a response at `slot` (0-based, top is best) as a group of its own.
  function moveTo(item, slot) {
    const list = item.parentElement;
    const items = itemsOf(list);
    const from = items.indexOf(item);
    const target = Math.max(0, Math.min(slot, items.length - 1));
    if (target === from && !isTied(item)) { settle(list, item); return; }
    detach(item);
    const rest = items.filter(function (other) { return other !== item; });
    const before = rest[target] || null;
    list.insertBefore(item, before);
    setTied(item, false);
    if (before) { setTied(before, false); }
    settle(list, item);
  }

  function toggleTie(item) {
    const list = item.parentElement;
    if (!item.previousElementSibling) {
      announce(nameOf(item) + " is first: there is no response above to tie it with.");
      return;
    }
    setTied(item, !isTied(item));
    settle(list, item);
  }

  function enhance() {
    const list = rankList();
    if (!list || list.dataset.enhanced === "true") { return; }
    list.dataset.enhanced = "true";
    list.classList.add("enhanced");
    // The place menus are the page's order without this script; the list is the order now.
    list.querySelectorAll("[data-place-fallback]").forEach(function (label) {
      label.hidden = true;
      label.querySelectorAll("select").forEach(function (select) { select.disabled = true; });
    });
    refresh(list);
    if (typeof window.Sortable !== "function") { return; }
    let dragged = null;
    window.Sortable.create(list, {
      handle: ".drag-handle",
      draggable: ".rank-item",
      animation: 120,
      onStart: function (event) {
        dragged = { below: event.item.nextElementSibling, tied: isTied(event.item) };
      },
      onEnd: function (event) {
        const item = event.item;
        if (event.oldIndex === event.newIndex || !dragged) { settle(list, item); return; }
        // As detach() and moveTo(), for a response that Sortable already moved.
        const below = dragged.below;
        if (below && below !== item && isTied(below) && !dragged.tied) { setTied(below, false); }
        setTied(item, false);
        if (item.nextElementSibling) { setTied(item.nextElementSibling, false); }
        dragged = null;
        settle(list, item);
      },
    });
  }

  function typingInField(target) {
    return target instanceof HTMLElement &&
      (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName) &&
        !(target instanceof HTMLInputElement && target.type === "radio"));
  }

  function openSkipPanel() {
    const panel = document.getElementById("rank-skip-panel");
    if (!panel) { return; }
    panel.open = true;
    const reason = panel.querySelector('input[name="reason"]:checked') ||
      panel.querySelector('input[name="reason"]');
    if (reason) { reason.focus(); }
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.metaKey) { return; }
    const target = event.target instanceof Element ? event.target : null;
    const skipPanel = target ? target.closest("#rank-skip-panel") : null;
    if (skipPanel) {
      const skipForm = skipPanel.querySelector("form");
      if (event.key === "Escape" && skipPanel.open) {
        event.preventDefault();
        skipPanel.open = false;
        skipPanel.querySelector("summary").focus();
      } else if (skipForm && skipForm.contains(target) && event.key === "Enter" &&
                 (!(target instanceof HTMLTextAreaElement) || event.ctrlKey)) {
        event.preventDefault();
        submit(skipForm);
      }
      return;  // inside the panel, keys type or work its controls
    }
    if (event.ctrlKey || typingInField(target) || document.querySelector("dialog[open]")) { return; }
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key === "g" || key === "?") {
      event.preventDefault();
      document.getElementById("guidelines").showModal();
      return;
    }
    if (key === "u") {
      const undo = document.getElementById("rank-undo-form");
      if (undo) { event.preventDefault(); submit(undo); }
      return;
    }
    const form = rankForm();
    const list = rankList();
    if (!form || !list) { return; }
    if (key === "s") {
      event.preventDefault();
      openSkipPanel();
      return;
    }
    if (key === "Enter") {
      // Buttons and links do their own thing on Enter.
      if (target && target.closest("button, a, summary")) { return; }
      event.preventDefault();
      refresh(list);
      submit(form);
      return;
    }
    const item = target ? target.closest(".rank-item") : null;
    const up = key === "ArrowUp" || key === "k";
    const down = key === "ArrowDown" || key === "j";
    if (!item || !list.contains(item)) {
      if (up || down) {
        const first = itemsOf(list)[0];
        if (first) { event.preventDefault(); first.focus(); announce(nameOf(first) + ": " + describe(first, groupsOf(list)) + "."); }
      }
      return;
    }
    const items = itemsOf(list);
    const index = items.indexOf(item);
    if (/^[1-9]$/.test(key) && Number(key) <= items.length) {
      event.preventDefault();
      moveTo(item, Number(key) - 1);
    } else if (up) {
      event.preventDefault();
      moveTo(item, index - 1);
    } else if (down) {
      event.preventDefault();
      moveTo(item, index + 1);
    } else if (key === "t") {
      event.preventDefault();
      toggleTie(item);
    }
  });

  // The hidden field is kept current, but a submit from the button reads the list once more.
  document.addEventListener("submit", function (event) {
    const list = rankList();
    if (list && event.target === rankForm() && list.dataset.enhanced === "true") { refresh(list); }
  }, true);

  enhance();
  document.addEventListener("DOMContentLoaded", enhance);
  document.addEventListener("htmx:afterSettle", enhance);
})();
