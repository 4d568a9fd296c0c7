// storehook dashboard: refreshes the overview's live part (store cards and
// recent notifications) in place. Everything else works without scripts.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) return;
  var src = live.getAttribute("data-src");
  var seconds = parseInt(live.getAttribute("data-interval"), 10) || 5;
  var busy = false;

  function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    // Keep the setup panels the operator opened or closed.
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
      .then(function () { busy = false; });
  }

  setInterval(refresh, seconds * 1000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
})();
