// engine serve: the only script, shipped inside the binary. A live run page
// listens to its run's server-sent events and swaps in the fragments the
// server renders (stage graph, timeline) and the task rows that changed;
// no page reload. The review
// page's timeline and segment rows are the second part.
"use strict";
(function () {
  const run = document.getElementById("run");
  if (!run || !run.dataset.live || !window.EventSource) return;
  // A task row that changed: [index, state, seconds, why, items, error],
  // written as text (never HTML) into the row the page drew.
  function row(r) {
    if (!Array.isArray(r) || r.length < 6) return;
    const tr = document.querySelector('#tasks tr[data-i="' + Number(r[0]) + '"]');
    if (!tr) return;
    const state = String(r[1]);
    tr.className = "st-row-" + state;
    const pill = tr.querySelector("td.state .pill");
    if (pill) { pill.className = "pill st-" + state; pill.textContent = state; }
    const secs = tr.querySelector("td.secs");
    if (secs) secs.textContent = String(r[2]);
    const why = tr.querySelector("td.why");
    if (!why) return;
    why.replaceChildren(document.createTextNode(String(r[3])));
    if (r[4] != null) {
      const note = document.createElement("span");
      note.className = "note";
      note.textContent = "(" + r[4] + ")";
      why.append(" ", note);
    }
    if (r[5] != null) {
      const err = document.createElement("div");
      err.className = "error";
      err.textContent = String(r[5]);
      why.append(err);
    }
  }
  const source = new EventSource(run.dataset.live);
  source.addEventListener("update", (ev) => {
    let u;
    try { u = JSON.parse(ev.data); } catch (e) { return; }
    for (const id of ["runhead", "dag", "timeline", "tasks"]) {
      const el = document.getElementById(id);
      if (el && typeof u[id] === "string") el.innerHTML = u[id];
    }
    if (Array.isArray(u.rows)) for (const r of u.rows) row(r);
    run.dataset.updates = String(Number(run.dataset.updates || 0) + 1);
  });
  // The run finished: nothing more will change.
  source.addEventListener("end", () => { source.close(); run.dataset.ended = "1"; });
})();

// A running task's page follows its log: the engine puts the log's tail
// into the run record every checkpoint (2 s), and this polls the task's
// JSON for it until the task is no longer running.
(function () {
  const log = document.getElementById("log");
  if (!log || !log.dataset.follow || !window.fetch) return;
  const url = log.dataset.follow;
  const tick = async () => {
    let page;
    try {
      const r = await fetch(url, { credentials: "same-origin" });
      if (!r.ok) return;
      page = await r.json();
    } catch (e) { return setTimeout(tick, 2000); }
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent = page.log || "(empty)";
    if (atEnd) log.scrollTop = log.scrollHeight;
    log.dataset.polls = String(Number(log.dataset.polls || 0) + 1);
    if (page.live) setTimeout(tick, 2000); else log.dataset.ended = "1";
  };
  setTimeout(tick, 2000);
})();

// The review page: the segments on the timeline are positioned here (the
// page's policy forbids inline styles), a click on one seeks the video, the
// "yours" lane redraws as the reviewer types rows, and dragging the handle
// at either end of one of its segments rewrites that row.
(function () {
  const box = document.getElementById("review");
  if (!box) return;
  const video = document.getElementById("player");
  const rows = document.getElementById("rows");
  const edited = document.getElementById("track-edited");
  let duration = Number(box.dataset.duration) || 0;

  function place(el) {
    const start = Number(el.dataset.start), end = Number(el.dataset.end);
    if (!(duration > 0) || !(end > start)) { el.hidden = true; return; }
    el.hidden = false;
    const left = Math.min(100, (100 * start) / duration);
    el.style.left = left + "%";
    el.style.width = Math.max(0.5, Math.min(100 - left, (100 * (end - start)) / duration)) + "%";
  }
  function parse(text) {
    const m = /^\s*([0-9]*\.?[0-9]+)\s*-\s*([0-9]*\.?[0-9]+)\s*$/.exec(text);
    if (!m) return null;
    const a = Number(m[1]), b = Number(m[2]);
    return b > a ? [a, b] : null;
  }
  function inputs() {
    return rows ? [...rows.querySelectorAll("input[name=segment]")] : [];
  }
  // A segment of the "yours" lane: its text, and a handle at each end that
  // drags that boundary (the row it came from is rewritten as it moves).
  function edSeg(i, a, b) {
    const el = document.createElement("div");
    el.className = "seg edited";
    el.dataset.row = i;
    const label = document.createElement("span");
    label.className = "label";
    el.appendChild(label);
    for (const side of ["start", "end"]) {
      const h = document.createElement("span");
      h.className = "handle " + side;
      h.dataset.side = side;
      h.title = "drag to move the " + side;
      el.appendChild(h);
    }
    setSpan(el, a, b);
    return el;
  }
  function setSpan(el, a, b) {
    el.dataset.start = a;
    el.dataset.end = b;
    el.querySelector(".label").textContent = a + "-" + b;
    el.title = "yours " + a + "-" + b + " s; drag an end to move it";
  }
  function redrawEdited() {
    if (!edited || !rows) return;
    edited.replaceChildren();
    inputs().forEach((input, i) => {
      const blank = input.value.trim() === "";
      const span = parse(input.value);
      input.classList.toggle("bad", !blank && !span);
      if (span) edited.appendChild(edSeg(i, span[0], span[1]));
    });
    layout();
    playhead();
  }
  // Dragging a boundary: the time under the pointer, to 0.1 s, kept
  // inside the video and at least 0.1 s from the segment's other end.
  let drag = null;
  const tenth = (x) => Math.round(x * 10) / 10;
  if (edited) {
    edited.addEventListener("pointerdown", (ev) => {
      const h = ev.target.closest(".handle");
      if (!h || !(duration > 0)) return;
      const seg = h.closest(".seg");
      const input = inputs()[Number(seg.dataset.row)];
      if (!input) return;
      drag = { seg, input, side: h.dataset.side };
      if (h.setPointerCapture) h.setPointerCapture(ev.pointerId);
      ev.preventDefault();
    });
    edited.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      const r = edited.getBoundingClientRect();
      const t = tenth(Math.max(0, Math.min(1, (ev.clientX - r.left) / r.width)) * duration);
      let a = Number(drag.seg.dataset.start), b = Number(drag.seg.dataset.end);
      if (drag.side === "start") a = Math.max(0, Math.min(t, tenth(b - 0.1)));
      else b = Math.max(t, tenth(a + 0.1));
      setSpan(drag.seg, a, b);
      place(drag.seg);
      drag.input.value = a + "-" + b;
      drag.input.classList.remove("bad");
    });
    const drop = () => {
      if (!drag) return;
      drag = null;
      box.dataset.drags = String(Number(box.dataset.drags || 0) + 1);
      redrawEdited();
    };
    edited.addEventListener("pointerup", drop);
    edited.addEventListener("pointercancel", drop);
  }
  function layout() {
    for (const el of box.querySelectorAll(".seg[data-start]")) place(el);
    const end = document.getElementById("axis-end");
    if (end && duration > 0) end.textContent = duration.toFixed(1) + " s";
  }

  box.addEventListener("click", (ev) => {
    if (ev.target.closest(".handle")) return;
    const seg = ev.target.closest(".seg");
    if (!seg || !video) return;
    video.currentTime = Number(seg.dataset.start);
    box.dataset.seeked = seg.dataset.start;
  });
  // A line at the player's time on every lane, so a boundary can be read
  // off the timeline while scrubbing.
  function playhead() {
    if (!video || !(duration > 0)) return;
    const left = Math.min(100, (100 * video.currentTime) / duration) + "%";
    for (const track of box.querySelectorAll(".track")) {
      let line = track.querySelector(".playhead");
      if (!line) {
        line = document.createElement("div");
        line.className = "playhead";
        track.appendChild(line);
      }
      line.style.left = left;
    }
  }
  if (video) {
    video.addEventListener("timeupdate", playhead);
    video.addEventListener("seeked", playhead);
    // The player's own duration wins once known: the timeline then lines
    // up with its seek bar even if the catalog's number is off.
    video.addEventListener("loadedmetadata", () => {
      if (isFinite(video.duration) && video.duration > 0) { duration = video.duration; layout(); playhead(); }
    });
  }
  if (rows) {
    rows.addEventListener("input", redrawEdited);
    rows.addEventListener("click", (ev) => {
      if (!ev.target.classList.contains("remove")) return;
      ev.target.closest("li").remove();
      redrawEdited();
    });
    const add = document.getElementById("add-row");
    const tpl = document.getElementById("row-template");
    if (add && tpl) {
      add.addEventListener("click", () => {
        rows.appendChild(tpl.content.cloneNode(true));
        const inputs = rows.querySelectorAll("input[name=segment]");
        inputs[inputs.length - 1].focus();
      });
    }
  }
  redrawEdited();
  layout();
})();
