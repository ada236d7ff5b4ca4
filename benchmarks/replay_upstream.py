"""A stand-in provider that costs the load generator's core almost nothing: nginx answering every
``POST /v1/chat/completions`` with one answer the mock gave, recorded at start.

Why: on this two-core machine the provider stand-in shares core 1 with the load generator and
(in the logging benchmark) the gateway's exporter. The Python mock takes 60–85 µs of that core a
request, so at 6,000 req/s it and the client alone keep core 1 56–73% busy, and the exporter's
30–45 µs a record then overloads it: what the open-loop P99 then measures is core 1's queue, not
the gateway. A real provider runs elsewhere. nginx returning a fixed body costs about a tenth of
the mock, and the gateway sees the same bytes it would have got from the mock (same JSON, same
usage, so the exporter's enrichment is the same), less the per-answer id and timestamp.
"""

from __future__ import annotations

import http.client
from pathlib import Path

import run_bench as rb

# The server after run_bench's shared head: every request to ``path`` gets the recorded answer.
SERVER = """\
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = {path} {{
            default_type {content_type};
            return 200 '{body}';
        }}
    }}
}}
"""


def record_answer(mock_port: int, body: str, headers: list[str], path: str = rb.CHAT_PATH) -> tuple[str, str]:
    """The mock's answer (body text, Content-Type) to one request, sent as the benchmark sends it."""
    conn = http.client.HTTPConnection("127.0.0.1", mock_port, timeout=10)
    try:
        hdrs = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
        hdrs.update(h.split(": ", 1) for h in headers)  # type: ignore[arg-type]
        conn.request("POST", path, body=body.encode(), headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"the mock answered {resp.status}: {data[:300]!r}")
        return data.decode(), resp.getheader("content-type", "application/json")
    finally:
        conn.close()


def nginx_literal(text: str) -> str:
    """``text`` inside an nginx single-quoted string, byte for byte: nginx unescapes backslashes
    there (a JSON ``\\n`` would become a raw newline) and expands ``$name`` in ``return``'s text."""
    if "$" in text:
        raise ValueError("a recorded answer holding '$' would be expanded by nginx")
    return text.replace("\\", "\\\\").replace("'", "\\'")


def start(procs: rb.Procs, tmp: Path, answer: str, content_type: str, path: str = rb.CHAT_PATH) -> tuple[int, list[int]]:
    """nginx (one worker, on the client core) answering ``answer``; returns its port and its
    processes (master and worker), which ``procs`` stops."""
    port = rb.free_port()
    conf, prefix = rb.write_nginx_conf(tmp, port, rb.NGINX_HEAD + SERVER, "replay", path=path,
                                       content_type=content_type.split(";")[0].strip(), body=nginx_literal(answer))
    proc, workers = rb.start_nginx(procs, "replay nginx", conf, prefix, port, rb.CLIENT_CPU)
    return port, [proc.pid, *workers]


def check(port: int, answer: str, body: str, headers: list[str], path: str = rb.CHAT_PATH) -> None:
    """The replay answers the benchmark's request with the recorded bytes, twice on one connection."""
    for _ in range(2):
        got, _ = record_answer(port, body, headers, path)
        if got != answer:
            raise RuntimeError(f"the replay upstream answered other bytes than the mock's: {got[:200]!r}")
