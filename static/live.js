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

  function byId(list) {
    var found = {};
    list.forEach(function (item) { found[item.plugin_id] = item; });
    return found;
  }

  function noticeFor(n, div) {
    if (div && div.getAttribute("data-state") === n.state && div.textContent.indexOf(n.text) >= 0)
      return div;  // unchanged: leave it alone for whoever is reading it
    div = div || el("div", undefined, { "class": "menu-notice", "data-notice": n.plugin_id });
    div.setAttribute("data-state", n.state);
    div.replaceChildren(el("h2", n.name), el("p", n.text));
    return div;
  }

  function entriesFor(m) {
    var ul = el("ul", undefined, { "aria-labelledby": "menu-" + m.plugin_id,
                                   "data-plugin": m.plugin_id });
    m.entries.forEach(function (e) {
      var li = el("li");
      li.appendChild(el("a", e.label, { href: e.href }));
      ul.appendChild(li);
    });
    return [el("h2", m.name, { id: "menu-" + m.plugin_id }), ul];
  }

  // Each plugin keeps its place in the menu's order (the answer's "order"): its entries while it
  // is active, its notice in their place while it is not; the hidden entries wait behind it.
  function showMenu(data) {
    var menus = byId(data.menu), notices = byId(data.notices), said = [];
    var wanted = [];
    data.order.forEach(function (id) {
      var ul = nav.querySelector('ul[data-plugin="' + CSS.escape(id) + '"]');
      var parts = ul ? [document.getElementById("menu-" + id), ul].filter(Boolean) : [];
      var div = nav.querySelector('.menu-notice[data-notice="' + CSS.escape(id) + '"]');
      if (notices[id]) {
        var n = notices[id];
        if (!div || div.getAttribute("data-state") !== n.state) said.push(n.text);
        wanted.push(noticeFor(n, div));
        parts.forEach(function (node) { node.hidden = true; wanted.push(node); });
      } else {
        if (div) { div.remove(); said.push(menus[id].name + " is available again."); }
        if (!parts.length) parts = entriesFor(menus[id]);
        parts.forEach(function (node) { node.hidden = false; wanted.push(node); });
      }
    });
    nav.querySelectorAll("ul[data-plugin], .menu-notice[data-notice]").forEach(function (node) {
      if (wanted.indexOf(node) >= 0) return;  // gone from the menu altogether
      var id = node.getAttribute("data-plugin");
      var heading = id && document.getElementById("menu-" + id);
      if (heading) heading.remove();
      node.remove();
    });
    var anchor = box;
    for (var i = wanted.length - 1; i >= 0; i--) {  // move only what is out of place
      if (wanted[i].nextElementSibling !== anchor) nav.insertBefore(wanted[i], anchor);
      anchor = wanted[i];
    }
    var empty = nav.querySelector("[data-menu-empty]");
    if (empty) empty.hidden = wanted.length > 0;
    if (said.length) box.textContent = said.join(" ");
    document.querySelectorAll("[data-menu-alert]").forEach(function (n) {
      n.textContent = data.alert;
      n.hidden = !data.alert;
    });
  }

  function each(attr, id, fn) {
    document.querySelectorAll("[" + attr + '="' + CSS.escape(id) + '"]').forEach(fn);
  }

  // The plugin page's summary lines, as services/plugin_page.summary_parts says them.
  var SUMMARY = { "data-live-uptime": "uptime", "data-live-last-failure": "last_failure",
                  "data-live-version": "version", "data-live-token-used": "token_used" };

  function fill(node, parts) {
    var said = JSON.stringify(parts);
    if (node.getAttribute("data-said") === said) return;
    node.setAttribute("data-said", said);
    node.replaceChildren.apply(node, parts.map(function (part) {
      if (typeof part === "string") return document.createTextNode(part);
      if (part.strong !== undefined) return el("b", part.strong);
      return el("time", part.ago, { datetime: part.at, title: part.title });
    }));
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
      each("data-live-health", id, function (n) { fill(n, p.health_parts); });
      each("data-live-changed", id, function (n) {
        n.hidden = n.getAttribute("data-state") === p.state;
      });
      if (p.summary) {
        Object.keys(SUMMARY).forEach(function (attr) {
          each(attr, id, function (n) { fill(n, p.summary[SUMMARY[attr]]); });
        });
      }
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
    document.querySelectorAll("[data-live-uptime]").forEach(function (n) {
      var id = n.getAttribute("data-live-uptime");
      if (ids.indexOf(id) < 0) ids.push(id);
      ids.summary = (ids.summary || []).concat([id]);
    });
    var asks = [getJSON(box.getAttribute("data-live-menu")).then(function (d) {
      if (d) showMenu(d);
    })];
    if (ids.length) {
      var query = ids.map(function (id) { return "plugin=" + encodeURIComponent(id); })
        .concat((ids.summary || []).map(function (id) {
          return "summary=" + encodeURIComponent(id);
        }));
      asks.push(getJSON(box.getAttribute("data-live-console") + "?" + query.join("&"))
        .then(function (d) { if (d) showConsole(d); }));
    }
    Promise.all(asks).then(function () { setTimeout(tick, every); });
  }

  document.body.setAttribute("data-live", "on");  // lets a test know the script runs
  setTimeout(tick, every);
})();
