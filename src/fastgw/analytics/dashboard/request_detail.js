// One request: its timings, tokens, cost and tags, then the prompt as messages and the answer as
// text (a stream's events assembled by the API into response_text), with the raw bodies below.

import { get } from "./api.js";
import { disposeCharts } from "./charts.js";
import { el, fmtCount, fmtMs, fmtTime, fmtUSD, statusClass } from "./format.js";
import { keepRange } from "./requests.js";

function textOf(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((p) => (typeof p === "string" ? p : p.text ?? (p.type ? `[${p.type}]` : JSON.stringify(p)))).join("\n");
  }
  return content == null ? "" : JSON.stringify(content, null, 2);
}

// The prompt as a list of {role, text}: OpenAI's messages, Anthropic's system + messages,
// or a plain prompt. null when the body is not JSON (truncated, or not a chat call).
function promptMessages(body) {
  let req;
  try { req = JSON.parse(body); } catch { return null; }
  if (!req || typeof req !== "object") return null;
  const out = [];
  if (req.system) out.push({ role: "system", text: textOf(req.system) });
  if (Array.isArray(req.messages)) {
    for (const m of req.messages) out.push({ role: m.role || "?", text: textOf(m.content) + (m.tool_calls ? "\n" + JSON.stringify(m.tool_calls, null, 2) : "") });
  } else if (req.prompt != null) out.push({ role: "prompt", text: textOf(req.prompt) });
  else if (req.input != null) out.push({ role: "input", text: textOf(req.input) });
  return out.length ? out : null;
}

function answerText(d) {
  if (d.response_text != null) return d.response_text;
  let resp;
  try { resp = JSON.parse(d.response_body); } catch { return null; }
  const choice = resp?.choices?.[0];
  if (choice) return textOf(choice.message?.content ?? choice.text ?? "");
  if (Array.isArray(resp?.content)) return textOf(resp.content);
  return null;
}

function fact(label, ...value) {
  return el("div", { class: "fact" }, el("dt", {}, label), el("dd", {}, ...value));
}

function bubble(role, text) {
  return el("div", { class: "msg " + role }, el("div", { class: "role" }, role), el("pre", { class: "text" }, text || "(empty)"));
}

export async function render(root, ctx) {
  const d = await get("/requests/" + encodeURIComponent(ctx.arg));
  if (ctx.stale()) return;
  disposeCharts();
  const back = el("a", { href: "#/requests?" + keepRange(ctx), class: "back" }, "← Requests");
  const session = d.session_id
    ? el("a", { href: `#/session/${encodeURIComponent(d.session_id)}?${keepRange(ctx)}` }, d.session_id)
    : "–";
  const served = d.model_served && d.model_served !== d.model_requested ? ` → ${d.model_served}` : "";
  const t = d.tokens;
  const facts = el("dl", { class: "facts" },
    fact("latency", fmtMs(d.total_ms), el("span", { class: "muted" }, ` · first byte ${fmtMs(d.ttfb_ms)}`)),
    fact("upstream / gateway", `${fmtMs(d.upstream_ms)} / ${fmtMs(d.gateway_ms)}`),
    fact("tokens in / out", `${fmtCount(t.prompt)} / ${fmtCount(t.completion)}`,
      t.cache_read || t.reasoning ? el("span", { class: "muted" }, ` · cached ${fmtCount(t.cache_read)} · reasoning ${fmtCount(t.reasoning)}`) : null),
    fact("cost", d.cost_usd == null ? el("span", { class: "muted" }, `n/a (${d.cost_null_reason || "unknown"})`) : fmtUSD(d.cost_usd)),
    fact("cache", d.cache_status || "not used", d.cache_saved_usd ? ` · saved ${fmtUSD(d.cache_saved_usd)}` : ""),
    fact("user", d.user_id || "–"),
    fact("session", session, d.session_path ? el("span", { class: "muted" }, " " + d.session_path) : null),
    fact("gateway key", d.key_id || "–"),
    fact("retries / fallback", `${d.retry_count} / ${d.fallback_index < 0 ? "none" : "#" + d.fallback_index}`),
    fact("feedback", d.feedback ? (d.feedback.rating === true ? "positive" : d.feedback.rating === false ? "negative" : "cleared") : "–"),
    d.scores.length ? fact("scores", d.scores.map((s) => el("span", { class: "tag" }, `${s.name} ${s.value}`))) : null,
    Object.keys(d.properties).length ? fact("properties", Object.entries(d.properties).map(([k, v]) => el("span", { class: "tag" }, `${k}=${v}`))) : null,
  );
  const messages = promptMessages(d.request_body);
  const answer = answerText(d);
  const prompt = el("section", { class: "card", dataset: { card: "prompt" } }, el("h2", {}, "Prompt", d.request_truncated ? el("span", { class: "tag warn" }, "truncated") : null),
    messages ? messages.map((m) => bubble(m.role, m.text)) : el("pre", { class: "raw" }, d.request_body || "(no body logged)"));
  const response = el("section", { class: "card", dataset: { card: "response" } },
    el("h2", {}, d.stream ? "Response (streamed, as text)" : "Response", d.response_truncated ? el("span", { class: "tag warn" }, "truncated") : null),
    d.error_message ? el("div", { class: "errorbox" }, el("strong", {}, d.error_type || "error"), " ", d.error_message) : null,
    answer != null ? bubble("assistant", answer) : el("pre", { class: "raw" }, d.response_body || "(no body logged)"));
  const raw = el("details", { class: "card" }, el("summary", {}, "Raw bodies and headers"),
    el("h3", {}, "request headers"), el("pre", { class: "raw" }, JSON.stringify(d.request_headers, null, 2)),
    el("h3", {}, "request body"), el("pre", { class: "raw" }, d.request_body),
    el("h3", {}, "response body"), el("pre", { class: "raw" }, d.response_body));
  root.replaceChildren(
    el("div", { class: "detail-head" }, back,
      el("h1", {}, el("span", { class: "status " + statusClass(d.status) }, d.status), ` ${d.model_requested || d.model}${served}`,
        el("span", { class: "muted" }, ` · ${d.provider} · ${d.method} ${d.path}`)),
      el("div", { class: "muted mono" }, `${fmtTime(d.created_at)} · ${d.request_id}`)),
    el("section", { class: "card" }, facts),
    el("div", { class: "grid pair" }, prompt, response),
    raw);
}
