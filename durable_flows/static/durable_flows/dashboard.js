// Live parts of the dashboard. An element with data-refresh="<ms>" is replaced,
// every <ms>, by the same page's fragment (?fragment=1). Refreshing stops once the
// fragment says it is final (data-final="1", e.g. a finished run) and pauses while
// the tab is hidden. No library, no build step.
(function () {
  "use strict";

  function fragmentUrl() {
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    return url.toString();
  }

  function openSummaries(el) {
    return Array.prototype.map.call(el.querySelectorAll("details[open] > summary"), function (s) {
      return s.textContent.replace(/\s+/g, " ").trim();
    });
  }

  function schedule(el) {
    var every = parseInt(el.getAttribute("data-refresh"), 10);
    if (every > 0) window.setTimeout(function () { refresh(el); }, every);
  }

  function refresh(el) {
    if (document.hidden) { schedule(el); return; }
    fetch(fragmentUrl(), { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        var open = openSummaries(el);
        el.innerHTML = html;
        // Keep the steps someone opened open across refreshes.
        Array.prototype.forEach.call(el.querySelectorAll("details > summary"), function (s) {
          if (open.indexOf(s.textContent.replace(/\s+/g, " ").trim()) !== -1) s.parentElement.open = true;
        });
        el.setAttribute("data-refreshed", String(Date.now()));
        if (el.querySelector('[data-final="1"]')) {
          el.removeAttribute("data-refresh");
          return;
        }
        schedule(el);
      })
      .catch(function () { schedule(el); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-refresh]"), schedule);
  });
})();
