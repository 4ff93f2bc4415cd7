// Guahao citizen pages: countdowns, live availability (server-sent events), and giving a
// held unit back when the patient step is left. Plain modern JS, no library; every page
// works without it (forms post normally), this only makes them live.
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var hold = document.getElementById("hold");
  var leaving = Boolean(hold); // whether leaving this page should give the held unit back

  function fmt(ms) {
    var s = Math.max(0, Math.ceil(ms / 1000));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    var mm = (h ? String(m).padStart(2, "0") : String(m)) + ":" + String(r).padStart(2, "0");
    return h ? h + ":" + mm : mm;
  }

  // Countdowns: data-ms is the time left by the platform's clock when the page was made.
  var started = performance.now();
  var timers = Array.prototype.slice.call(document.querySelectorAll(".countdown[data-ms]"));
  function tick() {
    var elapsed = performance.now() - started;
    timers = timers.filter(function (el) {
      var left = Number(el.dataset.ms) - elapsed;
      if (left > 0) { el.textContent = fmt(left); return true; }
      el.textContent = el.dataset.done || "0:00";
      el.dispatchEvent(new CustomEvent("countdown-done", { bubbles: true }));
      if (el.dataset.expireForm) {
        // the hold or the payment order is over: nothing on this step can succeed now
        Array.prototype.forEach.call(
          document.querySelectorAll("main form button, main form input, main form select"),
          function (b) { b.disabled = true; });
        var note = document.getElementById("hold-expired");
        if (note) { note.hidden = false; }
        leaving = false; // nothing left to give back
      }
      return false;
    });
    if (timers.length) { setTimeout(tick, 250); }
  }
  if (timers.length) { tick(); }

  // Live availability on a doctor's page.
  var schedule = document.querySelector(".schedule[data-live]");
  function showUnits(snapshot) {
    var left = schedule.dataset.left, full = schedule.dataset.full;
    Object.keys(snapshot.sessions).forEach(function (sid) {
      var s = snapshot.sessions[sid];
      var total = document.querySelector('[data-session-left="' + sid + '"]');
      if (total && s.released) { total.textContent = s.available ? left.replace("{n}", s.available) : full; }
      Object.keys(s.slots).forEach(function (slotId) {
        var n = s.slots[slotId];
        var button = document.querySelector('button[data-slot="' + slotId + '"]');
        var label = document.querySelector('[data-slot-left="' + slotId + '"]');
        if (!button || !s.released) { return; }
        button.disabled = !(n > 0 && s.status === "open");
        if (label) { label.textContent = n > 0 ? left.replace("{n}", n) : full; }
      });
      var wait = document.querySelector('[data-wait="' + sid + '"]');
      if (wait && s.released) { wait.hidden = !(s.available === 0 && s.status === "open"); }
      if (s.released) {
        var release = document.querySelector('[data-release="' + sid + '"]');
        if (release && release.parentNode) { release.parentNode.hidden = true; }
      }
    });
    schedule.dataset.version = String((Number(schedule.dataset.version) || 0) + 1);
  }
  if (schedule) {
    var dot = document.getElementById("live-state");
    var refresh = function () {
      fetch(schedule.dataset.units, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (snap) { if (snap) { showUnits(snap); } });
    };
    if (window.EventSource) {
      var source = new EventSource(schedule.dataset.live);
      source.addEventListener("units", function (e) { showUnits(JSON.parse(e.data)); });
      source.onopen = function () { if (dot) { dot.className = "live-dot on"; } };
      source.onerror = function () { if (dot) { dot.className = "live-dot"; } };
      window.addEventListener("pagehide", function () { source.close(); });
    }
    // At a release moment the page asks at once (and again shortly, for slow clocks).
    schedule.addEventListener("countdown-done", function () {
      refresh(); setTimeout(refresh, 1000); setTimeout(refresh, 3000);
    });
  }

  // The patient step: leaving it (back, another page, closing the tab) gives the unit back.
  if (hold) {
    // A form of the page (choose, add a patient, leave) says itself what happens next.
    Array.prototype.forEach.call(document.querySelectorAll("form"), function (form) {
      form.addEventListener("submit", function () { leaving = false; });
    });
    window.addEventListener("pagehide", function () {
      if (!leaving || !navigator.sendBeacon) { return; }
      var body = new FormData();
      body.append("csrf", csrf);
      navigator.sendBeacon(hold.dataset.leave, body);
      leaving = false;
    });
  }

  // Back (or forward) to a page kept in the browser's cache: units, holds and forms may be
  // stale (a hold key already used, a unit gone), so show where things stand now.
  window.addEventListener("pageshow", function (e) {
    if (e.persisted) { location.reload(); }
  });

  // Confirmation before irreversible buttons (退号).
  document.addEventListener("click", function (e) {
    var b = e.target.closest && e.target.closest("button[data-confirm]");
    if (b && !window.confirm(b.dataset.confirm)) { e.preventDefault(); }
  });
})();
