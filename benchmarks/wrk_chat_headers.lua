-- wrk script: the small chat completion of wrk_chat.lua (same fixed body, so cached requests all
-- share one cache key), plus extra headers from the WRK_HEADERS environment variable, one
-- "name: value" per line. Used by bench_cache.py for cache hits and rate-limit checks:
--   WRK_HEADERS='Helicone-Cache-Enabled: true' wrk -t1 -c64 -d5s -s benchmarks/wrk_chat_headers.lua URL
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}'
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer sk-bench"
for line in string.gmatch(os.getenv("WRK_HEADERS") or "", "[^\n]+") do
  local name, value = line:match("^%s*([^:]+):%s*(.-)%s*$")
  if name then
    wrk.headers[name] = value
  end
end
