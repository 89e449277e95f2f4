// tellify dashboard enhancements. Every page works without this file; it adds:
// - the live region ([data-live]): one EventSource per tab; each (re)connect and each
//   change brings a full snapshot of the region, swapped in unless someone is typing in
//   a form inside it (then it waits until they leave the field); selected rows stay
//   selected;
// - the keyboard: j/k move, x selects, a acknowledges, s shelves, Enter opens, / filters,
//   ? shows the keys.
"use strict";
(function () {
  var region = document.querySelector("[data-live]");
  var statusLine = document.getElementById("live-status");
  var source = null;
  var pending = null;
  var snapshots = 0;

  function say(text) {
    if (!statusLine) return;
    statusLine.textContent = text || "";
    statusLine.hidden = !text;
  }

  function typingInside(element) {
    var active = document.activeElement;
    if (!active || !element.contains(active)) return false;
    var tag = active.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT") return true;
    return tag === "INPUT" && !/^(checkbox|radio|button|submit|hidden)$/.test(active.type);
  }

  function currentId() {
    var row = document.querySelector("tr.current[data-alert]");
    return row ? row.getAttribute("data-alert") : null;
  }

  function apply(html) {
    if (typingInside(region)) {
      pending = html;
      return;
    }
    pending = null;
    var checked = {};
    region.querySelectorAll("input[type=checkbox][name=id]:checked").forEach(function (box) {
      checked[box.value] = true;
    });
    var current = currentId();
    region.innerHTML = html;
    region.querySelectorAll("input[type=checkbox][name=id]").forEach(function (box) {
      if (checked[box.value]) box.checked = true;
    });
    if (current) {
      var row = region.querySelector('tr[data-alert="' + CSS.escape(current) + '"]');
      if (row) row.classList.add("current");
    }
    snapshots += 1;
    region.setAttribute("data-snapshots", String(snapshots));
  }

  function connect() {
    if (!region || !window.EventSource) return;
    source = new EventSource(region.getAttribute("data-live"));
    region.setAttribute("data-live-state", "connecting");
    source.addEventListener("open", function () {
      region.setAttribute("data-live-state", "open");
      say("");
    });
    source.addEventListener("snapshot", function (event) {
      apply(event.data);
    });
    source.addEventListener("signed-out", function () {
      source.close();
      window.location.href = "/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
    });
    source.addEventListener("gone", function () {
      source.close();
      region.setAttribute("data-live-state", "gone");
      say("This is gone: it was removed or you may no longer see it.");
    });
    source.addEventListener("error", function () {
      region.setAttribute("data-live-state", "reconnecting");
      say("Live updates paused; reconnecting…");
    });
  }

  if (region) {
    region.addEventListener("focusout", function () {
      setTimeout(function () {
        if (pending !== null && !typingInside(region)) apply(pending);
      }, 0);
    });
    connect();
    // For tests and for a laptop waking up: drop the stream, and bring it back.
    window.tellifyLive = {
      drop: function () { if (source) source.close(); region.setAttribute("data-live-state", "closed"); },
      restore: function () { if (source) source.close(); connect(); },
    };
  }

  // ---- keyboard ----
  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("tr[data-alert]"));
  }

  function move(step) {
    var all = rows();
    if (!all.length) return;
    var index = all.findIndex(function (row) { return row.classList.contains("current"); });
    all.forEach(function (row) { row.classList.remove("current"); });
    index = index < 0 ? 0 : Math.max(0, Math.min(all.length - 1, index + step));
    all[index].classList.add("current");
    all[index].focus();
    all[index].scrollIntoView({ block: "nearest" });
  }

  function selected() {
    return document.querySelectorAll("input[type=checkbox][name=id]:checked");
  }

  function act(key) {
    var bulk = document.getElementById("bulk");
    if (bulk && selected().length) {
      bulk.querySelector("[name=action]").value = key === "a" ? "ack" : "shelve";
      bulk.requestSubmit();
      return true;
    }
    var row = document.querySelector("tr.current[data-alert]");
    var scope = row || (document.getElementById("alert-body") ? document : null);
    if (!scope) return false;
    var button = scope.querySelector('button[data-key="' + key + '"]');
    if (button) { button.click(); return true; }
    return false;
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    var tag = target && target.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable)) {
      if (event.key === "Escape") target.blur();
      return;
    }
    var handled = true;
    switch (event.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "x": {
        var row = document.querySelector("tr.current[data-alert]");
        var box = row && row.querySelector("input[type=checkbox]");
        if (box) box.checked = !box.checked; else handled = false;
        break;
      }
      case "a": handled = act("a"); break;
      case "s": handled = act("s"); break;
      case "Enter": {
        var current = document.querySelector("tr.current[data-alert] a.open");
        if (current) current.click(); else handled = false;
        break;
      }
      case "/": {
        var filter = document.getElementById("filter") || document.querySelector("main input, main select");
        if (filter) filter.focus(); else handled = false;
        break;
      }
      case "?": {
        var keys = document.getElementById("keys");
        if (keys && keys.showModal) keys.showModal(); else handled = false;
        break;
      }
      default: handled = false;
    }
    if (handled) event.preventDefault();
  });
})();
