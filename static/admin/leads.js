/* Leads table: one checkbox ticks every row of the page. Without JavaScript the rows
   are still ticked one by one. */
document.addEventListener("DOMContentLoaded", function () {
  var all = document.querySelector(".pick-all");
  if (!all) return;
  var rows = Array.prototype.slice.call(document.querySelectorAll('input[name="lead"]'));
  all.hidden = false;
  all.addEventListener("change", function () {
    rows.forEach(function (box) { box.checked = all.checked; });
  });
  rows.forEach(function (box) {
    box.addEventListener("change", function () {
      var ticked = rows.filter(function (b) { return b.checked; }).length;
      all.checked = ticked === rows.length;
      all.indeterminate = ticked > 0 && ticked < rows.length;
    });
  });
});
