// Keyboard shortcuts for the review page. Every action is a plain link or form post: the page works without
// this file, it only makes the keys press the buttons.
"use strict";

function byId(id) { return document.getElementById(id); }

function openEditor() {
  const editor = byId("editor");
  if (!editor) return;
  editor.hidden = false;
  editor.querySelector("textarea").focus();
}

function closeEditor() {
  const editor = byId("editor");
  if (!editor) return;
  editor.hidden = true;
  document.activeElement.blur();
}

function press(id) {
  const el = byId(id);
  if (el) el.click();
}

document.addEventListener("DOMContentLoaded", () => {
  const edit = byId("edit");
  if (edit) edit.addEventListener("click", openEditor);
  const cancel = byId("cancel");
  if (cancel) cancel.addEventListener("click", closeEditor);
  // A changed filter applies at once.
  for (const select of document.querySelectorAll("#filters select")) {
    select.addEventListener("change", () => select.form.submit());
  }
});

document.addEventListener("keydown", (ev) => {
  const typing = ev.target.closest && ev.target.closest("textarea, input, select");
  if (typing) {
    if (ev.key === "Escape") {
      closeEditor();
    } else if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey) && ev.target.closest("#editor")) {
      ev.preventDefault();
      press("save");
    }
    return;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const keys = { a: "accept", r: "reject", j: "next", k: "prev" };
  if (keys[ev.key]) {
    ev.preventDefault();
    press(keys[ev.key]);
  } else if (ev.key === "e") {
    ev.preventDefault();
    openEditor();
  } else if (ev.key === "/") {
    ev.preventDefault();
    const first = document.querySelector("#filters select");
    if (first) first.focus();
  }
});
