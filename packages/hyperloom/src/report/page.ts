/**
 * The report page's stylesheet and script (plain browser JavaScript, inlined into the HTML).
 * The script reads the JSON in `<script id="data">`, decodes the typed arrays and draws the
 * timeline, the CPU chart and the plan graph on canvases. When done it sets
 * `data-report-status="ok"` on `<html>` (or `"error"` with the message, for tests).
 */

export const CSS = String.raw`
:root { --fg:#1d2430; --muted:#667085; --line:#e4e7ec; --bg:#f7f8fa; --card:#fff; --accent:#4e79a7; }
* { box-sizing: border-box; }
body { margin:0; font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",sans-serif; color:var(--fg); background:var(--bg); }
header { padding:14px 20px 8px; background:#1d2430; color:#fff; }
header h1 { margin:0; font-size:18px; font-weight:600; letter-spacing:.2px; }
header .sub { color:#b9c1cf; font-size:12px; margin-top:2px; word-break:break-all; }
main { padding:10px 20px 30px; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:10px 14px 12px; margin:10px 0; }
h2 { font-size:14px; margin:0 0 6px; font-weight:600; }
h2 .hint { font-weight:400; color:var(--muted); font-size:12px; margin-left:10px; }
.cards { display:flex; flex-wrap:wrap; gap:8px; background:none; border:none; padding:0; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:7px 12px; min-width:150px; }
.card .k { color:var(--muted); font-size:11px; text-transform:uppercase; letter-spacing:.4px; }
.card .v { font-size:14px; font-weight:600; }
.warn { background:#fff7e6; border:1px solid #f5c26b; border-radius:8px; padding:8px 12px; margin:10px 0; color:#7a4b00; }
.warn ul { margin:4px 0 0 18px; padding:0; }
.error { background:#fdecec; border-color:#e5a0a0; color:#8a1c1c; }
canvas { display:block; width:100%; }
.canvas-wrap { position:relative; }
#legend { display:flex; flex-wrap:wrap; gap:4px 12px; margin:2px 0 8px; }
#legend span { white-space:nowrap; }
#legend i, td i { display:inline-block; width:11px; height:11px; border-radius:2px; margin-right:5px; vertical-align:-1px; }
.tip { position:fixed; pointer-events:none; background:rgba(29,36,48,.95); color:#fff; padding:6px 9px; border-radius:6px; font-size:12px; white-space:pre; display:none; z-index:10; max-width:600px; overflow:hidden; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
th, td { text-align:right; padding:3px 10px; border-bottom:1px solid var(--line); }
th { color:var(--muted); font-weight:600; font-size:12px; }
th:first-child, td:first-child { text-align:left; }
tbody tr:hover { background:#f2f6fb; }
button { font:inherit; font-size:12px; padding:2px 9px; border:1px solid var(--line); border-radius:5px; background:#fff; cursor:pointer; margin-left:8px; }
.muted { color:var(--muted); }
`;

export const SCRIPT = String.raw`
(function () {
  "use strict";
  var root = document.documentElement;
  function fail(msg) {
    root.setAttribute("data-report-status", "error");
    root.setAttribute("data-report-error", String(msg));
    var box = document.getElementById("script-error");
    if (box) { box.style.display = "block"; box.textContent = "The report could not be drawn: " + msg; }
  }
  window.addEventListener("error", function (e) { fail(e.message || "script error"); });
  var D;
  try { D = JSON.parse(document.getElementById("data").textContent); } catch (e) { fail("bad embedded data: " + e.message); return; }

  function bytes(b64) {
    var s = atob(b64), n = s.length, u = new Uint8Array(n);
    for (var i = 0; i < n; i++) u[i] = s.charCodeAt(i);
    return u.buffer;
  }
  var X = D.exec, N = X.n;
  var eId = new Int32Array(bytes(X.id)), eLane = new Uint32Array(bytes(X.lane)), eLabel = new Uint32Array(bytes(X.label));
  var eStart = new Float64Array(bytes(X.start)), eEnd = new Float64Array(bytes(X.end));
  var eStatus = new Uint8Array(bytes(X.status)), eSize = new Float64Array(bytes(X.size));
  var colorOfLabel = D.labelGroup.map(function (g) { return D.colors[g]; });

  function fmtMs(ms) {
    if (ms < 1) return (ms * 1000).toFixed(0) + " \u00b5s";
    if (ms < 1000) return ms.toFixed(ms < 10 ? 2 : 1) + " ms";
    return (ms / 1000).toFixed(ms < 10000 ? 3 : 1) + " s";
  }
  function fmtBytes(b) {
    if (b < 1024) return b + " B";
    if (b < 1048576) return (b / 1024).toFixed(1) + " KiB";
    if (b < 1073741824) return (b / 1048576).toFixed(1) + " MiB";
    return (b / 1073741824).toFixed(2) + " GiB";
  }
  var tip = document.getElementById("tip");
  function showTip(ev, text) {
    if (!text) { tip.style.display = "none"; return; }
    tip.textContent = text;
    tip.style.display = "block";
    var x = ev.clientX + 14, y = ev.clientY + 14;
    var r = tip.getBoundingClientRect();
    if (x + r.width > window.innerWidth - 4) x = ev.clientX - r.width - 10;
    if (y + r.height > window.innerHeight - 4) y = ev.clientY - r.height - 10;
    tip.style.left = x + "px"; tip.style.top = y + "px";
  }
  function setupCanvas(c, cssH) {
    var dpr = window.devicePixelRatio || 1, w = c.parentNode.clientWidth || 1200;
    c.style.height = cssH + "px";
    c.width = Math.round(w * dpr); c.height = Math.round(cssH * dpr);
    var ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return { ctx: ctx, w: w, h: cssH };
  }
  function niceStep(range, n) {
    var raw = range / n, p = Math.pow(10, Math.floor(Math.log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
  }

  // ---- Legend --------------------------------------------------------------------------------
  (function legend() {
    var el = document.getElementById("legend"), max = 40, html = [];
    D.groups.slice(0, max).forEach(function (g, i) {
      html.push("<span><i style=\"background:" + D.colors[i] + "\"></i>" + esc(g) + "</span>");
    });
    if (D.groups.length > max) html.push("<span class=\"muted\">+" + (D.groups.length - max) + " more</span>");
    el.innerHTML = html.join("");
  })();
  function esc(s) { return String(s).replace(/[&<>"]/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;" }[c]; }); }

  // ---- Timeline ------------------------------------------------------------------------------
  var GUT = 128, AXIS = 22;
  var lanes = D.lanes, nLanes = lanes.length;
  var laneH = nLanes <= 16 ? 18 : Math.max(5, Math.floor(520 / nLanes));
  var GAP = 8;
  var laneY = [], y = AXIS + 4;
  for (var li = 0; li < nLanes; li++) {
    if (li > 0 && lanes[li].worker !== lanes[li - 1].worker) y += GAP;
    laneY.push(y); y += laneH;
  }
  var tlH = Math.max(y + 6, 80);
  var full = [0, Math.max(D.duration, 0.001) * 1.01];
  var view = [full[0], full[1]];
  var tl = document.getElementById("timeline"), T = null, drawnRects = 0, colorsDrawn = {};

  function lowerBound(a, lo, hi, v) { while (lo < hi) { var m = (lo + hi) >> 1; if (a[m] < v) lo = m + 1; else hi = m; } return lo; }

  function drawTimeline() {
    T = setupCanvas(tl, tlH);
    var ctx = T.ctx, W = T.w - GUT - 6, v0 = view[0], v1 = view[1], sc = W / (v1 - v0);
    ctx.clearRect(0, 0, T.w, T.h);
    ctx.font = "11px system-ui, sans-serif"; ctx.textBaseline = "middle";
    // Axis.
    var step = niceStep(v1 - v0, Math.max(2, Math.floor(W / 110)));
    ctx.fillStyle = "#667085"; ctx.strokeStyle = "#eef0f3"; ctx.lineWidth = 1;
    for (var t = Math.ceil(v0 / step) * step; t <= v1; t += step) {
      var x = GUT + (t - v0) * sc;
      ctx.beginPath(); ctx.moveTo(Math.round(x) + 0.5, AXIS); ctx.lineTo(Math.round(x) + 0.5, T.h); ctx.stroke();
      ctx.fillText(fmtMs(t), x + 3, 10);
    }
    // Lanes.
    drawnRects = 0;
    for (var li = 0; li < nLanes; li++) {
      var L = lanes[li], ly = laneY[li];
      ctx.fillStyle = li % 2 ? "#fafbfc" : "#f3f5f8";
      ctx.fillRect(GUT, ly, W, laneH - 1);
      if (laneH >= 10) { ctx.fillStyle = "#667085"; ctx.fillText(L.name, 64, ly + laneH / 2); }
      if (li === 0 || lanes[li - 1].worker !== L.worker) {
        ctx.fillStyle = "#1d2430"; ctx.font = "600 11px system-ui, sans-serif";
        ctx.fillText("worker " + L.worker, 6, ly + Math.min(laneH, 14) / 2 + 1);
        ctx.font = "11px system-ui, sans-serif";
      }
      var a = L.start, b = L.end;
      var i0 = Math.max(a, lowerBound(eStart, a, b, v0) - 1);
      var lastPx = -1, lastCol = null, h = Math.max(1, laneH - 3);
      for (var i = i0; i < b; i++) {
        var s = eStart[i];
        if (s > v1) break;
        var e = eEnd[i];
        if (e < v0) continue;
        var x0 = GUT + (Math.max(s, v0) - v0) * sc, x1 = GUT + (Math.min(e, v1) - v0) * sc;
        var w = x1 - x0, col = colorOfLabel[eLabel[i]];
        if (w < 1) {
          var px = Math.floor(x0);
          if (px === lastPx && col === lastCol && eStatus[i] === 0) continue;
          lastPx = px; lastCol = col; w = 1;
        } else { lastPx = -1; }
        ctx.fillStyle = col;
        ctx.globalAlpha = eStatus[i] === 2 ? 0.45 : 1;
        ctx.fillRect(x0, ly + 1, w, h);
        ctx.globalAlpha = 1;
        if (eStatus[i] === 1) { ctx.fillStyle = "#c00000"; ctx.fillRect(x0, ly + 1, Math.max(w, 2), Math.max(2, h / 3)); }
        colorsDrawn[col] = 1;
        drawnRects++;
      }
    }
    // Lost workers.
    D.workers.forEach(function (wk) {
      if (wk.lost === null || wk.lanes === 0) return;
      var x = GUT + (wk.lost - v0) * sc;
      if (x < GUT || x > GUT + W) return;
      ctx.strokeStyle = "#c00000"; ctx.lineWidth = 2; ctx.beginPath();
      ctx.moveTo(x, laneY[wk.firstLane]); ctx.lineTo(x, laneY[wk.firstLane + wk.lanes - 1] + laneH); ctx.stroke();
      ctx.fillStyle = "#c00000"; ctx.fillText("lost", x + 3, laneY[wk.firstLane] + 6);
    });
    if (brush) {
      ctx.fillStyle = "rgba(78,121,167,.18)";
      ctx.fillRect(Math.min(brush[0], brush[1]), AXIS, Math.abs(brush[1] - brush[0]), T.h - AXIS);
    }
    if (N === 0) { ctx.fillStyle = "#667085"; ctx.fillText("No task ran in the worker traces.", GUT + 10, AXIS + 20); }
    drawCpu();
  }

  function taskAt(px, py) {
    var li = -1;
    for (var k = 0; k < nLanes; k++) if (py >= laneY[k] && py < laneY[k] + laneH) { li = k; break; }
    if (li < 0 || px < GUT) return -1;
    var W = T.w - GUT - 6, sc = W / (view[1] - view[0]), t = view[0] + (px - GUT) / sc, tol = 3 / sc;
    var L = lanes[li], j = lowerBound(eStart, L.start, L.end, t + tol) - 1, best = -1, bd = Infinity;
    for (var i = Math.max(L.start, j - 2); i <= Math.min(L.end - 1, j + 2); i++) {
      var d = t < eStart[i] ? eStart[i] - t : t > eEnd[i] ? t - eEnd[i] : 0;
      if (d <= tol && d < bd) { bd = d; best = i; }
    }
    return best;
  }
  function describe(i) {
    var L = lanes[eLane[i]], st = ["finished", "FAILED", "did not end"][eStatus[i]];
    return "task " + eId[i] + "   " + D.labels[eLabel[i]] +
      "\nworker " + L.worker + ", " + L.name + "   " + st +
      "\nstart " + fmtMs(eStart[i]) + "   end " + fmtMs(eEnd[i]) + "   duration " + fmtMs(eEnd[i] - eStart[i]) +
      (eStatus[i] === 0 ? "\nresult " + fmtBytes(eSize[i]) : "");
  }

  var drag = null, brush = null, pending = false;
  function redraw() { if (!pending) { pending = true; requestAnimationFrame(function () { pending = false; drawTimeline(); }); } }
  function localX(ev) { return ev.clientX - tl.getBoundingClientRect().left; }
  tl.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var W = T.w - GUT - 6, px = Math.min(Math.max(localX(ev) - GUT, 0), W);
    var t = view[0] + px / W * (view[1] - view[0]);
    var f = Math.exp((ev.deltaY || ev.deltaX) * 0.0015), span = Math.max((view[1] - view[0]) * f, 1e-4);
    span = Math.min(span, full[1] - full[0]);
    view[0] = t - px / W * span; view[1] = view[0] + span;
    clampView(); redraw();
  }, { passive: false });
  function clampView() {
    var span = view[1] - view[0];
    if (view[0] < full[0]) { view[0] = full[0]; view[1] = full[0] + span; }
    if (view[1] > full[1]) { view[1] = full[1]; view[0] = Math.max(full[0], full[1] - span); }
  }
  tl.addEventListener("mousedown", function (ev) {
    var x = localX(ev);
    if (ev.shiftKey) brush = [x, x]; else drag = { x: x, v: view.slice() };
  });
  window.addEventListener("mousemove", function (ev) {
    if (drag) {
      var W = T.w - GUT - 6, dt = (localX(ev) - drag.x) / W * (drag.v[1] - drag.v[0]);
      view[0] = drag.v[0] - dt; view[1] = drag.v[1] - dt; clampView(); redraw(); return;
    }
    if (brush) { brush[1] = localX(ev); redraw(); return; }
  });
  window.addEventListener("mouseup", function () {
    if (brush) {
      var W = T.w - GUT - 6, a = Math.min(brush[0], brush[1]) - GUT, b = Math.max(brush[0], brush[1]) - GUT;
      if (b - a > 3) {
        var s = view[1] - view[0], v0 = view[0];
        view[0] = v0 + Math.max(0, a) / W * s; view[1] = v0 + Math.min(W, b) / W * s;
      }
      brush = null; redraw();
    }
    drag = null;
  });
  tl.addEventListener("mousemove", function (ev) {
    if (drag || brush) return;
    var r = tl.getBoundingClientRect(), i = taskAt(ev.clientX - r.left, ev.clientY - r.top);
    showTip(ev, i >= 0 ? describe(i) : null);
  });
  tl.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  tl.addEventListener("dblclick", function () { view = full.slice(); redraw(); });
  document.getElementById("reset").addEventListener("click", function () { view = full.slice(); redraw(); });

  // ---- CPU occupancy (same time axis as the timeline) ---------------------------------------
  var cpuCanvas = document.getElementById("cpu");
  function drawCpu() {
    if (!cpuCanvas) return;
    var C = setupCanvas(cpuCanvas, 130), ctx = C.ctx, W = C.w - GUT - 6, H = C.h - 20;
    var v0 = view[0], v1 = view[1], sc = W / (v1 - v0);
    ctx.clearRect(0, 0, C.w, C.h);
    ctx.font = "11px system-ui, sans-serif"; ctx.textBaseline = "middle";
    ctx.strokeStyle = "#eef0f3"; ctx.fillStyle = "#667085";
    [0, 50, 100].forEach(function (p) {
      var yy = 6 + H - p / 100 * H;
      ctx.beginPath(); ctx.moveTo(GUT, yy + 0.5); ctx.lineTo(GUT + W, yy + 0.5); ctx.stroke();
      ctx.fillText(p + "%", GUT - 34, yy);
    });
    if (D.cpu.length === 0) { ctx.fillText("No CPU samples (runs shorter than a second, or not Linux).", GUT + 10, 6 + H / 2); return; }
    var palette = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#9c755f", "#edc948"];
    D.cpu.forEach(function (c, k) {
      ctx.strokeStyle = palette[k % palette.length]; ctx.lineWidth = 1.5; ctx.beginPath();
      for (var i = 0; i < c.t.length; i++) {
        var x = GUT + (c.t[i] - v0) * sc, yy = 6 + H - Math.min(c.proc[i] / Math.max(c.cpus, 1), 100) / 100 * H;
        if (i === 0) ctx.moveTo(x, yy); else ctx.lineTo(x, yy);
      }
      ctx.stroke();
      ctx.fillStyle = palette[k % palette.length];
      for (var j = 0; j < c.t.length; j++) {
        ctx.beginPath();
        ctx.arc(GUT + (c.t[j] - v0) * sc, 6 + H - Math.min(c.proc[j] / Math.max(c.cpus, 1), 100) / 100 * H, 2.5, 0, 6.2832);
        ctx.fill();
      }
      ctx.fillText("worker " + c.worker, 6, 12 + k * 14);
    });
    var s0 = D.cpu[0];
    ctx.setLineDash([4, 3]); ctx.strokeStyle = "#98a2b3"; ctx.lineWidth = 1; ctx.beginPath();
    for (var i = 0; i < s0.t.length; i++) {
      var x = GUT + (s0.t[i] - v0) * sc, yy = 6 + H - s0.sys[i] / 100 * H;
      if (i === 0) ctx.moveTo(x, yy); else ctx.lineTo(x, yy);
    }
    ctx.stroke(); ctx.setLineDash([]);
    ctx.fillStyle = "#98a2b3"; ctx.fillText("machine (dashed)", 6, 12 + D.cpu.length * 14);
  }

  // ---- Plan graph ----------------------------------------------------------------------------
  var G = D.graph, gc = document.getElementById("graph");
  var gView = { s: 1, x: 0, y: 0 }, gPos = null, GC = null;
  function graphLayout(w, h) {
    var nL = G.layerSize.length, pos = [];
    var groups = G.kind === "groups";
    for (var i = 0; i < G.layer.length; i++) {
      var n = G.layerSize[G.layer[i]];
      pos.push([40 + (G.pos[i] + 0.5) / n * (w - 80), 24 + (G.layer[i] + 0.5) / nL * (h - 48)]);
    }
    var maxRow = Math.max.apply(null, G.layerSize.concat([1]));
    var r = groups ? 0 : Math.max(1.5, Math.min(7, (w - 80) / maxRow / 2.6, (h - 48) / nL / 3));
    return { p: pos, r: r };
  }
  function drawGraph() {
    if (!gc) return;
    if (G.kind === "none") { GC = setupCanvas(gc, 60); GC.ctx.fillStyle = "#667085"; GC.ctx.font = "12px system-ui"; GC.ctx.fillText("No plan in the trace (server.trace missing or empty).", 10, 30); return; }
    var h = G.kind === "groups" ? Math.min(560, 90 + G.layerSize.length * 70) : Math.min(620, Math.max(220, G.layerSize.length * 40));
    GC = setupCanvas(gc, h);
    var ctx = GC.ctx, L = graphLayout(GC.w, h);
    gPos = L;
    ctx.clearRect(0, 0, GC.w, GC.h);
    ctx.save(); ctx.translate(gView.x, gView.y); ctx.scale(gView.s, gView.s);
    var lw = 1 / gView.s;
    ctx.strokeStyle = "rgba(100,110,130,.35)"; ctx.lineWidth = lw;
    var maxC = Math.max.apply(null, G.edgeCount.concat([1]));
    for (var k = 0; k < G.edges.length; k += 2) {
      var a = L.p[G.edges[k]], b = L.p[G.edges[k + 1]];
      if (G.kind === "groups") ctx.lineWidth = (1 + 5 * Math.log(1 + G.edgeCount[k / 2]) / Math.log(1 + maxC)) / gView.s;
      ctx.beginPath(); ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.stroke();
      if (G.kind === "groups") {
        ctx.fillStyle = "#667085"; ctx.font = (11 / gView.s) + "px system-ui";
        ctx.fillText(String(G.edgeCount[k / 2]), (a[0] + b[0]) / 2 + 4 / gView.s, (a[1] + b[1]) / 2);
      }
    }
    for (var i = 0; i < G.layer.length; i++) {
      var p = L.p[i], col = D.colors[G.group[i]];
      ctx.fillStyle = col;
      if (G.kind === "groups") {
        ctx.font = "600 " + (12 / gView.s) + "px system-ui";
        var txt = G.text[i] + "  \u00d7" + G.value[i], tw = ctx.measureText(txt).width + 16 / gView.s, th = 24 / gView.s;
        ctx.fillRect(p[0] - tw / 2, p[1] - th / 2, tw, th);
        ctx.fillStyle = "#fff"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
        ctx.fillText(txt, p[0], p[1]); ctx.textAlign = "start";
      } else {
        ctx.beginPath(); ctx.arc(p[0], p[1], L.r, 0, 6.2832); ctx.fill();
      }
    }
    ctx.restore();
  }
  function graphAt(px, py) {
    if (!gPos) return -1;
    var x = (px - gView.x) / gView.s, y = (py - gView.y) / gView.s, best = -1, bd = Infinity;
    var lim = G.kind === "groups" ? 60 / gView.s : Math.max(gPos.r, 4 / gView.s);
    for (var i = 0; i < G.layer.length; i++) {
      var dx = gPos.p[i][0] - x, dy = gPos.p[i][1] - y, d = Math.sqrt(dx * dx + dy * dy);
      if (d < bd) { bd = d; best = i; }
    }
    return bd <= lim ? best : -1;
  }
  if (gc) {
    var gDrag = null;
    gc.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var r = gc.getBoundingClientRect(), px = ev.clientX - r.left, py = ev.clientY - r.top;
      var f = Math.exp(-(ev.deltaY || 0) * 0.0015), s = Math.min(Math.max(gView.s * f, 0.5), 200);
      gView.x = px - (px - gView.x) * s / gView.s; gView.y = py - (py - gView.y) * s / gView.s; gView.s = s;
      drawGraph();
    }, { passive: false });
    gc.addEventListener("mousedown", function (ev) { gDrag = { x: ev.clientX, y: ev.clientY, gx: gView.x, gy: gView.y }; });
    window.addEventListener("mousemove", function (ev) {
      if (!gDrag) return;
      gView.x = gDrag.gx + ev.clientX - gDrag.x; gView.y = gDrag.gy + ev.clientY - gDrag.y; drawGraph();
    });
    window.addEventListener("mouseup", function () { gDrag = null; });
    gc.addEventListener("dblclick", function () { gView = { s: 1, x: 0, y: 0 }; drawGraph(); });
    gc.addEventListener("mousemove", function (ev) {
      if (gDrag) return;
      var r = gc.getBoundingClientRect(), i = graphAt(ev.clientX - r.left, ev.clientY - r.top);
      if (i < 0) return showTip(ev, null);
      showTip(ev, G.kind === "groups" ? G.text[i] + ": " + G.value[i] + " tasks" : "task " + G.value[i] + "   " + G.text[i]);
    });
    gc.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  }

  function drawAll() { drawTimeline(); drawGraph(); }
  drawAll();
  var rt = null;
  window.addEventListener("resize", function () { clearTimeout(rt); rt = setTimeout(drawAll, 100); });
  root.setAttribute("data-timeline-tasks", String(N));
  root.setAttribute("data-timeline-rects", String(drawnRects));
  root.setAttribute("data-colors", Object.keys(colorsDrawn).sort().join(" "));
  root.setAttribute("data-graph-nodes", String(G.layer.length));
  if (root.getAttribute("data-report-status") !== "error") root.setAttribute("data-report-status", "ok");
})();
`;
