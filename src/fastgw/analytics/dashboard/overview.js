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
    kpi("First byte p50", fmtMs(s.ttfb_ms.p50), `p95 ${fmtMsShort(s.ttfb_ms.p95)}`, "ttfb"),
  );
}

function card(title, name, ...body) {
  return el("section", { class: "card", dataset: { card: name } }, el("h2", {}, title), ...body);
}

// The chart cards exist before their data, at their final size, so the page does not jump.
const CHARTS = [
  ["Cost over time", "cost"], ["Requests and errors", "traffic"], ["Latency percentiles", "latency"],
  ["Cache hits and savings", "cache"], ["Tokens", "tokens"], ["Rate-limit refusals", "ratelimited"],
];

function chartSpecs(ts) {
  const col = (f) => ts.points.map(f);
  const lat = (k) => col((p) => p.latency_ms[k]);
  return {
    cost: { yFormat: fmtUSD, series: [{ label: "cost", values: col((p) => p.cost_usd), color: COLORS.blue, kind: "bar" }] },
    traffic: { yFormat: fmtCompact, counts: true, series: [
      { label: "requests", values: col((p) => p.requests), color: COLORS.blue, kind: "bar", format: fmtCount },
      { label: "errors", values: col((p) => p.errors), color: COLORS.red, format: fmtCount }] },
    latency: { yFormat: fmtMs, series: [
      { label: "p50", values: lat("p50"), color: COLORS.green },
      { label: "p95", values: lat("p95"), color: COLORS.amber },
      { label: "p99", values: lat("p99"), color: COLORS.red }] },
    cache: { yFormat: fmtCompact, y2Format: fmtUSD, counts: true, series: [
      { label: "hits", values: col((p) => p.cache_hits), color: COLORS.green, kind: "bar", format: fmtCount },
      { label: "saved", values: col((p) => p.cache_saved_usd), color: COLORS.violet, scale: "y2", format: fmtUSD }] },
    tokens: { yFormat: fmtCompact, counts: true,
      series: [{ label: "tokens", values: col((p) => p.tokens), color: COLORS.violet, fill: true, format: fmtCount }] },
    ratelimited: { yFormat: fmtCompact, counts: true, series: [
      { label: "refused", values: col((p) => p.rate_limited), color: COLORS.amber, kind: "bar", format: fmtCount }] },
  };
}

function drawCharts(cards, ts) {
  const times = ts.points.map((p) => Date.parse(p.t) / 1000);
  const specs = chartSpecs(ts);
  for (const [name, card] of Object.entries(cards)) {
    card.classList.remove("pending");
    timeChart(card, { times, ...specs[name] });
  }
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

// Every call starts at once, and each part of the page is drawn as soon as its answer is in,
// so the header numbers and charts do not wait for the slower top lists.
export async function render(root, ctx) {
  const orderBy = ctx.params.get("order") === "requests" ? "requests" : "cost";
  const r = { since: ctx.range.since, until: ctx.range.until };
  const top = (dim, extra = {}) => get(`/breakdown/${dim}`, { ...r, order_by: orderBy, limit: TOP, ...extra });
  // The property whose values to list: the one picked (fetched with the rest), else the top
  // property name, known only once the names are in.
  const picked = ctx.params.get("prop");
  const calls = {
    summary: get("/summary", r), ts: get("/timeseries", r), models: top("model"), users: top("user"),
    props: top("property"), picked: picked ? top("property", { name: picked }) : null,
  };
  // Failures surface through the chains below (and the shell's notice); these stop the copies
  // that nobody awaits from being reported a second time as unhandled.
  for (const p of Object.values(calls)) p?.catch(() => {});

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
  const kpiBox = el("section", { class: "kpis pending" });
  const chartCards = Object.fromEntries(CHARTS.map(([title, name]) => [name, card(title, name)]));
  for (const c of Object.values(chartCards)) c.classList.add("pending", "chart-card");
  const tops = { models: card("Models", "models"), users: card("Users", "users"), properties: card("Properties", "properties") };
  for (const c of Object.values(tops)) c.classList.add("pending");
  const valuesSlot = el("div");
  root.replaceChildren(
    kpiBox,
    el("div", { class: "grid charts" }, Object.values(chartCards)),
    el("div", { class: "section-head" }, el("h2", {}, "Top"), order),
    el("div", { class: "grid tops" }, tops.models, tops.users, tops.properties, valuesSlot),
  );

  const fill = (c, content) => { c.classList.remove("pending"); c.append(content); };
  const live = (f) => (value) => { if (!ctx.stale()) f(value); };
  const valuesCard = async (props) => {
    const propName = picked || props.groups[0]?.key;
    const values = (await calls.picked) || (propName ? await top("property", { name: propName }) : null);
    if (!values || ctx.stale()) return;
    const picker = props.groups.length > 1 ? el("select", { class: "inline", onchange: (e) => withParam("prop", e.target.value) },
      props.groups.map((g) => el("option", { value: g.key, selected: g.key === propName }, g.key))) : el("code", {}, propName);
    valuesSlot.replaceWith(card("", "property-values", el("h2", {}, "Values of ", picker),
      topTable(values.groups, orderBy, (v) => toFilter("property", `${propName}=${v}`))));
  };
  await Promise.all([
    calls.summary.then(live((s) => { kpiBox.replaceWith(kpis(s)); performance.mark("fastgw:numbers"); })),
    calls.ts.then(live((ts) => { drawCharts(chartCards, ts); performance.mark("fastgw:charts"); })),
    calls.models.then(live((m) => fill(tops.models, topTable(m.groups, orderBy, (v) => toFilter("model", v))))),
    calls.users.then(live((u) => fill(tops.users, topTable(u.groups, orderBy, (v) => v && toFilter("user", v))))),
    calls.props.then(async (props) => {
      if (ctx.stale()) return;
      fill(tops.properties, topTable(props.groups, orderBy, (v) => withParam("prop", v), "No request had a Helicone-Property-* header."));
      await valuesCard(props);
    }),
  ]);
}
