"""What the log records for unified-API requests: the client's body, the OpenAI answer it got, and
usage and cost from the provider's own counts (streams included, usage chunk hidden or not)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai

from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import GatewayProcess, gateway_config


def test_rows_for_translated_requests(start_gateway: Callable[..., GatewayProcess], mock: MockUpstreamThread) -> None:
    gw = start_gateway(gateway_config(mock.url, providers={"gemini": {"base_url": mock.url}}))
    ids: dict[str, str] = {}
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-x", max_retries=0) as c:
        r = c.chat.completions.with_raw_response.create(
            model="anthropic/claude-sonnet-4-5", messages=[{"role": "user", "content": "hello there"}])
        ids["anthropic"] = r.headers["helicone-id"]
        for name, model in (("anthropic-stream", "anthropic/claude-sonnet-4-5"),
                            ("gemini-stream", "gemini/gemini-2.5-flash")):
            with c.chat.completions.with_streaming_response.create(
                    model=model, stream=True, messages=[{"role": "user", "content": "hello there"}]) as s:
                ids[name] = s.headers["helicone-id"]
                text = "".join(line for line in s.iter_lines())
                assert '"usage"' not in text  # hidden from the client, who didn't ask
    assert gw.stop() == 0, gw.log()
    rows: dict[str, dict[str, Any]] = {}
    for f in (gw.log_dir / "sink").glob("requests*.jsonl"):
        for line in f.read_text().splitlines():
            row = json.loads(line)
            rows[row["request_id"]] = row
    for name, rid in ids.items():
        row = rows[rid]
        provider = name.split("-")[0]
        assert row["provider"] == provider and row["status"] == 200
        assert row["model_requested"] == ("gemini/gemini-2.5-flash" if provider == "gemini" else
                                          "anthropic/claude-sonnet-4-5")
        assert row["model_served"] in ("claude-sonnet-4-5", "gemini-2.5-flash")
        assert row["completion_tokens"] == 5 and row["prompt_tokens"] > 0, row
        assert row["usage_source"] != "counted" and row["cost_nanousd"] > 0, row
        assert json.loads(row["request_body"])["model"] == row["model_requested"]  # the client's body
        assert "chat.completion" in row["response_body"]  # the answer as the client got it
        assert row["target_url"].endswith("/v1/messages" if provider == "anthropic" else "?alt=sse")
