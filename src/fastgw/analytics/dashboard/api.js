// The admin API client (see ../openapi.yaml). Every call is timed: the footer shows how long
// the page's data took, and the browser tests read the same figures from window.fastgwTimings.

const KEY_STORE = "fastgw-admin-key";

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.param = body?.error?.param ?? null;
  }
}

window.fastgwTimings = [];

// A query string from an object; arrays repeat the parameter (model=a&model=b), and empty
// values are left out so an untouched filter never reaches the server.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    for (const item of Array.isArray(v) ? v : [v]) {
      if (item !== undefined && item !== null && item !== "") q.append(k, item);
    }
  }
  const s = q.toString();
  return s ? "?" + s : "";
}

export async function get(path, params = {}) {
  const url = "/api/v1" + path + query(params);
  const headers = {};
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers.Authorization = "Bearer " + key;
  const started = performance.now();
  const resp = await fetch(url, { headers });
  const body = await resp.json().catch(() => null);
  const ms = performance.now() - started;
  window.fastgwTimings.push({ path, ms, status: resp.status, bytes: Number(resp.headers.get("content-length")) || 0 });
  if (!resp.ok) throw new ApiError(resp.status, body);
  return body;
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY_STORE, key);
  else sessionStorage.removeItem(KEY_STORE);
}
