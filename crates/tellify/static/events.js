// The live tail of /events?live=1. Without this file the page is a search that can be
// reloaded. With it: one EventSource on the table body's data-tail URL; each `row` is a
// rendered <tr> (escaped by the server) put on top; at most KEPT rows stay. The browser
// reconnects on its own and sends Last-Event-ID, so the server resends what was missed.
"use strict";
(function () {
  var KEPT = 200;
  var body = document.querySelector("tbody[data-tail]");
  if (!body || !window.EventSource) return;
  var statusLine = document.getElementById("tail-status");
  var empty = document.getElementById("events-empty");
  var source = null;
  var received = 0;

  // `tone` "ok" is the calm state (the tail is live); anything else reads as a warning.
  function say(text, tone) {
    if (!statusLine) return;
    statusLine.textContent = text || "";
    statusLine.hidden = !text;
    statusLine.classList.toggle("live-ok", tone === "ok");
  }

  function trim() {
    var rows = body.querySelectorAll("tr");
    for (var i = rows.length - 1; i >= KEPT; i--) rows[i].remove();
  }

  function connect() {
    source = new EventSource(body.getAttribute("data-tail"));
    body.setAttribute("data-live-state", "connecting");
    source.addEventListener("ready", function () {
      body.setAttribute("data-live-state", "open");
      say("Live: new events appear at the top.", "ok");
    });
    source.addEventListener("row", function (event) {
      var seq = event.lastEventId;
      if (seq && body.querySelector('tr[data-seq="' + CSS.escape(seq) + '"]')) return;
      body.insertAdjacentHTML("afterbegin", event.data);
      if (empty) empty.hidden = true;
      trim();
      received += 1;
      body.setAttribute("data-received", String(received));
    });
    source.addEventListener("gap", function () {
      say("Some events arrived faster than this page could show them; search to see them all.");
    });
    source.addEventListener("signed-out", function () {
      source.close();
      window.location.href = "/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
    });
    source.addEventListener("error", function () {
      body.setAttribute("data-live-state", "reconnecting");
      say("Live tail paused; reconnecting…");
    });
  }

  connect();
  window.tellifyTail = {
    drop: function () { if (source) source.close(); body.setAttribute("data-live-state", "closed"); },
    restore: function () { if (source) source.close(); connect(); },
  };
})();
