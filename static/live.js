// Keeps plugin states, health, migration progress and the menu current without a reload
// (issue 17). Pages work without it: it polls JSON the core serves (/shell/live for the
// person's own menu, /console/live for the plugins a console page shows) and changes text,
// attributes and elements built with textContent, never markup from the answer.
(function () {
  "use strict";
  var box = document.getElementById("menu-notices");
  if (!box || !window.fetch) return;
  var every = 1000 * (parseFloat(box.getAttribute("data-live-interval")) || 5);
  var nav = box.parentElement;

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", cache: "no-store",
                        headers: { Accept: "application/json" }, redirect: "manual" })
      .then(function (r) {
        var json = (r.headers.get("Content-Type") || "").indexOf("application/json") === 0;
        return r.ok && json ? r.json() : null;
      })
      .catch(function () { return null; });
  }

  function el(tag, text, attrs) {
    var node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }

  function showMenu(data) {
    var shown = {};
    data.menu.forEach(function (m) { shown[m.plugin_id] = m; });
    nav.querySelectorAll("ul[data-plugin]").forEach(function (ul) {
      var id = ul.getAttribute("data-plugin");
      var gone = !shown[id];
      ul.hidden = gone;
      var heading = document.getElementById("menu-" + id);
      if (heading) heading.hidden = gone;
      delete shown[id];
    });
    Object.keys(shown).forEach(function (id) {  // back, or new, since the page loaded
      var m = shown[id];
      var ul = el("ul", undefined, { "data-plugin": id, "aria-labelledby": "menu-" + id });
      m.entries.forEach(function (e) {
        var li = el("li");
        li.appendChild(el("a", e.label, { href: e.href }));
        ul.appendChild(li);
      });
      nav.insertBefore(el("h2", m.name, { id: "menu-" + id }), box);
      nav.insertBefore(ul, box);
    });
    var said = JSON.stringify(data.notices);
    if (box.getAttribute("data-said") === said) return;  // unchanged: nothing to re-announce
    box.setAttribute("data-said", said);
    box.replaceChildren.apply(box, data.notices.map(function (n) {
      var div = el("div", undefined, { "class": "menu-notice", "data-notice": n.plugin_id,
                                      "data-state": n.state });
      div.appendChild(el("h2", n.name));
      div.appendChild(el("p", n.text));
      return div;
    }));
  }

  function each(attr, id, fn) {
    document.querySelectorAll("[" + attr + '="' + CSS.escape(id) + '"]').forEach(fn);
  }

  function showConsole(data) {
    Object.keys(data.plugins).forEach(function (id) {
      var p = data.plugins[id];
      each("data-live-state", id, function (n) {
        n.textContent = p.state;
        n.className = "state state-" + p.state;
      });
      each("data-live-meaning", id, function (n) { n.textContent = p.why; });
      each("data-live-effects", id, function (n) { n.textContent = p.effects.join(" · "); });
      each("data-live-health", id, function (n) { n.textContent = p.health; });
      each("data-live-changed", id, function (n) {
        n.hidden = n.getAttribute("data-state") === p.state;
      });
      if (p.migration) {
        each("data-live-migration", id, function (n) { n.textContent = p.migration.state; });
        each("data-live-progress", id, function (n) { n.textContent = p.migration.progress; });
      }
    });
  }

  function tick() {
    if (document.hidden) return setTimeout(tick, every);
    var ids = [];
    document.querySelectorAll("[data-live-state]").forEach(function (n) {
      var id = n.getAttribute("data-live-state");
      if (ids.indexOf(id) < 0) ids.push(id);
    });
    var asks = [getJSON(box.getAttribute("data-live-menu")).then(function (d) {
      if (d) showMenu(d);
    })];
    if (ids.length) {
      var query = ids.map(function (id) { return "plugin=" + encodeURIComponent(id); });
      asks.push(getJSON(box.getAttribute("data-live-console") + "?" + query.join("&"))
        .then(function (d) { if (d) showConsole(d); }));
    }
    Promise.all(asks).then(function () { setTimeout(tick, every); });
  }

  document.body.setAttribute("data-live", "on");  // lets a test know the script runs
  setTimeout(tick, every);
})();
