// knowtune feedback: keyboard shortcuts on the rating page, live job progress on the admin page.
(function () {
  "use strict";

  function ratingKeys(form) {
    function pick(id) { document.getElementById(id).click(); }
    function score(side, n) {
      var box = form.querySelector('input[name="score_' + side + '"][value="' + n + '"]');
      if (box) { box.checked = true; }
    }
    function toggle(side) {
      var box = form.querySelector('input[name="wrong_' + side + '"]');
      box.checked = !box.checked;
    }
    document.addEventListener("keydown", function (e) {
      var typing = e.target.tagName === "TEXTAREA" || e.target.tagName === "INPUT" && e.target.type === "text";
      if (typing) {
        if (e.key === "Escape") { e.target.blur(); }  // back to the shortcuts
        return;
      }
      if (e.ctrlKey || e.metaKey || e.altKey) { return; }
      var digit = /^Digit([1-5])$/.exec(e.code);
      if (digit) { score(e.shiftKey ? "right" : "left", digit[1]); e.preventDefault(); return; }
      var key = e.key.toLowerCase();
      if (key === "w") { toggle(e.shiftKey ? "right" : "left"); }
      else if (key === "a" || e.key === "ArrowLeft") { pick("choose-left"); }
      else if (key === "b" || e.key === "ArrowRight") { pick("choose-right"); }
      else if (key === "t") { pick("choose-tie"); }
      else if (key === "c") { form.querySelector("textarea").focus(); }
      else { return; }
      e.preventDefault();
    });
  }

  function pollJobs(table) {
    function tick() {
      fetch("/admin/jobs.json", { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (data) {
        var running = false;
        data.jobs.forEach(function (j) {
          var row = table.querySelector('tr[data-job="' + j.id + '"]');
          if (!row) { return; }
          row.querySelector(".status").textContent = j.status;
          row.querySelector("progress").value = j.done;
          row.querySelector("progress").max = j.total || 1;
          row.querySelector(".count").textContent = j.done + "/" + j.total;
          row.querySelector(".message").textContent = j.message;
          running = running || j.status === "running";
        });
        if (running) { setTimeout(tick, 1000); } else { window.location.reload(); }
      }).catch(function () { setTimeout(tick, 3000); });
    }
    setTimeout(tick, 1000);
  }

  function pollRun(status) {
    var name = status.dataset.run;
    function tick() {
      fetch("/runs/" + encodeURIComponent(name) + "/progress.json", { credentials: "same-origin" })
        .then(function (r) { return r.json(); }).then(function (p) {
          document.getElementById("run-phase").textContent = p.phase;
          var bar = document.getElementById("run-progress");
          bar.max = p.total || 1;
          bar.value = p.step;
          document.getElementById("run-steps").textContent = p.step + "/" + p.total;
          if (p.status === "running") { setTimeout(tick, 1000); } else { window.location.reload(); }
        }).catch(function () { setTimeout(tick, 3000); });
    }
    setTimeout(tick, 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var status = document.getElementById("run-status");
    if (status && status.dataset.poll === "yes") { pollRun(status); }
    var form = document.getElementById("rate-form");
    if (form) { ratingKeys(form); }
    var jobs = document.getElementById("jobs");
    if (jobs && jobs.dataset.poll === "yes") { pollJobs(jobs); }
  });
})();
