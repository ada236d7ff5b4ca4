// Time-series charts on uPlot (vendor/uPlot.iife.min.js, the global `uPlot`): one small
// function per chart kind, sharing the axes, colours and tooltip-free legend styling.

import { el } from "./format.js";

export const COLORS = {
  blue: "#3b6fd8", red: "#d64545", amber: "#d9901a", green: "#2f9e6a", violet: "#7c5cc4", grey: "#8a94a6",
};

const charts = new Set();
const resize = new ResizeObserver((entries) => {
  for (const e of entries) {
    const chart = e.target.__chart;
    if (chart) chart.setSize({ width: Math.max(200, e.contentRect.width), height: chart.height });
  }
});

// Counts have whole-number ticks: a chart of 0 or 1 requests must not read "0.4 requests".
const WHOLE = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1e3, 2e3, 2.5e3, 5e3, 1e4, 2e4, 2.5e4, 5e4,
  1e5, 2e5, 2.5e5, 5e5, 1e6, 2e6, 2.5e6, 5e6, 1e7, 2e7, 5e7, 1e8, 2e8, 5e8, 1e9];

// Wide enough for the longest tick label (they vary: "$0.20", "4.00 s", "750K").
function labelWidth(u, values) {
  if (!values || !values.length) return 40;
  return Math.ceil(Math.max(...values.map((v) => String(v).length)) * 6.4) + 18;
}

function axis(format, extra = {}) {
  return {
    stroke: "#5b6475", grid: { stroke: "#eef0f4", width: 1 }, ticks: { stroke: "#dfe3ea", width: 1 },
    font: "11px Inter, system-ui, sans-serif", values: format ? (u, vals) => vals.map(format) : undefined,
    size: labelWidth, ...extra,
  };
}

function bars() {
  return window.uPlot.paths.bars({ size: [0.7, 24], align: 0 });
}

// series: [{label, values, color, kind: "line"|"bar", scale, format}]
// counts: the left axis counts things (whole-number ticks).
export function timeChart(host, { times, series, yFormat, y2Format, counts = false, height = 200 }) {
  const box = el("div", { class: "chart" });
  host.append(box);
  const opts = {
    width: Math.max(200, box.clientWidth || 600), height,
    cursor: { y: false, points: { size: 6 } },
    legend: { live: true },
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] }, y2: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [
      axis(null, { size: 32 }),
      axis(yFormat, counts ? { incrs: WHOLE } : {}),
      ...(series.some((s) => s.scale === "y2") ? [axis(y2Format, { side: 1, grid: { show: false }, scale: "y2" })] : []),
    ],
    series: [
      { value: (u, v) => (v == null ? "" : new Date(v * 1000).toLocaleString("en-GB", { hour12: false })) },
      ...series.map((s) => ({
        label: s.label, scale: s.scale || "y", stroke: s.color, width: s.kind === "bar" ? 0 : 2,
        fill: s.kind === "bar" ? s.color + "cc" : s.fill ? s.color + "22" : undefined,
        paths: s.kind === "bar" ? bars() : undefined, points: { show: false },
        value: (u, v) => (v == null ? "–" : (s.format || yFormat || String)(v)),
      })),
    ],
  };
  const chart = new window.uPlot(opts, [times, ...series.map((s) => s.values)], box);
  box.__chart = chart;
  resize.observe(box);
  charts.add(chart);
  return chart;
}

// Charts of a view that is replaced must stop listening for resizes.
export function disposeCharts() {
  for (const c of charts) {
    resize.unobserve(c.root.parentElement);
    c.destroy();
  }
  charts.clear();
}
