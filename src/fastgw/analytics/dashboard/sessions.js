// Sessions: the range's sessions by cost, and one session as a trace tree: each
// Helicone-Session-Path node with its totals, its requests under it, and a bar per request
// placing it on the session's timeline.

import { get } from "./api.js";
import { disposeCharts } from "./charts.js";
import { el, fmtCount, fmtMs, fmtTime, fmtUSD, statusClass } from "./format.js";
import { keepRange } from "./requests.js";

async function renderList(root, ctx) {
  const page = await get("/breakdown/session", { since: ctx.range.since, until: ctx.range.until, order_by: "cost", limit: 100 });
  if (ctx.stale()) return;
  disposeCharts();
  const open = (id) => ctx.navigate("session", id, keepRange(ctx));
  const table = page.groups.length
    ? el("table", { class: "log" },
      el("thead", {}, el("tr", {}, ["session", "requests", "errors", "cost", "first request", "duration"].map((h, i) =>
        el("th", { class: [1, 2, 3, 5].includes(i) ? "num" : null }, h)))),
      el("tbody", {}, page.groups.map((g) => el("tr", { class: "pick", dataset: { session: g.key }, onclick: () => open(g.key) },
        el("td", { class: "mono" }, g.key),
        el("td", { class: "num" }, fmtCount(g.requests)),
        el("td", { class: "num" + (g.errors ? " warn" : "") }, fmtCount(g.errors)),
        el("td", { class: "num" }, fmtUSD(g.cost_usd)),
        el("td", { class: "time" }, fmtTime(g.first_at)),
        el("td", { class: "num" }, fmtMs(Date.parse(g.last_at) - Date.parse(g.first_at)))))))
    : el("p", { class: "empty" }, "No request in this range had a Helicone-Session-Id.");
  root.replaceChildren(el("section", { class: "card flush" }, el("h2", { class: "pad" }, "Sessions by cost"), table));
}

function timeline(start, span, item) {
  const offset = Date.parse(item.created_at) - start;
  const left = span > 0 ? (offset / span) * 100 : 0;
  const width = span > 0 ? Math.max(0.6, (item.total_ms / span) * 100) : 100;
  return el("div", { class: "lane" }, el("span", {
    class: "span-bar " + statusClass(item.status), title: `+${fmtMs(offset)} · ${fmtMs(item.total_ms)}`,
    style: `left:${Math.min(left, 99.4).toFixed(2)}%;width:${Math.min(width, 100 - Math.min(left, 99.4)).toFixed(2)}%`,
  }));
}

// Depth-first rows: a node, then its own requests, then its children.
function treeRows(node, depth, s, ctx, out) {
  const start = Date.parse(s.started_at);
  out.push(el("tr", { class: "node", dataset: { path: node.path } },
    el("td", { class: "tree", style: `--depth:${depth}` }, el("span", { class: "node-name" }, node.path === "/" ? "/" : node.name),
      el("span", { class: "muted" }, node.path === "/" ? "" : "  " + node.path)),
    el("td", { class: "num" }, fmtCount(node.total_requests)),
    el("td", { class: "num" }, fmtUSD(node.cost_usd)), el("td", {}), el("td", {})));
  for (const r of node.requests) {
    out.push(el("tr", { class: "pick leaf", dataset: { id: r.request_id }, onclick: () => ctx.navigate("request", r.request_id, keepRange(ctx)) },
      el("td", { class: "tree", style: `--depth:${depth + 1}` },
        el("span", { class: "status " + statusClass(r.status) }, r.status), " ", r.model,
        el("span", { class: "muted" }, " +" + fmtMs(Date.parse(r.created_at) - start))),
      el("td", { class: "num" }, fmtCount(r.prompt_tokens + r.completion_tokens), el("span", { class: "muted" }, " tok")),
      el("td", { class: "num" }, r.cost_usd == null ? "n/a" : fmtUSD(r.cost_usd)),
      el("td", { class: "num" }, fmtMs(r.total_ms)),
      el("td", { class: "timeline" }, timeline(start, s.duration_ms, r))));
  }
  for (const child of node.children) treeRows(child, depth + 1, s, ctx, out);
}

async function renderTree(root, ctx) {
  const s = await get("/sessions/" + encodeURIComponent(ctx.arg));
  if (ctx.stale()) return;
  disposeCharts();
  const rows = [];
  treeRows(s.tree, 0, s, ctx, rows);
  root.replaceChildren(
    el("div", { class: "detail-head" }, el("a", { href: "#/sessions?" + keepRange(ctx), class: "back" }, "← Sessions"),
      el("h1", {}, s.name || "Session", el("span", { class: "muted mono" }, " " + s.session_id)),
      el("div", { class: "muted" }, `${fmtCount(s.requests)} requests · ${fmtUSD(s.cost_usd)} · ${fmtMs(s.duration_ms)} from ${fmtTime(s.started_at)}`,
        s.truncated ? " · only the first 5000 requests are shown" : "")),
    el("section", { class: "card flush" }, el("table", { class: "trace" },
      el("thead", {}, el("tr", {}, el("th", {}, "path / request"), el("th", { class: "num" }, "requests · tokens"),
        el("th", { class: "num" }, "cost"), el("th", { class: "num" }, "latency"), el("th", {}, "timeline"))),
      el("tbody", {}, rows))));
}

export function render(root, ctx) {
  return ctx.view === "session" && ctx.arg ? renderTree(root, ctx) : renderList(root, ctx);
}
