/* Staff console: live session counts. An element with data-live opens that server-sent
   event stream; each "counts" event carries every shown session's counts, written into the
   [data-count] cells under [data-session="id"]. Without EventSource the page stays as
   loaded (the numbers are correct as of the load). */
(function () {
  "use strict";
  var live = document.querySelector("[data-live]");
  if (!live || !window.EventSource) { return; }
  var dot = document.getElementById("live-state");
  var source = new EventSource(live.getAttribute("data-live"));
  source.addEventListener("counts", function (e) {
    var sessions = JSON.parse(e.data).sessions;
    Object.keys(sessions).forEach(function (sid) {
      document.querySelectorAll('[data-session="' + sid + '"]').forEach(function (holder) {
        holder.querySelectorAll("[data-count]").forEach(function (cell) {
          var value = sessions[sid][cell.getAttribute("data-count")];
          if (value !== undefined && cell.textContent !== String(value)) {
            cell.textContent = String(value);
          }
        });
      });
    });
    live.setAttribute("data-live-version", String((Number(live.getAttribute("data-live-version")) || 0) + 1));
  });
  source.onopen = function () { if (dot) { dot.className = "live-dot on"; } };
  source.onerror = function () { if (dot) { dot.className = "live-dot"; } };
  window.addEventListener("pagehide", function () { source.close(); });
})();
