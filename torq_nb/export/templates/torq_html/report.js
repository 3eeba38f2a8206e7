// The report's tables: a click on a column heading sorts the rows (numbers as numbers, empty cells last),
// and the box above each table shows only the rows holding every word typed. Page text is only ever read
// and written as textContent: nothing here parses markup or runs text. Without JavaScript the tables are
// plain HTML.
"use strict";
(function () {
  var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

  function sortable(table, rows) {
    var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
    heads.forEach(function (head, column) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = head.textContent;
      button.title = "Sort by " + head.textContent;
      head.textContent = "";
      head.appendChild(button);
      head.setAttribute("aria-sort", "none");
      button.addEventListener("click", function () {
        var ascending = head.getAttribute("aria-sort") !== "ascending";
        var number = head.dataset.type === "number";
        var keyed = rows.map(function (row, index) {
          var text = row.cells[column] ? row.cells[column].textContent.trim() : "";
          var key = number ? parseFloat(text) : text;
          return { row: row, index: index, key: text === "" || (number && isNaN(key)) ? null : key };
        });
        keyed.sort(function (a, b) {
          if (a.key === null || b.key === null) return (a.key === null) - (b.key === null) || a.index - b.index;
          var order = number ? a.key - b.key : collator.compare(a.key, b.key);
          return (ascending ? order : -order) || a.index - b.index;
        });
        var body = table.tBodies[0];
        var fragment = document.createDocumentFragment();
        keyed.forEach(function (item) { fragment.appendChild(item.row); });
        body.appendChild(fragment);
        heads.forEach(function (other) { other.setAttribute("aria-sort", "none"); });
        head.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      });
    });
  }

  function plural(n) {
    return n + (n === 1 ? " row" : " rows");
  }

  function filterable(table, rows) {
    var box = document.createElement("div");
    box.className = "filter";
    var label = document.createElement("label");
    var input = document.createElement("input");
    input.type = "search";
    input.placeholder = "Filter rows";
    input.setAttribute("aria-label", "Filter the rows of this table");
    label.appendChild(input);
    var count = document.createElement("span");
    count.setAttribute("aria-live", "polite");
    box.appendChild(label);
    box.appendChild(count);
    var wrapper = table.parentNode;
    wrapper.parentNode.insertBefore(box, wrapper);
    var texts = null;
    function show() {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      if (texts === null) texts = rows.map(function (row) { return row.textContent.toLowerCase(); });
      var shown = 0;
      rows.forEach(function (row, i) {
        var match = words.every(function (word) { return texts[i].indexOf(word) >= 0; });
        row.hidden = !match;
        shown += match;
      });
      count.textContent = (words.length ? shown + " of " : "") + plural(rows.length);
    }
    input.addEventListener("input", show);
    count.textContent = plural(rows.length);
  }

  document.querySelectorAll("main .table > table").forEach(function (table) {
    if (!table.tHead || !table.tBodies[0]) return;
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    sortable(table, rows);
    filterable(table, rows);
  });
})();
