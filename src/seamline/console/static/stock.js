// Seamline console: live stock on a variant page. The page is complete without this file;
// with it, the table and the picture follow the console's stock stream (Server-Sent Events).
"use strict";

(() => {
  const OK = "#17794a", WARN = "#a15c00", BAD = "#b42318";
  // Kept in step with products.py (dot_radius, dot_fill).
  const radius = (available) => Math.round((6 + Math.min(12, 2.2 * Math.sqrt(Math.max(available, 0)))) * 10) / 10;
  const fill = (available) => (available <= 0 ? BAD : available <= 2 ? WARN : OK);

  function setText(root, field, value) {
    for (const el of root.querySelectorAll(`[data-field="${field}"]`)) el.textContent = String(value);
  }

  function badge(kind, text) {
    const span = document.createElement("span");
    span.className = kind ? `badge ${kind}` : "badge";
    span.textContent = text;
    return span;
  }

  function updatePickup(row, available) {
    const cell = row.querySelector('[data-field="pickup"]');
    if (!cell || row.dataset.pickupOpen !== "1") return;
    const note = available > 0 ? ` ${row.dataset.pickupNote || ""}` : " none available";
    cell.replaceChildren(badge(available > 0 ? "ok" : "bad", available > 0 ? "Yes" : "No"), document.createTextNode(note));
  }

  function updateDot(group, available) {
    const shape = group.querySelector("[data-shape]");
    if (!shape) return;
    const r = radius(available);
    shape.setAttribute("fill", fill(available));
    if (shape.dataset.shape === "square") {
      const x = Number(group.dataset.x), y = Number(group.dataset.y);
      shape.setAttribute("x", String(x - r));
      shape.setAttribute("y", String(y - r));
      shape.setAttribute("width", String(2 * r));
      shape.setAttribute("height", String(2 * r));
    } else {
      shape.setAttribute("r", String(r));
    }
  }

  function apply(section, status, data) {
    const loc = CSS.escape(String(data.location_id || ""));
    const row = section.querySelector(`tr[data-loc="${loc}"]`);
    const group = section.querySelector(`g[data-loc="${loc}"]`);
    if (data.variant) {
      setText(section, "total-on_hand", data.variant.on_hand);
      setText(section, "total-available", data.variant.available);
    }
    if (!row) {
      status.textContent = "Stock changed at a location not shown here: reload the page to see it.";
      return;
    }
    for (const field of ["on_hand", "reserved", "available"]) setText(row, field, data[field]);
    updatePickup(row, data.available);
    if (group) {
      setText(group, "available", data.available);
      updateDot(group, data.available);
    }
    row.classList.add("changed");
    window.setTimeout(() => row.classList.remove("changed"), 1500);
    const name = row.querySelector("th") ? row.querySelector("th").textContent.trim() : "";
    status.textContent = `${name}: ${data.available} available, ${data.on_hand} on hand.`;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const section = document.querySelector("section[data-stream]");
    const status = document.getElementById("stock-live");
    if (!section || !status || !("EventSource" in window)) return;
    const source = new EventSource(section.dataset.stream);
    source.addEventListener("open", () => {
      status.dataset.state = "live";
      status.textContent = "Live: the figures update as stock changes.";
    });
    source.addEventListener("error", () => {
      status.dataset.state = "lost";
      status.textContent = "Live updates paused; reconnecting…";
    });
    source.addEventListener("inventory.changed", (event) => {
      try {
        apply(section, status, JSON.parse(event.data));
      } catch (err) {
        console.error(err);
      }
    });
    source.addEventListener("inventory.resync", () => {
      status.dataset.state = "stale";
      status.textContent = "Some changes were missed: reload the page for exact figures.";
    });
    window.addEventListener("pagehide", () => source.close());
  });
})();
