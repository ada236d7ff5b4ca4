// The page shell: a hash router (#/view/arg?since=..&filters..), the time-range picker, the
// notice bar and the API-timings footer. Views are modules with render(root, ctx); the range
// and filters live in the hash, so every view is a link that can be shared or reloaded.

import { ApiError, setKey } from "./api.js";
import { el, fmtMs } from "./format.js";
import * as overview from "./overview.js";
import * as requests from "./requests.js";
import * as detail from "./request_detail.js";
import * as sessions from "./sessions.js";

const VIEWS = { overview, requests, request: detail, sessions, session: sessions };
const DEFAULT_SINCE = "24h";

function parseHash() {
  const [path, qs] = location.hash.replace(/^#\/?/, "").split("?");
  const [view, ...rest] = path.split("/");
  return { view: VIEWS[view] ? view : "overview", arg: rest.map(decodeURIComponent).join("/"), params: new URLSearchParams(qs || "") };
}

export function navigate(view, arg = "", params = new URLSearchParams()) {
  const qs = params.toString();
  const hash = "#/" + view + (arg ? "/" + encodeURIComponent(arg) : "") + (qs ? "?" + qs : "");
  // Not ready from this moment (hashchange fires later); the same hash again means reload.
  delete document.body.dataset.ready;
  if (hash === location.hash) render();
  else location.hash = hash;
}

// The range as the API takes it: a duration back from now, or two ISO instants.
function rangeOf(params) {
  const since = params.get("since") || DEFAULT_SINCE;
  const until = params.get("until") || undefined;
  return { since, until };
}

function isoToLocalInput(iso) {
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function showRange(range) {
  const form = document.getElementById("range");
  for (const b of form.querySelectorAll("[data-since]")) {
    b.classList.toggle("active", !range.until && b.dataset.since === range.since);
  }
  const custom = /T/.test(range.since);
  form.from.value = custom ? isoToLocalInput(range.since) : "";
  form.to.value = custom && range.until ? isoToLocalInput(range.until) : "";
}

function setRange(since, until) {
  const { view, arg, params } = parseHash();
  params.set("since", since);
  if (until) params.set("until", until); else params.delete("until");
  params.delete("cursor");
  navigate(view, arg, params);
}

function wireRange() {
  const form = document.getElementById("range");
  for (const b of form.querySelectorAll("[data-since]")) b.addEventListener("click", () => setRange(b.dataset.since));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!form.from.value) return notice("Pick a start time for a custom range.");
    const since = new Date(form.from.value).toISOString();
    const until = form.to.value ? new Date(form.to.value).toISOString() : "";
    setRange(since, until);
  });
}

export function notice(message, kind = "error") {
  const bar = document.getElementById("notice");
  bar.replaceChildren();
  bar.hidden = !message;
  bar.className = "notice " + kind;
  if (message) bar.append(message);
}

// 401: the admin server wants its key; ask once, keep it for this tab only.
function askForKey() {
  const input = el("input", { type: "password", placeholder: "admin key", autocomplete: "off" });
  const form = el("form", { class: "keyform", onsubmit: (ev) => { ev.preventDefault(); setKey(input.value.trim()); notice(""); render(); } },
    "This admin server needs its key (admin.key): ", input, el("button", { type: "submit" }, "Use key"));
  notice(form, "info");
}

function showTimings(started, count) {
  const calls = window.fastgwTimings.slice(-count);
  const slowest = calls.reduce((m, c) => Math.max(m, c.ms), 0);
  document.getElementById("timings").textContent = calls.length
    ? `${calls.length} API call${calls.length > 1 ? "s" : ""} · slowest ${fmtMs(slowest)} · view ready in ${fmtMs(performance.now() - started)}`
    : "";
}

let generation = 0;

async function render() {
  const { view, arg, params } = parseHash();
  const mine = ++generation;
  delete document.body.dataset.ready;
  const range = rangeOf(params);
  showRange(range);
  for (const a of document.querySelectorAll("#tabs a")) {
    const tab = a.dataset.view;
    a.classList.toggle("active", tab === view || (view === "request" && tab === "requests") || (view === "session" && tab === "sessions"));
    const keep = new URLSearchParams();
    keep.set("since", range.since);
    if (range.until) keep.set("until", range.until);
    a.href = "#/" + tab + "?" + keep;
  }
  const root = document.getElementById("view");
  root.classList.add("loading");
  const before = window.fastgwTimings.length;
  const started = performance.now();
  const ctx = { view, arg, params, range, navigate, stale: () => mine !== generation };
  try {
    await VIEWS[view].render(root, ctx);
    if (mine !== generation) return;
    notice("");
    performance.mark("fastgw:ready");
    document.body.dataset.ready = view;
  } catch (err) {
    if (mine !== generation) return;
    if (err instanceof ApiError && err.status === 401) askForKey();
    else if (err instanceof ApiError && err.status === 503) notice("No requests have been logged yet: the log store has no tables.", "info");
    else notice(err instanceof ApiError ? `The admin API refused: ${err.message}` : `The page failed: ${err.message}`);
    document.body.dataset.ready = "error";
  } finally {
    root.classList.remove("loading");
    showTimings(started, window.fastgwTimings.length - before);
  }
}

wireRange();
window.addEventListener("hashchange", render);
// Clickable rows (tr.pick) take the keyboard too: Tab to one, Enter opens it.
new MutationObserver(() => {
  for (const tr of document.querySelectorAll("tr.pick:not([tabindex])")) tr.tabIndex = 0;
}).observe(document.getElementById("view"), { childList: true, subtree: true });
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && ev.target instanceof HTMLTableRowElement && ev.target.classList.contains("pick")) ev.target.click();
});
render();
