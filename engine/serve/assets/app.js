// engine serve: the only script, shipped inside the binary. A live run page
// listens to its run's server-sent events and swaps in the fragments the
// server renders (stage graph, timeline, tasks); no page reload.
"use strict";
(function () {
  const run = document.getElementById("run");
  if (!run || !run.dataset.live || !window.EventSource) return;
  const source = new EventSource(run.dataset.live);
  source.addEventListener("update", (ev) => {
    let u;
    try { u = JSON.parse(ev.data); } catch (e) { return; }
    for (const id of ["runhead", "dag", "timeline", "tasks"]) {
      const el = document.getElementById(id);
      if (el && typeof u[id] === "string") el.innerHTML = u[id];
    }
    run.dataset.updates = String(Number(run.dataset.updates || 0) + 1);
  });
  // The run finished: nothing more will change.
  source.addEventListener("end", () => { source.close(); run.dataset.ended = "1"; });
})();
