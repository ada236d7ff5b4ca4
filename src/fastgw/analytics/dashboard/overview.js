// Overview: the range's totals, its time series and the top models, users and properties.
// Five API calls in parallel, and one for a property's values (in parallel once one is picked).

import { get } from "./api.js";
import { COLORS, disposeCharts, timeChart } from "./charts.js";
import { el, fmtCompact, fmtCount, fmtMs, fmtMsShort, fmtPct, fmtUSD } from "./format.js";

const TOP = 10;

function kpi(label, value, sub, name, alarm = false) {
  return el("div", { class: "kpi" + (alarm ? " alarm" : ""), dataset: { kpi: name } },
    el("div", { class: "kpi-label" }, label), el("div", { class: "kpi-value" }, value),
    el("div", { class: "kpi-sub" }, sub || "\u00a0"));
}

function kpis(s) {
  return el("section", { class: "kpis" },
    kpi("Requests", fmtCount(s.requests), `${fmtCompact(s.tokens.total)} tokens`, "requests"),
    kpi("Errors", fmtCount(s.errors), `${fmtPct(s.error_rate)} of requests`, "errors", s.errors > 0),
    kpi("Cost", fmtUSD(s.cost_usd), s.unpriced ? `${fmtCount(s.unpriced)} unpriced` : "all priced", "cost"),
    kpi("Cache hits", fmtCount(s.cache_hits), `${fmtPct(s.cache_hit_rate)} hit rate`, "cache"),
    kpi("Saved by the cache", fmtUSD(s.cache_saved_usd), "by answers replayed", "saved"),
    kpi("Rate-limited", fmtCount(s.rate_limited), `${fmtCount(s.budget_refused)} over budget`, "ratelimited"),
    kpi("Latency p50", fmtMs(s.latency_ms.p50), `p95 ${fmtMsShort(s.latency_ms.p95)} · p99 ${fmtMsShort(s.latency_ms.p99)}`, "latency"),
    kpi("First byte p50", fmtMs(s.ttfb_ms.p50), `p95 ${fmtMsShort(s.ttfb_ms.p95)} · p99 ${fmtMsShort(s.ttfb_ms.p99)}`, "ttfb"),
  );
}

function card(title, name, ...body) {
  return el("section", { class: "card", dataset: { card: name } }, el("h2", {}, title), ...body);
}

function charts(grid, ts) {
  const times = ts.points.map((p) => Date.parse(p.t) / 1000);
  const col = (f) => ts.points.map(f);
  const lat = (k) => col((p) => p.latency_ms[k]);
  const add = (title, name, spec) => {
    const c = card(title, name);
    grid.append(c);
    timeChart(c, { times, ...spec });
  };
  add("Cost over time", "cost", { yFormat: fmtUSD,
    series: [{ label: "cost", values: col((p) => p.cost_usd), color: COLORS.blue, kind: "bar" }] });
  add("Requests and errors", "traffic", { yFormat: fmtCompact, counts: true, series: [
    { label: "requests", values: col((p) => p.requests), color: COLORS.blue, kind: "bar", format: fmtCount },
    { label: "errors", values: col((p) => p.errors), color: COLORS.red, format: fmtCount }] });
  add("Latency percentiles", "latency", { yFormat: fmtMs, series: [
    { label: "p50", values: lat("p50"), color: COLORS.green },
    { label: "p95", values: lat("p95"), color: COLORS.amber },
    { label: "p99", values: lat("p99"), color: COLORS.red }] });
  add("Cache hits and savings", "cache", { yFormat: fmtCompact, y2Format: fmtUSD, counts: true, series: [
    { label: "hits", values: col((p) => p.cache_hits), color: COLORS.green, kind: "bar", format: fmtCount },
    { label: "saved", values: col((p) => p.cache_saved_usd), color: COLORS.violet, scale: "y2", format: fmtUSD }] });
  add("Tokens", "tokens", { yFormat: fmtCompact, counts: true,
    series: [{ label: "tokens", values: col((p) => p.tokens), color: COLORS.violet, fill: true, format: fmtCount }] });
  add("Rate-limit refusals", "ratelimited", { yFormat: fmtCompact, counts: true, series: [
    { label: "refused", values: col((p) => p.rate_limited), color: COLORS.amber, kind: "bar", format: fmtCount }] });
}

// A ranked table; the bar behind each row is its share of the measure the table is sorted by.
function topTable(groups, orderBy, onPick, emptyText) {
  if (!groups.length) return el("p", { class: "empty" }, emptyText || "Nothing in this range.");
  const measure = (g) => (orderBy === "requests" ? g.requests : g.cost_usd);
  const max = Math.max(...groups.map(measure), 1e-12);
  return el("table", { class: "top" },
    el("thead", {}, el("tr", {}, el("th", {}, "name"), el("th", { class: "num" }, "requests"),
      el("th", { class: "num" }, "errors"), el("th", { class: "num" }, "cost"), el("th", { class: "num" }, "p50"))),
    el("tbody", {}, groups.map((g) => el("tr", { class: onPick ? "pick" : null, onclick: onPick ? () => onPick(g.key) : null },
      el("td", { class: "name" },
        el("span", { class: "share", style: `width:${((measure(g) / max) * 100).toFixed(1)}%` }),
        el("span", { class: "label" }, g.key === "" ? "(none)" : g.key)),
      el("td", { class: "num" }, fmtCount(g.requests)),
      el("td", { class: "num" + (g.errors ? " warn" : "") }, fmtCount(g.errors)),
      el("td", { class: "num" }, fmtUSD(g.cost_usd)),
      el("td", { class: "num" }, fmtMs(g.latency_ms.p50))))));
}

export async function render(root, ctx) {
  const orderBy = ctx.params.get("order") === "requests" ? "requests" : "cost";
  const r = { since: ctx.range.since, until: ctx.range.until };
  const top = (dim, extra = {}) => get(`/breakdown/${dim}`, { ...r, order_by: orderBy, limit: TOP, ...extra });
  // The property whose values to list: the one picked (fetched with the rest), else the top
  // property name, known only once the names are in.
  const picked = ctx.params.get("prop");
  const [summary, ts, models, users, props, pickedValues] = await Promise.all([
    get("/summary", r), get("/timeseries", r), top("model"), top("user"), top("property"),
    picked ? top("property", { name: picked }) : null,
  ]);
  const propName = picked || props.groups[0]?.key;
  const propValues = pickedValues || (propName ? await top("property", { name: propName }) : null);
  if (ctx.stale()) return;

  disposeCharts();
  const toFilter = (name, value) => {
    const p = new URLSearchParams({ since: ctx.range.since, ...(ctx.range.until ? { until: ctx.range.until } : {}) });
    p.set(name, value);
    ctx.navigate("requests", "", p);
  };
  const withParam = (k, v) => { const p = new URLSearchParams(ctx.params); p.set(k, v); ctx.navigate("overview", "", p); };
  const order = el("div", { class: "seg", role: "group" },
    ["cost", "requests"].map((o) => el("button", { type: "button", class: o === orderBy ? "active" : null,
      dataset: { order: o }, onclick: () => withParam("order", o) }, o === "cost" ? "by cost" : "by count")));
  const grid = el("div", { class: "grid charts" });
  const propPicker = props.groups.length > 1 ? el("select", { class: "inline", onchange: (e) => withParam("prop", e.target.value) },
    props.groups.map((g) => el("option", { value: g.key, selected: g.key === propName }, g.key))) : el("code", {}, propName || "");
  root.replaceChildren(
    kpis(summary),
    grid,
    el("div", { class: "section-head" }, el("h2", {}, "Top"), order),
    el("div", { class: "grid tops" },
      card("Models", "models", topTable(models.groups, orderBy, (v) => toFilter("model", v))),
      card("Users", "users", topTable(users.groups, orderBy, (v) => v && toFilter("user", v))),
      card("Properties", "properties", topTable(props.groups, orderBy, (v) => withParam("prop", v), "No request had a Helicone-Property-* header.")),
      propValues ? card("", "property-values", el("h2", {}, "Values of ", propPicker),
        topTable(propValues.groups, orderBy, (v) => toFilter("property", `${propName}=${v}`))) : null),
  );
  charts(grid, ts);
}
