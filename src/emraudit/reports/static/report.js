(function () {
  "use strict";
  var dataEl = document.getElementById("case-data");
  var table = document.getElementById("cases-table");
  if (!dataEl || !table) { return; }
  var rows = JSON.parse(dataEl.textContent);
  var tbody = table.querySelector("tbody");
  var heads = Array.prototype.slice.call(table.querySelectorAll("th[data-key]"));
  var shown = document.getElementById("cases-shown");
  var q = document.getElementById("f-q");
  var selects = Array.prototype.slice.call(document.querySelectorAll("select[data-field]"));
  var sortKey = "sevRank", sortDir = -1;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function cell(tr, cls) { var td = el("td", cls); tr.appendChild(td); return td; }

  function render(list) {
    var frag = document.createDocumentFragment();
    list.forEach(function (r) {
      var tr = el("tr");
      tr.setAttribute("data-id", r.id);
      cell(tr).appendChild(el("span", "sev sev-" + r.sev, r.sevLabel));
      var a = el("a", "code", r.id);
      a.setAttribute("href", r.href);
      cell(tr).appendChild(a);
      var u = cell(tr);
      u.appendChild(el("b", null, r.user));
      if (r.userName) { u.appendChild(document.createTextNode(" " + r.userName)); }
      u.appendChild(el("div", "muted", [r.dept, r.role].filter(Boolean).join(" · ")));
      var p = cell(tr);
      p.appendChild(document.createTextNode(r.patient));
      if (r.flags && r.flags.length) {
        var fl = p.appendChild(el("div"));
        r.flags.forEach(function (f) { fl.appendChild(el("span", "flag", f)); });
      }
      cell(tr, null).textContent = r.detectors;
      cell(tr, null).textContent = r.item;
      cell(tr, null).textContent = r.first;
      cell(tr, "num").textContent = r.events;
      cell(tr).appendChild(el("span", "st st-" + r.status, r.statusLabel));
      cell(tr, "sum").textContent = r.summary;
      frag.appendChild(tr);
    });
    while (tbody.firstChild) { tbody.removeChild(tbody.firstChild); }
    tbody.appendChild(frag);
    if (shown) { shown.textContent = String(list.length); }
  }

  function cmp(a, b) {
    var x = a[sortKey], y = b[sortKey];
    if (typeof x === "number" && typeof y === "number") { return (x - y) * sortDir; }
    x = String(x === null || x === undefined ? "" : x);
    y = String(y === null || y === undefined ? "" : y);
    return x.localeCompare(y) * sortDir;
  }

  function apply() {
    var text = q ? q.value.trim().toLowerCase() : "";
    var list = rows.filter(function (r) {
      for (var i = 0; i < selects.length; i++) {
        var s = selects[i], v = s.value;
        if (v && String(r[s.getAttribute("data-field")]).split(", ").indexOf(v) < 0) { return false; }
      }
      if (!text) { return true; }
      return [r.id, r.user, r.userName, r.dept, r.patient, r.detectors, r.summary, r.statusLabel]
        .join(" ").toLowerCase().indexOf(text) >= 0;
    });
    list.sort(function (a, b) {
      return cmp(a, b) || (b.score - a.score) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    });
    heads.forEach(function (h) {
      if (h.getAttribute("data-key") === sortKey) {
        h.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      } else { h.removeAttribute("aria-sort"); }
    });
    render(list);
  }

  heads.forEach(function (h) {
    h.addEventListener("click", function () {
      var k = h.getAttribute("data-key");
      if (k === sortKey) { sortDir = -sortDir; } else { sortKey = k; sortDir = h.getAttribute("data-type") === "num" ? -1 : 1; }
      apply();
    });
  });
  if (q) { q.addEventListener("input", apply); }
  selects.forEach(function (s) { s.addEventListener("change", apply); });
  apply();
}());
