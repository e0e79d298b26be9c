/* pyviz_fast atlas gallery (vanilla JS, no build step, works from file://).
 *
 * gallery/data.js sets window.PVF_ATLAS: {run, layers: [...], units: {column: [value per unit]}}.
 * Only the cells in view are in the DOM (virtual scrolling inside #scroller, so the page itself is
 * one screen tall), and 100,000 units cost what 200 do.
 * A unit's details (objective curve, dataset examples, statistics) live in one script per layer,
 * gallery/layers/<layer>.js, loaded when a detail view first needs it. Every name from the data
 * is set as text, never parsed as HTML. State (layer, filter, search, sort, open unit) is in the
 * URL hash, so a view can be linked. While a run is going on, data.js is reloaded every 10 s.
 * A run of several facets per unit has a "facets" column: its cells show them side by side, as
 * does the detail view (beside the top dataset examples when grounded); a MaCo run's detail view
 * can show each picture's RGBA variant (alpha = the attribution map) over a checkerboard. A
 * "class" column names a class layer's units: shown in cells and the detail view, searched. */
(function () {
  "use strict";
  var GAP = 6, FACET_GAP = 2, LOW_PERCENTILE = 50, BUFFER_ROWS = 3, RELOAD_MS = 10000;
  var STATUS = {
    all: "all units", ok: "ok", dead: "dead in optimization", stalled: "stalled (fires, never rose)",
    flat: "flat picture (one colour)", failed: "failed or non-finite", datadead: "dead on data",
    low: "low percentile (< " + LOW_PERCENTILE + ")", warn: "path warning"
  };
  var SORTS = {
    order: "model order", "value-desc": "objective, high first", "value-asc": "objective, low first",
    "rise-desc": "rise, high first", "pct-desc": "percentile, high first", "pct-asc": "percentile, low first"
  };
  var atlas, U, count, facetCount = 1, layerOf = {}, posInLayer = [], order = [];
  var state = { layer: "", status: "all", q: "", sort: "order", unit: "" };
  var details = {}, waiting = {}, alphaView = false;
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "className") node.className = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  function fmt(value) {
    if (value === null || value === undefined || value === "") return "n/a";
    if (typeof value !== "number" || Number.isInteger(value)) return String(value);
    var abs = Math.abs(value);
    return (abs !== 0 && (abs < 1e-3 || abs >= 1e5)) ? value.toExponential(2) : String(+value.toPrecision(3));
  }

  function failed(i) { return U.status[i] !== "ok" && U.status[i] !== "dead"; }  // 'dead' units have an image

  function flags(i) {
    var out = [];
    if (failed(i)) out.push("failed");
    else if (U.dead[i]) out.push("dead");
    else if (U.stalled[i]) out.push("stalled");
    if (U.flat[i]) out.push("flat");
    if (U.data_dead[i]) out.push("datadead");
    if (U.percentile[i] !== null && U.percentile[i] < LOW_PERCENTILE) out.push("low");
    if (U.warn[i]) out.push("warn");
    return out;
  }

  function load(data) {
    atlas = data;
    U = atlas.units;
    count = U.unit.length;
    layerOf = {};
    atlas.layers.forEach(function (layer, k) { layerOf[layer.name] = k; });
    var seen = atlas.layers.map(function () { return 0; });
    posInLayer = U.layer.map(function (k) { return seen[k]++; });
    facetCount = Math.max.apply(null, [1].concat((U.facets || []).map(function (f) { return f ? f.length : 1; })));
  }

  function readHash() {
    var params = new URLSearchParams(location.hash.slice(1));
    state.layer = params.get("layer") || "";
    state.status = STATUS[params.get("status")] ? params.get("status") : "all";
    state.q = params.get("q") || "";
    state.sort = SORTS[params.get("sort")] ? params.get("sort") : "order";
    state.unit = params.get("unit") || "";
  }

  function writeHash() {
    var params = new URLSearchParams();
    Object.keys(state).forEach(function (key) {
      if (state[key] && !(key === "status" && state[key] === "all") && !(key === "sort" && state[key] === "order")) {
        params.set(key, state[key]);
      }
    });
    var text = params.toString();
    history.replaceState(null, "", text ? "#" + text : location.pathname + location.search);
  }

  function className(i) { return U["class"] ? U["class"][i] : null; }

  function matches(i, layer, query) {
    if (layer >= 0 && U.layer[i] !== layer) return false;
    if (query && (U.unit[i] + " " + (className(i) || "")).toLowerCase().indexOf(query) < 0) return false;
    if (state.status === "all") return true;
    if (state.status === "ok") return !failed(i) && !U.dead[i] && !U.stalled[i];
    return flags(i).indexOf(state.status) >= 0;
  }

  function sortValue(i) {
    var field = state.sort.split("-")[0];
    return field === "pct" ? U.percentile[i] : U[field][i];
  }

  function refilter() {
    var layer = state.layer in layerOf ? layerOf[state.layer] : -1, query = state.q.toLowerCase();
    order = [];
    for (var i = 0; i < count; i++) if (matches(i, layer, query)) order.push(i);
    if (state.sort !== "order") {
      var sign = /-asc$/.test(state.sort) ? 1 : -1;
      order.sort(function (a, b) {
        var x = sortValue(a), y = sortValue(b);
        if (x === null || x === undefined) return (y === null || y === undefined) ? a - b : 1;  // unknowns last
        if (y === null || y === undefined) return -1;
        return x === y ? a - b : sign * (x - y);
      });
    }
    $("count").textContent = order.length + " of " + count + " units";
    showLayerInfo(layer);
    $("scroller").scrollTop = 0;
    draw(true);
  }

  function showLayerInfo(layer) {
    var box = $("layer-info");
    box.textContent = "";
    if (layer < 0) return;
    var info = atlas.layers[layer];
    box.appendChild(el("span", { text: info.name + ": " + info.count + " units, " + info.dead + " dead, " +
      info.stalled + " stalled, " + info.flat + " flat, " + info.failed + " failed" +
      (info.data_dead !== null ? ", " + info.data_dead + " dead on data" : "") + " " }));
    if (info.calls > 1) box.appendChild(el("span", { className: "warning", text: sharedNote(info) + " " }));
    if (info.sheet) box.appendChild(el("a", { href: info.sheet, text: "contact sheet" }));
  }

  // one module run several times per forward (a ResNet block's ReLU): the pictures are of its first call
  function sharedNote(layer) {
    return "shared module: runs " + layer.calls + "x per forward, the first call is shown";
  }

  function geometry() {
    var style = getComputedStyle(document.documentElement);
    var thumb = parseFloat(style.getPropertyValue("--thumb")), height = parseFloat(style.getPropertyValue("--cell-h"));
    var cell = parseFloat(style.getPropertyValue("--cell")) + (facetCount - 1) * (thumb + FACET_GAP);
    var width = $("grid").clientWidth;
    var columns = Math.max(1, Math.floor((width + GAP) / (cell + GAP)));
    return { cell: cell, height: height, columns: columns, rows: Math.ceil(order.length / columns) };
  }

  var drawn = "";
  function draw(force) {
    var grid = $("grid"), scroller = $("scroller"), g = geometry();
    grid.style.height = Math.max(0, g.rows * (g.height + GAP) - GAP) + "px";
    var top = scroller.scrollTop;
    var first = Math.max(0, Math.floor(top / (g.height + GAP)) - BUFFER_ROWS);
    var last = Math.min(g.rows, Math.ceil((top + scroller.clientHeight) / (g.height + GAP)) + BUFFER_ROWS);
    var key = [first, last, g.columns].join(",");
    if (!force && key === drawn) return;
    drawn = key;
    var fragment = document.createDocumentFragment();
    for (var row = first; row < last; row++) {
      for (var col = 0; col < g.columns; col++) {
        var k = row * g.columns + col;
        if (k >= order.length) break;
        var node = cell(order[k]);
        node.style.left = col * (g.cell + GAP) + "px";
        node.style.width = g.cell + "px";
        node.style.top = row * (g.height + GAP) + "px";
        fragment.appendChild(node);
      }
    }
    grid.textContent = "";
    grid.appendChild(fragment);
  }

  function cell(i) {
    var marks = flags(i);
    var facets = U.facets && U.facets[i];
    var picture = facets ? el("div", { className: "facet-strip" }, facets.map(function (src, f) {
      return el("img", { src: src, alt: U.unit[i] + " facet " + f, loading: "lazy" });
    })) : U.file[i] ? el("img", { src: U.thumb[i] || U.file[i], alt: U.unit[i], loading: "lazy" })
      : el("div", { className: "noimg", text: "no image" });
    var name = el("div", { className: "name" }, [
      state.layer ? null : el("span", { className: "layer", text: atlas.layers[U.layer[i]].name }),
      el("span", { className: "idx", text: U.index[i] !== null ? (state.layer ? "#" : ":") + U.index[i] : U.unit[i] }),
      className(i) ? el("span", { className: "class", text: className(i) }) : null
    ]);
    var lines = [name, el("div", { className: "num", text: "obj " + fmt(U.value[i]) }),
      el("div", { className: "num", text: "rise " + fmt(U.rise[i]) })];
    if (U.percentile[i] !== null) lines.push(el("div", { className: "num", text: "pct " + fmt(U.percentile[i]) }));
    var badges = el("div", { className: "badges" }, marks.map(function (mark) {
      return el("span", { className: "badge " + mark, text: mark === "datadead" ? "data-dead" : mark === "low" ? "low pct" : mark });
    }));
    var node = el("figure", {
      className: "cell " + marks.filter(function (m) { return m !== "low" && m !== "warn"; }).join(" "),
      title: U.unit[i] + (failed(i) ? " (" + U.status[i] + ")" : ""), tabindex: "0", "data-unit": U.unit[i]
    }, [picture, badges, el("figcaption", { className: "caption" }, lines)]);
    node.addEventListener("click", function () { openDetail(i); });
    node.addEventListener("keydown", function (event) { if (event.key === "Enter") openDetail(i); });
    return node;
  }

  function loadDetail(layer, done) {
    if (details[layer]) return done(details[layer]);
    if (waiting[layer]) return waiting[layer].push(done);
    waiting[layer] = [done];
    var script = el("script", { src: atlas.layers[layer].detail });
    script.onerror = function () { details[layer] = []; flush(layer); };
    document.head.appendChild(script);
  }

  function flush(layer) {
    (waiting[layer] || []).forEach(function (done) { done(details[layer]); });
    delete waiting[layer];
  }

  window.PVF_ATLAS_DETAIL = function (layer, data) { details[layer] = data; flush(layer); };

  function facts(rows, table) {
    table = table || el("table", { className: "facts" });
    rows.filter(Boolean).forEach(function (row) {
      table.appendChild(el("tr", {}, [el("th", { text: row[0] }), el("td", { text: fmt(row[1]), className: row[2] || "" })]));
    });
    return table;
  }

  function curve(values) {
    var ns = "http://www.w3.org/2000/svg", width = 384, height = 150, pad = 28;
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "curve");
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("role", "img");
    var finite = values.filter(function (v) { return v !== null; });
    if (!finite.length) return svg;
    var lo = Math.min.apply(null, finite), hi = Math.max.apply(null, finite), span = hi - lo || 1;
    var points = [];
    values.forEach(function (v, k) {
      if (v === null) return;
      var x = pad + (width - pad - 6) * k / Math.max(1, values.length - 1);
      points.push(x.toFixed(1) + "," + (height - 18 - (height - 30) * (v - lo) / span).toFixed(1));
    });
    var line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#8cf");
    line.setAttribute("stroke-width", "2");
    svg.appendChild(line);
    [[fmt(hi), 14], [fmt(lo), height - 18]].forEach(function (label) {
      var text = document.createElementNS(ns, "text");
      text.setAttribute("x", "2"); text.setAttribute("y", label[1]);
      text.setAttribute("fill", "#aaa"); text.setAttribute("font-size", "12");
      text.textContent = label[0];
      svg.appendChild(text);
    });
    var axis = document.createElementNS(ns, "text");
    axis.setAttribute("x", pad); axis.setAttribute("y", height - 3);
    axis.setAttribute("fill", "#aaa"); axis.setAttribute("font-size", "12");
    axis.textContent = "objective over the optimization steps";
    svg.appendChild(axis);
    return svg;
  }

  function exampleList(items) {
    return el("div", { className: "examples" }, items.map(function (ex) {
      var caption = "act " + fmt(ex.activation) + (ex.label !== null && ex.label !== undefined ? " · " + ex.label : "");
      return el("figure", { className: "example", title: String(ex.source) }, [
        el("img", { src: ex.crop, alt: "dataset example " + ex.source }),
        el("figcaption", { text: caption })]);
    }));
  }

  function datasetSection(d) {
    var parts = [el("h3", { text: "Dataset (" + atlas.run.dataset.spec + ")" })];
    var pct = d.percentile;
    parts.push(facts([
      ["percentile of the picture", pct, pct !== null && pct < LOW_PERCENTILE ? "warning" : ""],
      ["picture's activation", d.visualization_activation],
      ["dead on data", d.dead_on_data ? "yes: never active on the dataset" : "no", d.dead_on_data ? "warning" : ""],
      ["mean", d.stats && d.stats.mean], ["std", d.stats && d.stats.std],
      ["min", d.stats && d.stats.min], ["median", d.stats && d.stats.q50],
      ["90th percentile", d.stats && d.stats.q90], ["99th percentile", d.stats && d.stats.q99],
      ["max", d.stats && d.stats.max]
    ]));
    if (d.path_similarity && d.path_similarity.length) {
      parts.push(el("h3", { text: "Path similarity (picture vs top examples, vs random examples)" }));
      parts.push(facts(d.path_similarity.map(function (p) {
        return [p.layer, "top " + fmt(p.top) + " · random " + fmt(p.random), p.top <= p.random ? "warning" : ""];
      })));
    }
    if (d.examples && d.examples.length) {
      parts.push(el("h3", { text: "Top examples (most activating first)" }), exampleList(d.examples));
    }
    if (d.bottom && d.bottom.length) {
      parts.push(el("h3", { text: "Bottom examples (least activating first)" }), exampleList(d.bottom));
    }
    return el("section", {}, parts);
  }

  function picture(src, alt, caption, rgba) {
    var img = el("img", { className: "full", src: src, alt: alt });
    if (rgba) { img.dataset.plain = src; img.dataset.rgba = rgba; }
    return el("figure", { className: "picture" }, [el("a", { href: src }, [img]),
      caption ? el("figcaption", { text: caption }) : null]);
  }

  // The detail's pictures once its layer's details are in: every facet side by side (with its
  // objective), the top dataset examples beside them when grounded, and the alpha toggle.
  function showPictures(box, name, d, nav) {
    var facets = d.facets && d.facets.length > 1 ? d.facets : null;
    if (!facets && !d.rgba) return;  // the one plain picture is already shown
    var shown = facets ? facets.map(function (f, k) {
      return picture(f.file, name + " facet " + k, "facet " + k + " · obj " + fmt(f.value), f.rgba);
    }) : [picture(box.querySelector("img").getAttribute("src"), name, null, d.rgba)];
    box.textContent = "";
    box.className = "pictures" + (facets ? " facets" : "");
    shown.forEach(function (node) { box.appendChild(node); });
    if (facets && d.examples && d.examples.length) {
      box.appendChild(el("div", { className: "beside" }, [el("div", { className: "label", text: "top dataset examples" }),
        exampleList(d.examples.slice(0, Math.max(2, facets.length)))]));
    }
    if (!box.querySelector("img[data-rgba]")) return;
    var toggle = el("button", { id: "alpha", type: "button",
      title: "the picture with MaCo's attribution map as transparency" });
    function show(on) {  // the choice holds for the next units opened, to compare their maps
      alphaView = on;
      toggle.setAttribute("aria-pressed", String(on));
      toggle.textContent = on ? "show the plain picture" : "show attribution map (alpha)";
      box.querySelectorAll("img[data-rgba]").forEach(function (img) {
        img.src = on ? img.dataset.rgba : img.dataset.plain;
        img.classList.toggle("checker", on);
        img.parentNode.href = img.src;
      });
    }
    toggle.onclick = function () { show(!alphaView); };
    show(alphaView);
    nav.appendChild(toggle);
  }

  function openDetail(i) {
    state.unit = U.unit[i];
    writeHash();
    var box = $("detail"), at = order.indexOf(i), list = at >= 0 ? order : null;
    box.hidden = false;
    document.body.style.overflow = "hidden";
    var prev = el("button", { text: "← previous", id: "prev" }), next = el("button", { text: "next →", id: "next" });
    var close = el("button", { text: "close (Esc)", id: "close" });
    if (!list || at <= 0) prev.disabled = true;
    if (!list || at >= list.length - 1) next.disabled = true;
    prev.onclick = function () { openDetail(list[at - 1]); };
    next.onclick = function () { openDetail(list[at + 1]); };
    close.onclick = closeDetail;
    var image = U.file[i] ? el("div", { className: "pictures" }, [picture(U.file[i], U.unit[i])])
      : el("div", { className: "noimg", text: "no image" });
    var layer = U.layer[i], info = el("div", { className: "info" });
    var table = facts([
      ["unit", U.unit[i]], ["layer", atlas.layers[layer].name], ["channel index", U.index[i]],
      className(i) ? ["class", className(i)] : null,
      atlas.layers[layer].calls > 1 ? ["layer note", sharedNote(atlas.layers[layer]), "warning"] : null,
      ["status", U.status[i], failed(i) ? "warning" : ""],
      ["final objective", U.value[i]], ["start", U.start[i]], ["max", U.max[i]], ["rise", U.rise[i]],
      ["dead in optimization", U.dead[i] ? "yes: the activation never rose, and it never moved or ends off"
        : U.stalled[i] ? "no, stalled: it fires (ends at " + fmt(U.value[i]) + ") but never rose above its start"
        : "no", U.dead[i] || U.stalled[i] ? "warning" : ""],
      U.flat[i] ? ["picture", "flat: one colour (a unit that wants one colour everywhere, or a render that " +
        "collapsed: its dataset examples tell which)"] : null,
      U.percentile[i] !== null ? ["percentile among dataset examples", U.percentile[i]] : null
    ]);
    var nav = el("nav", {}, [prev, next, close, el("span", { text: list ? (at + 1) + " / " + list.length : "" })]);
    var panel = el("div", { className: "panel", role: "dialog", "aria-label": "unit " + U.unit[i] }, [nav,
      el("h2", { text: U.unit[i] + (className(i) ? " (" + className(i) + ")" : "") }),
      el("div", { className: "cols" }, [image, info])
    ]);
    info.appendChild(table);
    box.textContent = "";
    box.appendChild(panel);
    loadDetail(layer, function (data) {
      if (state.unit !== U.unit[i]) return;  // another unit was opened meanwhile
      var d = data[posInLayer[i]] || {};
      facts([d.reason ? ["failure reason", d.reason, "warning"] : null, d.seed !== undefined ? ["seed", d.seed] : null], table);
      if (d.curve && d.curve.length) info.appendChild(curve(d.curve));
      if (U.file[i]) showPictures(image, U.unit[i], d, nav);
      if (atlas.run.dataset && d.stats) panel.appendChild(datasetSection(d));
    });
    (list && at >= 0 ? next : close).focus();
  }

  function closeDetail() {
    $("detail").hidden = true;
    $("detail").textContent = "";
    document.body.style.overflow = "";
    state.unit = "";
    writeHash();
  }

  function fillControls() {
    var layerSelect = $("layer");
    layerSelect.textContent = "";
    layerSelect.appendChild(el("option", { value: "", text: "all layers (" + count + ")" }));
    atlas.layers.forEach(function (layer) {
      layerSelect.appendChild(el("option", { value: layer.name, text: layer.name + " (" + layer.count + ", " +
        layer.dead + " dead, " + layer.stalled + " stalled, " + layer.flat + " flat, " + layer.failed + " failed)" }));
    });
    [["status", STATUS], ["sort", SORTS]].forEach(function (pair) {
      var select = $(pair[0]);
      select.textContent = "";
      Object.keys(pair[1]).forEach(function (key) { select.appendChild(el("option", { value: key, text: pair[1][key] })); });
    });
    layerSelect.value = state.layer in layerOf ? state.layer : "";
    $("status").value = state.status;
    $("sort").value = state.sort;
    $("q").value = state.q;
  }

  function fillSummary() {
    var run = atlas.run;
    $("title").textContent = "Atlas of " + run.model;
    document.title = "pyviz_fast atlas: " + run.model;
    $("summary").textContent = count + " units in " + atlas.layers.length + " layers; " + run.dead +
      " dead in optimization, " + run.stalled + " stalled, " + run.flat + " flat pictures, " + run.failed + " failed or with non-finite steps" +
      (run.dataset ? "; grounded on " + run.dataset.spec + " (" + run.dataset.examples + " examples)" : "") +
      ". Seed " + run.seed + ", settings hash " + run.settings_hash + "." +
      (run.complete ? "" : " Run in progress (updated " + run.updated + "; this page refreshes).");
    var partial = document.querySelector(".partial");  // written by the run into index.html
    if (partial && run.expected && count >= run.expected) partial.remove();  // the data caught up
    var rows = $("settings");
    rows.textContent = "";
    Object.keys(run.settings || {}).sort().forEach(function (key) {
      rows.appendChild(el("tr", {}, [el("td", { text: key }), el("td", { text: JSON.stringify(run.settings[key]) })]));
    });
    var table = $("layers");
    table.textContent = "";
    table.appendChild(el("tr", {}, ["layer", "units", "dead", "stalled", "flat", "failed", "dead on data", "path warnings", "contact sheet"]
      .map(function (h) { return el("th", { text: h }); })));
    atlas.layers.forEach(function (layer) {
      var link = el("a", { href: "#layer=" + encodeURIComponent(layer.name), text: layer.name,
        title: layer.calls > 1 ? sharedNote(layer) : "" });
      table.appendChild(el("tr", {}, [el("td", {}, [link]), el("td", { text: String(layer.count) }),
        el("td", { text: String(layer.dead) }), el("td", { text: String(layer.stalled) }),
        el("td", { text: String(layer.flat) }), el("td", { text: String(layer.failed) }),
        el("td", { text: fmt(layer.data_dead) }), el("td", { text: fmt(layer.warn) }),
        el("td", {}, [layer.sheet ? el("a", { href: layer.sheet, text: "sheet" }) : null])]));
    });
  }

  function applyState() {
    fillControls();
    refilter();
    var i = state.unit ? U.unit.indexOf(state.unit) : -1;
    if (i >= 0) openDetail(i);
    else if (!$("detail").hidden) closeDetail();
  }

  function start() {
    load(window.PVF_ATLAS);
    readHash();
    fillSummary();
    applyState();
    $("layer").onchange = function () { state.layer = this.value; writeHash(); refilter(); };
    $("status").onchange = function () { state.status = this.value; writeHash(); refilter(); };
    $("sort").onchange = function () { state.sort = this.value; writeHash(); refilter(); };
    var timer = null;
    $("q").oninput = function () {
      var value = this.value;
      clearTimeout(timer);
      timer = setTimeout(function () { state.q = value; writeHash(); refilter(); }, 120);
    };
    $("scroller").addEventListener("scroll", function () { draw(false); }, { passive: true });
    window.addEventListener("resize", function () { draw(true); });
    window.addEventListener("hashchange", function () { readHash(); applyState(); });
    document.addEventListener("keydown", function (event) {
      if ($("detail").hidden) return;
      if (event.key === "Escape") closeDetail();
      else if (event.key === "ArrowLeft" && $("prev") && !$("prev").disabled) $("prev").click();
      else if (event.key === "ArrowRight" && $("next") && !$("next").disabled) $("next").click();
    });
    $("top").onclick = function () { $("scroller").scrollTop = 0; };
    if (!atlas.run.complete) reloading = setInterval(reload, RELOAD_MS);
  }

  var reloading = null;
  function reload() {
    var script = el("script", { src: "gallery/data.js?t=" + Date.now() });
    script.onload = function () {
      script.remove();
      load(window.PVF_ATLAS);
      if (atlas.run.complete) clearInterval(reloading);  // the run finished: nothing more will change
      details = {};
      fillSummary();
      fillControls();
      refilter();
    };
    document.head.appendChild(script);
  }

  if (!window.PVF_ATLAS) {
    document.getElementById("summary").textContent = "gallery/data.js is missing: the run has written no units yet.";
    return;
  }
  start();
})();
