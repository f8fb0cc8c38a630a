// The participant pages' only script: a copy button, busy buttons, and a refresh while photos
// are processing. Loaded from this site (the Content Security Policy allows nothing else); the
// pages work without it.
"use strict";

const POLL_SECONDS = 10;

function setUpCopyButtons() {
  for (const button of document.querySelectorAll("[data-copy]")) {
    const field = document.getElementById(button.dataset.copy);
    if (!field || !navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(field.value);
        button.textContent = "Copied";
      } catch {
        field.select();
      }
    });
  }
  for (const field of document.querySelectorAll("input[readonly]")) {
    field.addEventListener("focus", () => field.select());
  }
}

function setUpBusyButtons() {
  // Enrolling takes a few seconds: say so, and keep a second tap from posting twice.
  for (const form of document.querySelectorAll("form")) {
    form.addEventListener("submit", () => {
      const button = form.querySelector("button[data-busy]");
      if (!button) return;
      button.dataset.label = button.textContent;
      button.textContent = button.dataset.busy;
      button.disabled = true;
    });
  }
  // Back to a page kept by the browser: its buttons work again.
  window.addEventListener("pageshow", () => {
    for (const button of document.querySelectorAll("button[data-busy][disabled]")) {
      button.disabled = false;
      button.textContent = button.dataset.label || button.textContent;
    }
  });
}

function pollWhileProcessing() {
  const status = document.querySelector("[data-poll]");
  if (!status) return;
  const seen = status.dataset.processing;
  const poll = async () => {
    try {
      const answer = await fetch(status.dataset.poll, { cache: "no-store" });
      if (answer.ok) {
        const gallery = await answer.json();
        if (String(gallery.processing) !== seen) {
          window.location.reload();
          return;
        }
      }
    } catch {
      // Offline for a moment: try again at the next turn.
    }
    window.setTimeout(poll, POLL_SECONDS * 1000);
  };
  window.setTimeout(poll, POLL_SECONDS * 1000);
}

// A page the browser restores from its back/forward cache shows what was true when it was left:
// a photo since removed with a live "Not me", an event form already sent. Pages that say so (a
// meta tag; never the answer to a post, which a reload would send again) are asked for afresh.
const RELOAD_WHEN_RESTORED = 'meta[name="photoctl-restored"][content="reload"]';
window.addEventListener("pageshow", (event) => {
  if (event.persisted && document.querySelector(RELOAD_WHEN_RESTORED)) {
    window.location.reload();
  }
});

document.addEventListener("DOMContentLoaded", () => {
  setUpCopyButtons();
  setUpBusyButtons();
  pollWhileProcessing();
});
