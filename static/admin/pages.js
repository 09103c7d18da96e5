/* Dashboard, pages area: live preview, field rows, share links. No dependencies.
   Everything here is an enhancement: without JavaScript the buttons still work. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  function debounce(fn, wait) {
    var timer = null;
    return function () {
      clearTimeout(timer);
      timer = setTimeout(fn, wait);
    };
  }

  /* --- editor: live preview --------------------------------------------------- */
  function setUpPreview(form) {
    var button = document.getElementById("preview-button");
    var frame = document.getElementById("page-preview");
    var status = document.getElementById("preview-status");
    if (!button || !frame) return;

    function refresh() {
      if (status) status.textContent = "Updating preview…";
      if (form.requestSubmit) form.requestSubmit(button);
      else button.click();
    }
    // The tabs choose what the preview shows; automatic refreshes keep showing it.
    document.querySelectorAll("[data-preview-tab]").forEach(function (tab) {
      tab.addEventListener("click", function () {
        button.setAttribute("formaction", tab.getAttribute("formaction"));
        document.querySelectorAll("[data-preview-tab]").forEach(function (other) {
          other.classList.toggle("active", other === tab);
        });
      });
    });
    frame.addEventListener("load", function () {
      if (status) status.textContent = "";
    });
    // The gallery's thumbnails show each design with the values typed so far. One
    // at a time: a form's next submission would cancel one not yet under way.
    var designs = Array.prototype.slice.call(document.querySelectorAll("[data-design-refresh]"));
    var refreshDesigns = debounce(function () {
      var queue = designs.slice();
      (function next() {
        var button = queue.shift();
        if (!button || !form.requestSubmit) return;
        var frame = document.getElementsByName(button.getAttribute("formtarget"))[0];
        var done = false;
        var go = function () {
          if (done) return;
          done = true;
          if (frame) frame.removeEventListener("load", go);
          next();
        };
        if (frame) frame.addEventListener("load", go);
        setTimeout(go, 3000);
        form.requestSubmit(button);
      })();
    }, 2000);
    var later = debounce(refresh, 600);
    form.addEventListener("input", later);
    form.addEventListener("change", later);
    form.addEventListener("input", refreshDesigns);
    form.refreshPreview = later;
    // Show the values as they are in the form (also after an error), once the frame's
    // first document has loaded so that load cannot replace the fresh preview.
    if (document.readyState === "complete") { refresh(); refreshDesigns(); }
    else window.addEventListener("load", function () { refresh(); refreshDesigns(); });
  }

  /* --- editor: field rows ----------------------------------------------------- */
  var ROW_NAME = /^rows-\d+-/;

  function rowsOf(table) {
    return Array.prototype.slice.call(table.querySelectorAll("tbody tr[data-row]"));
  }

  function renumber(table) {
    rowsOf(table).forEach(function (row, index) {
      row.querySelectorAll("[name]").forEach(function (input) {
        input.name = input.name.replace(ROW_NAME, "rows-" + index + "-");
        if (input.id) input.id = input.id.replace(ROW_NAME, "rows-" + index + "-");
      });
    });
  }

  function showOptions(row) {
    var kind = row.querySelector("[data-kind]");
    var options = row.querySelector("[data-options]");
    if (!kind || !options) return;
    options.hidden = kind.value !== "select" && !options.value;
  }

  function setUpRows(form) {
    var table = document.getElementById("field-rows");
    var add = document.getElementById("add-row");
    if (!table) return;
    var changed = function () { if (form.refreshPreview) form.refreshPreview(); };

    rowsOf(table).forEach(showOptions);
    table.addEventListener("change", function (event) {
      if (event.target.matches("[data-kind]")) showOptions(event.target.closest("tr"));
    });

    table.addEventListener("click", function (event) {
      var button = event.target.closest("button");
      if (!button) return;
      var row = button.closest("tr");
      table.querySelectorAll("tr.row-error").forEach(function (tr) { tr.remove(); });
      if (button.hasAttribute("data-remove")) {
        row.querySelectorAll("input[type=text], input:not([type])").forEach(function (i) { i.value = ""; });
        row.querySelectorAll("input[type=checkbox]").forEach(function (i) { i.checked = false; });
        row.hidden = true;  // an empty name drops the field when saved
      } else if (button.hasAttribute("data-move")) {
        var rows = rowsOf(table).filter(function (r) { return !r.hidden; });
        var at = rows.indexOf(row) + Number(button.getAttribute("data-move"));
        if (at < 0 || at >= rows.length) return;
        if (Number(button.getAttribute("data-move")) < 0) rows[at].before(row);
        else rows[at].after(row);
        renumber(table);
      }
      changed();
    });

    if (add) {
      add.addEventListener("click", function (event) {
        var rows = rowsOf(table);
        if (!rows.length || rows.length >= 40) return;  // let the server say so
        event.preventDefault();
        var row = rows[rows.length - 1].cloneNode(true);
        row.hidden = false;
        row.classList.remove("has-error");
        row.querySelectorAll("input[type=text], input:not([type])").forEach(function (i) { i.value = ""; });
        row.querySelectorAll("input[type=checkbox]").forEach(function (i) { i.checked = false; });
        row.querySelectorAll("select").forEach(function (s) { s.value = "text"; });
        table.querySelector("tbody").appendChild(row);
        renumber(table);
        showOptions(row);
        var name = row.querySelector("input");
        if (name) name.focus();
      });
    }
  }

  /* --- share: link builder (its copy buttons: copy.js) ------------------------- */
  function setUpShare() {
    var container = document.querySelector("[data-share]");
    var form = document.querySelector("[data-utm-form]");
    var output = document.querySelector("[data-utm-output]");
    if (container && form && output) {
      var base = container.getAttribute("data-base");
      var update = function () {
        var params = new URLSearchParams();
        form.querySelectorAll("input[name]").forEach(function (input) {
          if (input.value.trim()) params.append(input.name, input.value.trim());
        });
        var query = params.toString();
        output.value = query ? base + "?" + query : base;
      };
      form.addEventListener("input", update);
      form.addEventListener("submit", function (event) { event.preventDefault(); update(); });
    }
  }

  ready(function () {
    var form = document.getElementById("page-form");
    if (form) {
      setUpPreview(form);
      setUpRows(form);
    }
    setUpShare();
  });
})();
