// calsync: small progressive enhancements; every page works without this file.
(function () {
  "use strict";
  // Sync now: follow the running sync, then reload to show its result
  var box = document.getElementById("sync-progress");
  if (box && box.getAttribute("data-state") === "running") {
    var secs = box.querySelector(".secs");
    var poll = function () {
      fetch("/settings/google/sync/status", { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (s) {
          if (s.state === "running") {
            if (secs) { secs.textContent = String(s.elapsed); }
            window.setTimeout(poll, 700);
          } else {
            window.location.reload();
          }
        })
        .catch(function () { window.setTimeout(poll, 2000); });
    };
    window.setTimeout(poll, 500);
  }
  // Support report: a copy button
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (!target) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      target.select();
      if (navigator.clipboard) { navigator.clipboard.writeText(target.value); } else { document.execCommand("copy"); }
    });
  });
})();
