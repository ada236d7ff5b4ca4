-- wrk script: POST a small non-streamed OpenAI chat completion.
-- Usage: wrk -t1 -c32 -d10s -s benchmarks/wrk_chat.lua http://127.0.0.1:PORT/v1/chat/completions
-- Point it at the mock upstream directly (baseline) or at the gateway (overhead = the difference).
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}'
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer sk-bench"
