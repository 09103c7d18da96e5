/* Dashboard: copy buttons. A button with data-copy="ID" copies the value of the
   field with that id (or the text of any other element) and says "Copied".
   No inline script: pages load this file (see the Content-Security-Policy). */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function textOf(element) {
    return "value" in element ? element.value : element.textContent.trim();
  }

  // Without the clipboard API (plain http on another host): select and copy.
  function copyBySelection(element) {
    if (element.select) {
      element.select();
    } else {
      var range = document.createRange();
      range.selectNodeContents(element);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
    return document.execCommand("copy");
  }

  function setUp(button) {
    var label = button.textContent;
    button.addEventListener("click", function () {
      var element = document.getElementById(button.getAttribute("data-copy"));
      if (!element) return;
      var say = function (text) {
        button.textContent = text;
        setTimeout(function () { button.textContent = label; }, 1500);
      };
      var fallback = function () { say(copyBySelection(element) ? "Copied" : "Press Ctrl+C"); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(textOf(element)).then(function () { say("Copied"); },
                                                            fallback);
      } else {
        fallback();
      }
    });
  }

  function ready() {
    document.querySelectorAll("[data-copy]").forEach(setUp);
  }
  if (document.readyState !== "loading") ready();
  else document.addEventListener("DOMContentLoaded", ready);
})();
