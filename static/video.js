/* The video design's play button: the player's frame (YouTube without cookies, or
   Vimeo with do-not-track) is made only when the visitor presses play, so nothing
   is fetched from the video's site before. Without this script the button is a link
   that opens the video on its own site. */
(function () {
  "use strict";
  // The only players a page may load (the page's Content-Security-Policy agrees).
  var PLAYERS = ["https://www.youtube-nocookie.com/embed/", "https://player.vimeo.com/video/"];

  function allowed(url) {
    return PLAYERS.some(function (prefix) { return url.indexOf(prefix) === 0; });
  }

  function play(event) {
    var poster = event.currentTarget;
    var url = poster.getAttribute("data-embed") || "";
    if (!allowed(url)) return;  // follow the link instead
    event.preventDefault();
    var frame = document.createElement("iframe");
    frame.src = url;
    frame.title = poster.getAttribute("data-title") || "Video";
    frame.allow = "autoplay; encrypted-media; fullscreen; picture-in-picture";
    frame.allowFullscreen = true;
    frame.referrerPolicy = "strict-origin-when-cross-origin";
    poster.replaceWith(frame);
    frame.focus();
  }

  function setUp() {
    document.querySelectorAll("a[data-embed]").forEach(function (poster) {
      poster.addEventListener("click", play);
    });
  }

  if (document.readyState !== "loading") setUp();
  else document.addEventListener("DOMContentLoaded", setUp);
})();
