(function () {
  "use strict";
  document.documentElement.setAttribute("data-js", "on");

  function key(row, index) {
    var cell = row.cells[index];
    var sort = cell ? cell.getAttribute("data-sort") : "";
    return sort === null ? cell.textContent.trim() : sort;
  }

  function compare(a, b) {
    var x = Number(a), y = Number(b);
    var xNumber = a !== "" && isFinite(x), yNumber = b !== "" && isFinite(y);
    if (xNumber && yNumber) { return x - y; }
    if (xNumber !== yNumber) { return xNumber ? -1 : 1; }
    return a.localeCompare(b);
  }

  function sortBy(table, headers, th, index) {
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var a = key(r1, index), b = key(r2, index);
      if ((a === "") !== (b === "")) { return a === "" ? 1 : -1; }
      return ascending ? compare(a, b) : compare(b, a);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (th, index) {
      var button = th.querySelector("button");
      if (button) {
        button.addEventListener("click", function () { sortBy(table, headers, th, index); });
      }
    });
  });

  var toggle = document.getElementById("diff-only");
  var params = document.getElementById("params-table");
  if (toggle && params) {
    toggle.addEventListener("change", function () {
      params.classList.toggle("diff-only", toggle.checked);
    });
  }
})();
