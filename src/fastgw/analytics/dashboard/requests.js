// The request log: filters (kept in the URL), newest first, 50 rows a page with "Load more"
// following the API's keyset cursor. A row opens the request's detail.

import { get } from "./api.js";
import { disposeCharts } from "./charts.js";
import { el, fmtCount, fmtMs, fmtTime, fmtUSD, statusClass } from "./format.js";

const PAGE = 50;
export const FILTERS = ["model", "provider", "user", "status", "cache", "session", "key", "property", "q"];

function filterForm(ctx) {
  const v = (k) => ctx.params.get(k) || "";
  const text = (name, label, placeholder) => el("label", {}, label,
    el("input", { name, value: v(name), placeholder, autocomplete: "off", spellcheck: "false" }));
  const choice = (name, label, options) => el("label", {}, label,
    el("select", { name }, options.map(([value, text]) => el("option", { value, selected: v(name) === value }, text))));
  const form = el("form", { class: "filters", id: "filters" },
    text("model", "model", "gpt-4o"),
    text("provider", "provider", "openai"),
    text("user", "user", "Helicone-User-Id"),
    choice("status", "status", [["", "any"], ["error", "errors"], ["2xx", "2xx"], ["4xx", "4xx"], ["429", "429"], ["5xx", "5xx"]]),
    choice("cache", "cache", [["", "any"], ["hit", "hit"], ["miss", "miss"], ["none", "not used"]]),
    text("session", "session", "session id"),
    text("property", "property", "name=value"),
    text("key", "gateway key", "key id"),
    text("q", "search", "text in prompt or answer"),
    el("div", { class: "actions" },
      el("button", { type: "submit" }, "Filter"),
      el("button", { type: "button", class: "ghost", onclick: () => ctx.navigate("requests", "", keepRange(ctx)) }, "Clear")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = keepRange(ctx);
    for (const [k, val] of new FormData(form)) if (String(val).trim()) p.set(k, String(val).trim());
    ctx.navigate("requests", "", p);
  });
  return form;
}

export function keepRange(ctx) {
  const p = new URLSearchParams({ since: ctx.range.since });
  if (ctx.range.until) p.set("until", ctx.range.until);
  return p;
}

function row(item, ctx) {
  const open = () => ctx.navigate("request", item.request_id, keepRange(ctx));
  return el("tr", { class: "pick", dataset: { id: item.request_id }, onclick: open },
    el("td", { class: "time" }, fmtTime(item.created_at)),
    el("td", {}, el("span", { class: "status " + statusClass(item.status), title: item.error_type || null }, item.status)),
    el("td", { class: "model" }, item.model || "–", el("span", { class: "muted" }, " " + item.provider)),
    el("td", {}, item.user_id || el("span", { class: "muted" }, "–")),
    el("td", { class: "num" }, fmtCount(item.prompt_tokens), el("span", { class: "muted" }, " / "), fmtCount(item.completion_tokens)),
    el("td", { class: "num" }, item.cost_usd == null ? el("span", { class: "muted", title: "price unknown" }, "n/a") : fmtUSD(item.cost_usd)),
    el("td", { class: "num" }, fmtMs(item.total_ms)),
    el("td", {}, [item.stream ? el("span", { class: "tag" }, "stream") : null,
      item.cache_status ? el("span", { class: "tag " + item.cache_status }, "cache " + item.cache_status) : null,
      item.session_id ? el("span", { class: "tag" }, "session") : null]));
}

export async function render(root, ctx) {
  const params = { since: ctx.range.since, until: ctx.range.until, limit: PAGE };
  for (const k of FILTERS) params[k] = ctx.params.getAll(k);
  const page = await get("/requests", params);
  if (ctx.stale()) return;
  disposeCharts();
  const body = el("tbody", {}, page.items.map((i) => row(i, ctx)));
  const more = el("button", { type: "button", class: "ghost more", hidden: !page.next_cursor }, "Load more");
  let cursor = page.next_cursor;
  more.addEventListener("click", async () => {
    more.disabled = true;
    const next = await get("/requests", { ...params, cursor });
    body.append(...next.items.map((i) => row(i, ctx)));
    cursor = next.next_cursor;
    more.hidden = !cursor;
    more.disabled = false;
  });
  const table = page.items.length
    ? el("table", { class: "log" },
      el("thead", {}, el("tr", {}, ["time", "status", "model", "user", "tokens in / out", "cost", "latency", ""].map((h, i) =>
        el("th", { class: i >= 4 && i <= 6 ? "num" : null }, h)))), body)
    : el("p", { class: "empty" }, "No request matches these filters in this range.");
  root.replaceChildren(el("section", { class: "card" }, filterForm(ctx)), el("section", { class: "card flush" }, table, more));
}
