// Seamline console: small progressive enhancements. Every page works without this file.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Forms that change something important ask first: <form data-confirm="Cancel this order?">.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  // A keyboard-wedge scanner types the code and Enter; keep the scan field focused and
  // selected after each lookup so the next scan replaces it.
  const scan = document.querySelector("input[data-scan]");
  if (scan) {
    scan.focus();
    scan.select();
  }
  // Buttons of a form being sent are disabled, so a double click sends it once.
  for (const form of document.querySelectorAll("form[method=post]")) {
    form.addEventListener("submit", () => {
      for (const button of form.querySelectorAll("button[type=submit]")) {
        window.setTimeout(() => { button.disabled = true; }, 0);
      }
    });
  }
});
