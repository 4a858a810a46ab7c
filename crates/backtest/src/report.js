// stockcast report charts: draws every <figure data-chart> from the JSON in #chart-data as SVG.
// Line charts: hover values, drag to zoom into an x range, double-click to reset, click a legend entry to toggle
// its series. Bar charts: hover values, legend toggles. Heatmaps: value per cell on hover.
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var data = document.getElementById("chart-data");
  // The one palette (charts.rs PALETTE), the same colours as the PNG and SVG files.
  var COLORS = data.getAttribute("data-palette").split(",");
  var W = 900, H = 330, L = 66, R = 14, T = 10, B = 40;
  var charts = JSON.parse(data.textContent);
  var byId = {};
  charts.forEach(function (c) { byId[c.id] = c; });

  function el(tag, attrs, parent) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function fmt(v, pct) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    if (Math.abs(v) < 1e-12) v = 0;
    if (pct) return (v * 100).toFixed(2) + "%";
    var a = Math.abs(v);
    if (a >= 1e5) return (v / 1e3).toFixed(0) + "k";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    if (a >= 10) return v.toFixed(1);
    if (a >= 1) return v.toFixed(2);
    return v.toFixed(4);
  }
  function ticks(lo, hi, n) {
    var span = Math.max(hi - lo, 1e-12), raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 2.5, 5, 10].map(function (m) { return m * mag; }).find(function (s) { return span / s <= n; }) || 10 * mag;
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) out.push(v);
    return out;
  }
  function yRange(c, lo, hi, hidden, zero) {
    var a = Infinity, b = -Infinity;
    c.series.forEach(function (s, k) {
      if (hidden[k]) return;
      for (var i = lo; i <= hi; i++) {
        var v = s[1][i];
        if (v !== null && isFinite(v)) { a = Math.min(a, v); b = Math.max(b, v); }
      }
    });
    if (!isFinite(a)) { a = 0; b = 1; }
    if (zero) { a = Math.min(a, 0); b = Math.max(b, 0); }
    var pad = Math.max((b - a) * 0.05, 1e-9);
    return [a - pad, b + pad];
  }

  function legend(fig, c, state) {
    var box = fig.querySelector(".legend");
    box.innerHTML = "";
    if (c.kind === "heatmap") return;
    c.series.forEach(function (s, k) {
      var span = document.createElement("span");
      span.innerHTML = '<i style="background:' + COLORS[k % COLORS.length] + '"></i>';
      span.appendChild(document.createTextNode(s[0]));
      if (state.hidden[k]) span.className = "off";
      span.addEventListener("click", function () {
        state.hidden[k] = !state.hidden[k];
        draw(fig, c, state);
      });
      box.appendChild(span);
    });
  }

  function axes(svg, c, lo, hi, y0, y1, xOf, yOf, bars) {
    (c.ticks ? c.ticks(y0, y1) : ticks(y0, y1, 5)).forEach(function (v) {
      var y = yOf(v);
      el("line", { x1: L, x2: W - R, y1: y, y2: y, stroke: "#eee" }, svg);
      el("text", { x: L - 6, y: y + 4, "text-anchor": "end", "font-size": 11 }, svg).textContent = c.label ? c.label(v) : fmt(v, c.percent);
    });
    var n = hi - lo + 1, every = Math.max(1, Math.ceil(n / (bars ? 12 : 7)));
    for (var i = lo; i <= hi; i += every) {
      el("text", { x: xOf(i), y: H - B + 16, "text-anchor": "middle", "font-size": 11 }, svg).textContent = c.x[i];
    }
    el("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#999" }, svg);
    el("line", { x1: L, x2: L, y1: T, y2: H - B, stroke: "#999" }, svg);
  }

  function hover(fig, svg, c, state, xOf, indexAt, lo, hi) {
    var tip = fig.querySelector(".tip") || fig.querySelector(".plot").appendChild(document.createElement("div"));
    tip.className = "tip";
    var guide = el("line", { y1: T, y2: H - B, stroke: "#555", "stroke-dasharray": "3,3", visibility: "hidden" }, svg);
    var band = el("rect", { y: T, height: H - B - T, fill: "rgba(33,150,243,.15)", visibility: "hidden" }, svg);
    var overlay = el("rect", { x: L, y: T, width: W - L - R, height: H - B - T, fill: "transparent" }, svg);
    var drag = null;
    function px(ev) {
      var r = svg.getBoundingClientRect();
      return (ev.clientX - r.left) * W / r.width;
    }
    overlay.addEventListener("mousemove", function (ev) {
      var x = px(ev), i = Math.max(lo, Math.min(hi, indexAt(x)));
      guide.setAttribute("x1", xOf(i)); guide.setAttribute("x2", xOf(i)); guide.setAttribute("visibility", "visible");
      var lines = ["<b>" + c.x[i] + "</b>"];
      c.series.forEach(function (s, k) {
        if (!state.hidden[k]) lines.push('<span style="color:' + COLORS[k % COLORS.length] + '">■</span> ' + s[0] + ": " + fmt(s[1][i], c.percent));
      });
      tip.innerHTML = lines.join("<br>");
      tip.style.display = "block";
      var r = svg.getBoundingClientRect(), left = ev.clientX - r.left + 12;
      tip.style.left = (left > r.width - 180 ? left - 200 : left) + "px";
      tip.style.top = (ev.clientY - r.top + 8) + "px";
      if (drag !== null) {
        var a = Math.min(drag, x), b = Math.max(drag, x);
        band.setAttribute("x", a); band.setAttribute("width", b - a); band.setAttribute("visibility", "visible");
      }
    });
    overlay.addEventListener("mouseleave", function () {
      tip.style.display = "none"; guide.setAttribute("visibility", "hidden");
    });
    if (c.kind !== "line") return;
    overlay.addEventListener("mousedown", function (ev) { drag = px(ev); ev.preventDefault(); });
    overlay.addEventListener("mouseup", function (ev) {
      if (drag === null) return;
      var a = indexAt(Math.min(drag, px(ev))), b = indexAt(Math.max(drag, px(ev)));
      drag = null;
      if (b - a >= 2) { state.lo = Math.max(lo, a); state.hi = Math.min(hi, b); draw(fig, c, state); }
    });
    overlay.addEventListener("dblclick", function () { state.lo = 0; state.hi = c.x.length - 1; draw(fig, c, state); });
  }

  // A cumulative-return chart on a log scale: each value v drawn as ln(1 + v), the axis labelled in returns.
  function logView(c) {
    var v = Object.create(c);
    v.series = c.series.map(function (s) {
      return [s[0], s[1].map(function (x) { return x !== null && isFinite(x) && x > -1 ? Math.log1p(x) : null; })];
    });
    v.label = function (t) { return fmt(Math.expm1(t), c.percent); };
    // Ticks at growth factors 1-2-5 × 10^k (−90 %, −50 %, 0 %, +100 %, +400 % …); linear in growth when the
    // range is too narrow for three of them.
    v.ticks = function (lo, hi) {
      var a = Math.exp(lo), b = Math.exp(hi), out = [];
      for (var e = Math.floor(Math.log10(a)) - 1; e <= Math.ceil(Math.log10(b)); e++) {
        [1, 2, 5].forEach(function (m) { var g = m * Math.pow(10, e); if (g >= a && g <= b) out.push(Math.log(g)); });
      }
      return out.length >= 3 ? out : ticks(a, b, 5).filter(function (g) { return g > 0; }).map(Math.log);
    };
    return v;
  }

  function drawLines(svg, c, state) {
    var lo = state.lo, hi = state.hi, yr = yRange(c, lo, hi, state.hidden, false);
    var xOf = function (i) { return L + (hi > lo ? (i - lo) / (hi - lo) : 0.5) * (W - L - R); };
    var yOf = function (v) { return T + (1 - (v - yr[0]) / (yr[1] - yr[0])) * (H - T - B); };
    axes(svg, c, lo, hi, yr[0], yr[1], xOf, yOf, false);
    // Shaded ranges (drawdowns) of the model picked at the top, or else of the one model line shown, in its colour.
    var shown = (c.shades || []).map(function (sh) {
      return [sh, c.series.findIndex(function (s) { return s[0] === sh[0]; })];
    }).filter(function (x) { return x[1] >= 0 && !state.hidden[x[1]]; });
    var owners = shown.map(function (x) { return x[0][0]; }).filter(function (m, i, a) { return a.indexOf(m) === i; });
    var owner = state.pick || (owners.length === 1 ? owners[0] : null);
    shown.forEach(function (x) {
      var sh = x[0], k = x[1];
      if (sh[0] !== owner || sh[2] < lo || sh[1] > hi) return;
      var a = xOf(Math.max(sh[1], lo)), b = xOf(Math.min(sh[2], hi));
      el("rect", { x: a, y: T, width: Math.max(b - a, 1), height: H - B - T, fill: COLORS[k % COLORS.length], "fill-opacity": 0.1, "class": "shade" }, svg);
    });
    var drawn = 0;
    c.series.forEach(function (s, k) {
      if (state.hidden[k]) return;
      var d = "", pen = false;
      for (var i = lo; i <= hi; i++) {
        var v = s[1][i];
        if (v === null || !isFinite(v)) { pen = false; continue; }
        d += (pen ? "L" : "M") + xOf(i).toFixed(1) + "," + yOf(v).toFixed(1);
        pen = true;
      }
      if (d) { el("path", { d: d, fill: "none", stroke: COLORS[k % COLORS.length], "stroke-width": 1.6, "class": "series" }, svg); drawn++; }
    });
    var indexAt = function (x) { return Math.round(lo + (x - L) / (W - L - R) * (hi - lo)); };
    return { xOf: xOf, indexAt: indexAt, drawn: drawn };
  }

  function drawBars(svg, c, state) {
    var n = c.x.length, yr = yRange(c, 0, n - 1, state.hidden, true);
    var slot = (W - L - R) / Math.max(n, 1);
    var xOf = function (i) { return L + (i + 0.5) * slot; };
    var yOf = function (v) { return T + (1 - (v - yr[0]) / (yr[1] - yr[0])) * (H - T - B); };
    axes(svg, c, 0, n - 1, yr[0], yr[1], xOf, yOf, true);
    var shown = c.series.filter(function (s, k) { return !state.hidden[k]; }).length || 1, j = 0, drawn = 0;
    c.series.forEach(function (s, k) {
      if (state.hidden[k]) return;
      var w = slot * 0.8 / shown;
      for (var i = 0; i < n; i++) {
        var v = s[1][i];
        if (v === null || !isFinite(v)) continue;
        var x = L + i * slot + slot * 0.1 + j * w, y = Math.min(yOf(v), yOf(0)), h = Math.abs(yOf(v) - yOf(0));
        el("rect", { x: x, y: y, width: Math.max(w * 0.95, 1), height: Math.max(h, 0.5), fill: COLORS[k % COLORS.length], "class": "series" }, svg);
        drawn++;
      }
      j++;
    });
    var indexAt = function (x) { return Math.floor((x - L) / slot); };
    return { xOf: xOf, indexAt: indexAt, drawn: drawn };
  }

  function drawHeatmap(svg, c) {
    var rows = c.series.length, cols = c.x.length, cw = (W - L - R) / cols, ch = Math.min(28, (H - T - B) / Math.max(rows, 1));
    svg.setAttribute("viewBox", "0 0 " + W + " " + (T + rows * ch + 24));
    svg.setAttribute("height", T + rows * ch + 24);
    var scale = 1e-12;
    c.series.forEach(function (s) { s[1].forEach(function (v) { if (v !== null && isFinite(v)) scale = Math.max(scale, Math.abs(v)); }); });
    var drawn = 0;
    c.series.forEach(function (s, r) {
      el("text", { x: L - 6, y: T + r * ch + ch * 0.65, "text-anchor": "end", "font-size": 11 }, svg).textContent = s[0];
      s[1].forEach(function (v, i) {
        var ok = v !== null && isFinite(v), t = ok ? Math.max(-1, Math.min(1, v / scale)) : 0;
        var fill = !ok ? "#f5f5f5" : t < 0 ? "rgb(255," + Math.round(255 - 216 * -t) + "," + Math.round(255 - 215 * -t) + ")"
          : "rgb(" + Math.round(255 - 211 * t) + "," + Math.round(255 - 95 * t) + "," + Math.round(255 - 211 * t) + ")";
        var cell = el("rect", { x: L + i * cw, y: T + r * ch, width: cw - 1, height: ch - 1, fill: fill, "class": "series" }, svg);
        el("title", {}, cell).textContent = s[0] + " " + c.x[i] + ": " + fmt(v, c.percent);
        if (ok) {
          el("text", { x: L + i * cw + cw / 2, y: T + r * ch + ch * 0.65, "text-anchor": "middle", "font-size": 10 }, svg).textContent = (c.percent ? (v * 100).toFixed(1) : v.toFixed(2));
        }
        drawn++;
      });
    });
    c.x.forEach(function (m, i) {
      el("text", { x: L + i * cw + cw / 2, y: T + rows * ch + 14, "text-anchor": "middle", "font-size": 11 }, svg).textContent = m;
    });
    return { drawn: drawn };
  }

  function draw(fig, c, state) {
    var plot = fig.querySelector(".plot");
    Array.prototype.slice.call(plot.querySelectorAll("svg")).forEach(function (s) { plot.removeChild(s); });
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, "font-family": "sans-serif" });
    plot.insertBefore(svg, plot.firstChild);
    var r;
    if (c.kind === "heatmap") r = drawHeatmap(svg, c);
    else if (c.kind === "bar") r = drawBars(svg, c, state);
    else r = drawLines(svg, state.log ? logView(c) : c, state);
    if (r.xOf) hover(fig, svg, c, state, r.xOf, r.indexAt, c.kind === "line" ? state.lo : 0, c.kind === "line" ? state.hi : c.x.length - 1);
    fig.setAttribute("data-drawn", r.drawn);
    legend(fig, c, state);
  }

  var drawnFigures = [];
  Array.prototype.slice.call(document.querySelectorAll("figure[data-chart]")).forEach(function (fig) {
    var c = byId[fig.getAttribute("data-chart")];
    if (!c) { fig.setAttribute("data-drawn", "0"); return; }
    var state = { lo: 0, hi: c.x.length - 1, hidden: {}, log: false };
    draw(fig, c, state);
    drawnFigures.push([fig, c, state]);
    var toggle = fig.querySelector(".log-toggle");
    if (toggle) toggle.addEventListener("change", function () { state.log = toggle.checked; draw(fig, c, state); });
  });

  // The model picker: the per-model charts, tables and parameters of one model (the first by default), or of
  // all; the comparison charts keep every model's line and shade the picked model's drawdowns.
  var picker = document.getElementById("model-select");
  if (picker) {
    var applyPick = function () {
      var pick = picker.value;
      Array.prototype.slice.call(document.querySelectorAll("main [data-model]")).forEach(function (e) {
        e.classList.toggle("hidden-model", pick !== "" && e.getAttribute("data-model") !== pick);
      });
      drawnFigures.forEach(function (f) {
        if (!f[1].shades) return;
        f[2].pick = pick;
        draw(f[0], f[1], f[2]);
      });
    };
    picker.addEventListener("change", applyPick);
    applyPick();
  }

  // Sortable tables: click a header to sort by that column (numbers numerically), again to reverse.
  Array.prototype.slice.call(document.querySelectorAll("table.sortable")).forEach(function (table) {
    var heads = table.querySelectorAll("th");
    Array.prototype.slice.call(heads).forEach(function (th, col) {
      th.addEventListener("click", function () {
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        var dir = th.getAttribute("data-dir") === "asc" ? -1 : 1;
        Array.prototype.slice.call(heads).forEach(function (h) { h.removeAttribute("data-dir"); });
        th.setAttribute("data-dir", dir > 0 ? "asc" : "desc");
        var key = function (r) {
          var t = r.cells[col].textContent.replace("%", ""), n = parseFloat(t);
          return isNaN(n) || !/^[-+]?[0-9.]/.test(t) ? t : n;
        };
        rows.sort(function (a, b) {
          var x = key(a), y = key(b);
          return (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y))) * dir;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  document.body.setAttribute("data-charts-drawn", "yes");
})();
