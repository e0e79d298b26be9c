// The pyviz_fast page: pick units, render them while watching each step, dream a photo, open atlas runs.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { layers: [], compare: [] };
const MAX_UNITS = 16;  // per render, as the server's inputs.MAX_UNITS

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw Object.assign(new Error(body.error || `HTTP ${response.status}`), { field: body.field });
  return body;
}

// Show an error in its box and mark the field that holds the bad value: the one the page read
// (error.input), or the one the server named (error.field, that field's input id in `ids`).
// A mark goes as soon as the field is edited (start()).
function showError(box, error, ids = {}) {
  box.textContent = error.message;
  const input = error.input || (error.field && $(ids[error.field] || error.field));
  if (input) input.setAttribute("aria-invalid", "true");
}

function clearErrors(box) {
  box.textContent = "";
  for (const input of document.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

function setStatus(text) { $("status").textContent = text; }

function currentLayer() { return state.layers.find((l) => l.name === $("layer").value); }

// A number field's value as typed (parseInt read "1e3" as 1 and "2.5" as 2, and an empty field as 0),
// within its min and max; an Error naming the field otherwise (the settings are no form: min= is not enforced).
function numberField(id, integer) {
  const input = $(id);
  const name = input.closest("label").firstChild.textContent.trim();
  const value = Number(input.value);
  const low = input.min === "" ? -Infinity : Number(input.min);
  const high = input.max === "" ? Infinity : Number(input.max);
  const what = `${integer ? "an integer" : "a number"} in ${input.min || "-∞"}–${input.max || "∞"}`;
  // an unreadable number input has the value "" (badInput): say so rather than "got ''"
  const typed = input.validity.badInput ? "not a number" : input.value === "" ? "empty" : input.value;
  if (input.value === "" || !Number.isFinite(value) || (integer && !Number.isInteger(value)) || value < low
      || value > high) {
    input.focus();
    throw Object.assign(new Error(`${name} must be ${what}, got ${typed}`), { input });
  }
  return value;
}

function currentPick() {
  const kind = $("kind").value;
  const pick = { layer: $("layer").value, kind };
  if (kind !== "layer") pick.index = numberField("index", true);
  return pick;
}

function pickLabel(pick) {
  return pick.kind === "layer" ? `${pick.layer} (layer)` : `${pick.layer}:${pick.index} ${pick.kind}`;
}

function showLayer() {
  const layer = currentLayer();
  if (!layer) return;
  const kind = $("kind").value;
  $("kind").replaceChildren(...layer.kinds.map((k) => new Option(k, k)));
  if (layer.kinds.includes(kind)) $("kind").value = kind;
  $("index").max = layer.channels - 1;
  $("index-range").textContent = `0–${layer.channels - 1}`;
  $("index").disabled = $("kind").value === "layer";
}

// a shared module (one ReLU used twice in a block) renders its first call: say so in the list
function layerLabel(l) {
  const shared = l.calls > 1 ? `  (shared: 1st of ${l.calls} calls)` : "";
  return `${l.name}  [${l.shape.join("×")}]${shared}`;
}

async function loadLayers() {
  setStatus("loading layers…");
  const { layers } = await api(`/api/layers?model=${encodeURIComponent($("model").value)}`);
  state.layers = layers;
  $("layer").replaceChildren(...layers.map((l) => new Option(layerLabel(l), l.name)));
  const middle = layers.filter((l) => l.shape.length === 3);
  if (middle.length) $("layer").value = middle[Math.floor(middle.length / 2)].name;
  showLayer();
  setStatus("ready");
}

function showCompare() {
  $("compare").replaceChildren(...state.compare.map((pick, i) => {
    const item = document.createElement("li");
    item.textContent = pickLabel(pick);
    const remove = document.createElement("button");
    remove.textContent = "×";
    remove.title = "remove";
    remove.onclick = () => { state.compare.splice(i, 1); showCompare(); };
    item.append(remove);
    return item;
  }));
}

function figures(container, labels) {
  container.replaceChildren(...labels.map((label) => {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.alt = label;
    img.dataset.updates = "0";
    const caption = document.createElement("figcaption");
    caption.textContent = label;
    figure.append(img, caption);
    return figure;
  }));
  return [...container.querySelectorAll("img")];
}

function settings() {
  const out = {};
  for (const name of ["steps", "size", "jitter", "octaves"]) out[name] = numberField(name, true);
  for (const name of ["lr", "blur_start", "blur_end"]) out[name] = numberField(name, false);
  return out;
}

// Follow a job's event stream: update the images at every message, finish on done/failed/cancelled.
// The stop button cancels this job; closing the tab ends the stream, and the server then cancels it.
function follow(job, images, captions, errorBox, button, stop) {
  const source = new EventSource(`/api/jobs/${job.job}/events`);
  const finish = () => { source.close(); button.disabled = false; stop.disabled = true; };
  stop.disabled = false;
  stop.onclick = () => {
    stop.disabled = true;
    api(`/api/jobs/${job.job}/cancel`, { method: "POST" }).catch((error) => showError(errorBox, error));
  };
  source.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.images) {
      message.images.forEach((url, i) => {
        if (!images[i]) return;
        images[i].src = url;
        images[i].dataset.updates = String(Number(images[i].dataset.updates) + 1);
      });
    }
    if (message.state === "queued") setStatus(`queued (${message.ahead} ahead)`);
    if (message.state === "running") {  // steps is 0 until the first step has reported
      setStatus(message.steps ? `${job.kind}: step ${message.step}/${message.steps}` : `${job.kind}: starting`);
    }
    if (message.state === "done" || message.state === "failed" || message.state === "cancelled") {
      finish();
      if (message.state === "cancelled") {
        setStatus(message.steps ? `${job.kind} stopped at step ${message.step}/${message.steps}`
                                : `${job.kind} stopped before its first step`);
        return;
      }
      if (message.state === "failed") {
        errorBox.textContent = message.error;
        setStatus("failed");
        return;
      }
      message.objective.forEach((value, i) => {
        if (captions[i]) captions[i].textContent = `${job.units[i]}  objective ${value.toPrecision(4)}`;
      });
      errorBox.textContent = message.error || "";
      setStatus(`${job.kind} done: ${message.steps} steps in ${message.seconds.toFixed(1)} s`);
    }
  };
  // the stream ends only after the job's last message, so an error means the server went away
  // (EventSource would retry for ever, leaving the page frozen at the last step)
  source.onerror = () => {
    finish();
    errorBox.textContent = "lost the connection to the server";
    setStatus(`${job.kind}: lost the connection to the server`);
  };
}

async function startRender() {
  clearErrors($("render-error"));
  $("render").disabled = true;
  try {
    const picks = state.compare.length ? state.compare : [currentPick()];
    const job = await api("/api/render", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: $("model").value, units: picks, settings: settings(),
                             seed: numberField("seed", true) }),
    });
    const images = figures($("results"), job.units);
    follow(job, images, [...$("results").querySelectorAll("figcaption")], $("render-error"), $("render"),
           $("stop"));
  } catch (error) {
    showError($("render-error"), error);  // the server's fields are named as the page's inputs
    $("render").disabled = false;
  }
}

async function startDream(event) {
  event.preventDefault();
  clearErrors($("dream-error"));
  const file = $("photo").files[0];
  if (!file) {
    showError($("dream-error"), Object.assign(new Error("choose a photo first"), { input: $("photo") }));
    return;
  }
  const form = new FormData();
  form.append("photo", file);
  $("dream").disabled = true;
  try {
    const pick = currentPick();
    for (const [key, value] of Object.entries({ model: $("model").value, layer: pick.layer, kind: pick.kind,
                                                index: pick.index ?? "", steps: numberField("dream-steps", true),
                                                lr: numberField("dream-lr", false) })) {
      form.append(key, value);
    }
    const job = await api("/api/dream", { method: "POST", body: form });
    const images = figures($("dream-result"), [`dream of ${job.units[0]}`]);
    follow(job, images, [...$("dream-result").querySelectorAll("figcaption")], $("dream-error"), $("dream"),
           $("dream-stop"));
  } catch (error) {
    showError($("dream-error"), error, { steps: "dream-steps", lr: "dream-lr" });
    $("dream").disabled = false;
  }
}

async function loadRuns() {
  const { runs } = await api("/api/atlas");
  if (!runs.length) {
    $("runs").innerHTML = "<li>none (start the server with --runs DIR to browse atlas runs)</li>";
    return;
  }
  $("runs").replaceChildren(...runs.map((run) => {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = `/atlas/${run.id}/`;
    link.textContent = `${run.name} (${run.units} units)`;
    link.onclick = (event) => {
      event.preventDefault();
      $("atlas-view").hidden = false;
      $("atlas-view").src = link.href;
    };
    item.append(link, document.createTextNode(" "));
    const tab = document.createElement("a");
    tab.href = link.href;
    tab.target = "_blank";
    tab.textContent = "↗";
    item.append(tab);
    return item;
  }));
}

async function start() {
  const { models } = await api("/api/models");
  $("model").replaceChildren(...models.map((m) => new Option(m, m)));
  $("model").onchange = () => { state.compare = []; showCompare(); loadLayers().catch(fail); };
  $("layer").onchange = showLayer;
  $("kind").onchange = showLayer;
  $("add").onclick = () => {
    clearErrors($("render-error"));
    try {
      const pick = currentPick();
      if (state.compare.some((p) => pickLabel(p) === pickLabel(pick))) {
        throw new Error(`${pickLabel(pick)} is already in the comparison`);
      }
      if (state.compare.length >= MAX_UNITS) {
        throw new Error(`at most ${MAX_UNITS} units, you have ${state.compare.length}: remove one first`);
      }
      state.compare.push(pick);
    } catch (error) {
      showError($("render-error"), error);
    }
    showCompare();
  };
  document.addEventListener("input", (event) => event.target.removeAttribute("aria-invalid"));
  $("render").onclick = startRender;
  $("dream-form").onsubmit = startDream;
  await Promise.all([loadLayers(), loadRuns()]);
}

function fail(error) { setStatus(`error: ${error.message}`); }

start().catch(fail);
