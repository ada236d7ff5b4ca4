// Number and time formatting: every figure on the page goes through here, so the same quantity
// always reads the same way (USD with precision that fits its size, ms/s, grouped counts).

const count = new Intl.NumberFormat("en-US");
const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

export function fmtCount(n) {
  return n == null ? "–" : count.format(n);
}

export function fmtCompact(n) {
  if (n == null) return "–";
  return Math.abs(n) < 10000 ? count.format(n) : compact.format(n);
}

// Cents matter above a dollar; below it, per-request costs are fractions of a cent, so keep
// three significant digits instead of rounding them to $0.00.
export function fmtUSD(v) {
  if (v == null) return "–";
  if (v === 0) return "$0";
  const a = Math.abs(v);
  if (a >= 1000) return "$" + count.format(Math.round(v));
  if (a >= 0.1) return "$" + v.toFixed(2);
  const digits = Math.min(9, 2 - Math.floor(Math.log10(a)));
  return "$" + v.toFixed(digits).replace(/0+$/, "");
}

export function fmtMs(ms) {
  if (ms == null) return "–";
  if (ms === 0) return "0 ms";
  if (ms < 1) return ms.toFixed(2) + " ms";
  if (ms < 1000) return Math.round(ms) + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
  if (ms < 3600000) return (ms / 60000).toFixed(1) + " min";
  return (ms / 3600000).toFixed(1) + " h";
}

// For tight spots (the header cards): seconds with one decimal.
export function fmtMsShort(ms) {
  return ms != null && ms >= 1000 && ms < 60000 ? (ms / 1000).toFixed(1) + " s" : fmtMs(ms);
}

export function fmtPct(r) {
  if (r == null || Number.isNaN(r)) return "–";
  const p = r * 100;
  return (p === 0 || p >= 10 ? p.toFixed(0) : p.toFixed(1)) + "%";
}

const dateTime = new Intl.DateTimeFormat("en-GB", {
  month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});

export function fmtTime(iso) {
  return iso ? dateTime.format(new Date(iso)) : "–";
}

// Builds DOM without innerHTML, so logged prompts can never inject markup into the page.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

export function statusClass(status) {
  if (status >= 500 || status === 0) return "bad";
  if (status >= 400) return "warn";
  return "ok";
}
