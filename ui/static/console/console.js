// The console's only script: copy buttons and the live trace list. Every
// page works without it (values stay selectable; the trace list has a
// reload link).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Copy buttons are hidden until JavaScript can make them work.
  for (const btn of document.querySelectorAll("button[data-copy]")) {
    btn.hidden = false;
    btn.setAttribute("aria-label", "Copy " + btn.dataset.copy);
    btn.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(btn.dataset.copy);
      } catch {
        // No clipboard permission: select the value so Ctrl+C works.
        const code = btn.previousElementSibling;
        const range = document.createRange();
        range.selectNodeContents(code);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
      }
      btn.textContent = "Copied";
      btn.classList.add("done");
      setTimeout(() => { btn.textContent = "Copy"; btn.classList.remove("done"); }, 1500);
    });
  }

  // The trace list follows the server's event stream.
  const flows = document.getElementById("flows");
  if (flows && flows.dataset.stream && "EventSource" in window) {
    const live = document.getElementById("live");
    const es = new EventSource(flows.dataset.stream);
    es.addEventListener("flows", (ev) => {
      flows.innerHTML = ev.data; // server-rendered, escaped HTML
      flows.dataset.updated = String(Date.now());
    });
    es.addEventListener("open", () => { if (live) live.hidden = false; });
    es.addEventListener("error", () => { if (live) live.hidden = true; });
  }
});
