// storehook dashboard: refreshes the overview's live part (store cards and
// recent notifications) in place, every second while a connection check or
// a backfill runs, and submits the store cards' buttons without leaving the
// page. Everything else works without scripts (the forms post and redirect).
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) return;
  var src = live.getAttribute("data-src");
  var seconds = parseInt(live.getAttribute("data-interval"), 10) || 5;
  var busy = false;
  var timer = null;

  function schedule() {
    if (timer) clearTimeout(timer);
    var running = live.querySelector("[data-running]") !== null;
    timer = setTimeout(refresh, running ? 1000 : seconds * 1000);
  }

  function refresh() {
    if (busy || document.hidden) { schedule(); return; }
    busy = true;
    // Keep the panels the operator opened or closed.
    var panels = {};
    live.querySelectorAll("details[id]").forEach(function (d) { panels[d.id] = d.open; });
    fetch(src, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html === null) return;
        live.innerHTML = html;
        live.querySelectorAll("details[id]").forEach(function (d) {
          if (Object.prototype.hasOwnProperty.call(panels, d.id)) d.open = panels[d.id];
        });
        document.documentElement.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* offline for a moment: try again next time */ })
      .then(function () { busy = false; schedule(); });
  }

  // The cards' buttons (Check connection, Recover, Cancel): post in place,
  // then show the card's new state at once.
  live.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.classList || !form.classList.contains("api-action")) return;
    e.preventDefault();
    form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      body: new URLSearchParams(new FormData(form))
    })
      .then(function (r) {
        // A refusal or an error: let the browser show the server's page.
        if (!r.ok) { form.submit(); return; }
        refresh();
      })
      .catch(function () { form.submit(); });
  });

  schedule();
  document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
})();
