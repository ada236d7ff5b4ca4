"""``POST /custom/v1/log`` end to end: a 200 means the row is stored as a proxied request's would be,
and a body the row can't hold is a 400 naming the field. One real gateway (chDB sink, the provider
mocked) takes every case; the rows are read once it has stopped (chDB holds its folder alone)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import GatewayProcess, gateway_config, post_once, query_chdb

LIMIT = 1000  # logging.body_max_bytes
NOW = int(time.time())
UINT32_MAX = 2**32 - 1
SECRETS = (b"sk-QUERY1", b"sk-USERINFO1", b"sk-META1", b"sk-PATHPW1", b"sk-FALLBACK1", b"sk-TARGETPW1", b"sk-TARGETQ1")


def manual(url: str = "https://api.openai.com/v1/chat/completions", start: int = NOW, end: int | None = None,
           status: int = 200, content: str = "hi", text: str | None = None,
           meta: dict[str, str] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"status": status}
    if text is None:
        response["json"] = {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 10, "completion_tokens": 2}}
    else:
        response["textBody"] = text
    return {"providerRequest": {"url": url, "json": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]},
                                "meta": meta or {}},
            "providerResponse": response,
            "timing": {"startTime": {"seconds": start, "milliseconds": 0},
                       "endTime": {"seconds": start if end is None else end, "milliseconds": 100}}}


STORED = {
    "small": manual(),
    "big": manual(content="<" + "y" * 3000 + ">", text="[" + "z" * 5000 + "]"),
    "two_hours": manual(start=NOW - 7200, end=NOW),
    "credentials": manual(url="https://user:sk-USERINFO1@generativelanguage.googleapis.com/v1beta/models/"
                              "gemini-2.5-flash:generateContent?key=sk-QUERY1&alt=sse"),
    "utf8_headers": manual(meta={"X-Title": "Straße", "Authorization": "Bearer sk-META1"}),
    # A review's: without "//" the password is in urlsplit's path, which the row's path took raw.
    "password_in_path": manual(url="https:user:sk-PATHPW1@api.openai.com/v1/chat/completions"),
    # and meta kept Helicone-Fallbacks / Helicone-Target-Url whole, unlike a refused request's headers
    "helicone_meta": manual(meta={
        "Helicone-Fallbacks": '[{"target-url": "https://h.example", "headers": {"Authorization": "Bearer sk-FALLBACK1"}}]',
        "Helicone-Target-Url": "https://u:sk-TARGETPW1@h.example/v1?key=sk-TARGETQ1"}),
}
REFUSED = {  # case: (body, the field the 400 names)
    "status_99999": (manual(status=99999), "providerResponse.status"),
    "status_negative": (manual(status=-1), "providerResponse.status"),
    "status_1000": (manual(status=1000), "providerResponse.status"),
    "end_before_start": (manual(start=NOW, end=NOW - 10), "timing.endTime"),
    "seconds_negative": (manual(start=-10**11, end=-10**11), "timing.startTime"),
    "seconds_2_62": (manual(start=2**62, end=2**62), "timing.startTime"),
    "seconds_past_2299": (manual(start=10**13, end=10**13), "timing.startTime"),
    "ipv6_unclosed": (manual(url="http://[::1/v1/chat/completions"), "providerRequest.url"),
}
UTF8_HEADERS = "Helicone-User-Id: Jürgen\r\nHelicone-Property-City: München\r\nHelicone-Session-Name: Überblick\r\n"


query = query_chdb


def _post(gw: GatewayProcess, path: str, body: bytes, extra: str = "") -> Any:
    return post_once(gw.port, path, body, extra)


@pytest.fixture(scope="module")
def logged(mock: MockUpstreamThread, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("log_api")
    data = tmp / "ch"
    gw = GatewayProcess(gateway_config(mock.url, logging={"sink": f"chdb://{data}", "body_max_bytes": LIMIT}), tmp)
    try:
        ids, answers = {}, {}
        for name, body in [*STORED.items(), *((name, body) for name, (body, _) in REFUSED.items())]:
            ids[name] = str(uuid.uuid4())
            extra = f"Helicone-Request-Id: {ids[name]}\r\n" + (UTF8_HEADERS if name == "utf8_headers" else "")
            answers[name] = _post(gw, "/custom/v1/log", orjson.dumps(body), extra)
        ids["proxied_utf8"] = str(uuid.uuid4())
        answers["proxied_utf8"] = _post(gw, "/v1/chat/completions", b'{"model":"gpt-4o-mini","messages":[]}',
                                        f"Helicone-Request-Id: {ids['proxied_utf8']}\r\n{UTF8_HEADERS}")
    finally:
        assert gw.stop() == 0, gw.log()
    rows = query(data, "SELECT toString(request_id), total_us, upstream_us, status, target_url, user_id, properties, "
                       "session_name, request_body, response_body, request_truncated, response_truncated, request_headers, path "
                       "FROM fastgw.requests FINAL")
    columns = ("total_us", "upstream_us", "status", "target_url", "user_id", "properties", "session_name",
               "request_body", "response_body", "request_truncated", "response_truncated", "request_headers", "path")
    by_id = {row[0]: dict(zip(columns, row[1:])) for row in rows}
    rejected = gw.log_dir / "spill" / "rejected.jsonl"
    return {"answers": answers, "rows": {name: by_id.get(rid) for name, rid in ids.items()}, "log": gw.log(),
            "rejected": rejected.read_text() if rejected.exists() else "", "files": gw.log_dir}


def test_every_accepted_manual_log_is_stored(logged: dict[str, Any]) -> None:
    """A 200 is a promise: no row of it ends in rejected.jsonl."""
    for name in STORED:
        assert logged["answers"][name].status == 200, (name, logged["answers"][name].body)
        assert logged["rows"][name] is not None, (name, logged["rejected"][:500])
    assert logged["rejected"] == ""


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_value_the_row_cannot_hold_is_a_400_naming_the_field(logged: dict[str, Any], name: str) -> None:
    answer = logged["answers"][name]
    assert answer.status == 400, (answer.status, answer.body[:300])
    error = answer.json()["error"]
    assert REFUSED[name][1] in error["message"] and error["code"] == "invalid_field", error
    assert logged["rows"][name] is None


def test_no_traceback(logged: dict[str, Any]) -> None:
    assert "Traceback" not in logged["log"]


def test_bodies_are_capped_head_and_tail_as_a_proxied_requests(logged: dict[str, Any]) -> None:
    big, small = logged["rows"]["big"], logged["rows"]["small"]
    assert (big["request_truncated"], big["response_truncated"]) == (True, True)
    assert len(big["request_body"]) == len(big["response_body"]) == LIMIT
    assert big["request_body"].startswith('{"model":"gpt-4o-mini"') and big["request_body"].endswith('>"}]}')
    assert big["response_body"] == "[" + "z" * (LIMIT - 2) + "]"
    assert (small["request_truncated"], small["response_truncated"]) == (False, False)


def test_a_call_over_71_minutes_saturates_its_timings(logged: dict[str, Any]) -> None:
    row = logged["rows"]["two_hours"]
    assert (row["total_us"], row["upstream_us"]) == (UINT32_MAX, UINT32_MAX)
    assert logged["rows"]["small"]["total_us"] == 100_000


def test_credentials_in_the_url_are_redacted(logged: dict[str, Any]) -> None:
    assert logged["rows"]["credentials"]["target_url"] == (
        "https://[redacted]@generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        "?key=[redacted]&alt=sse")
    leaked = [(str(p), s) for p in Path(logged["files"]).rglob("*") if p.is_file() for s in SECRETS if s in p.read_bytes()]
    assert not leaked


@pytest.mark.parametrize("name", ["utf8_headers", "proxied_utf8"])
def test_utf8_header_values_are_stored_as_text(logged: dict[str, Any], name: str) -> None:
    row = logged["rows"][name]
    assert (row["user_id"], row["properties"], row["session_name"]) == ("Jürgen", {"city": "München"}, "Überblick")


def test_a_password_in_a_url_without_an_authority_is_redacted_from_the_path(logged: dict[str, Any]) -> None:
    row = logged["rows"]["password_in_path"]
    assert row["path"] == "[redacted]@api.openai.com/v1/chat/completions", row["path"]


def test_meta_loses_the_secrets_inside_helicone_values(logged: dict[str, Any]) -> None:
    assert logged["rows"]["helicone_meta"]["request_headers"] == {
        "helicone-fallbacks": "[redacted]", "helicone-target-url": "https://[redacted]@h.example/v1?key=[redacted]"}


def test_meta_header_values_are_stored_as_text(logged: dict[str, Any]) -> None:
    """providerRequest.meta is JSON text: 'Straße' was stored as 'StraÃ\x9fe' (UTF-8 read as latin-1)."""
    assert logged["rows"]["utf8_headers"]["request_headers"] == {"x-title": "Straße", "authorization": "[redacted]"}


def test_the_configs_body_omission_applies_to_manual_logs(start_gateway, mock: MockUpstreamThread,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path) -> None:
    """logging.omit_request_bodies / omit_response_bodies hold for a manual log as for a proxied
    request (record.pack_record); the header alone used to decide."""
    data = tmp_path / "ch"
    gw = start_gateway(gateway_config(mock.url, logging={"sink": f"chdb://{data}", "omit_request_bodies": True,
                                                         "omit_response_bodies": True}))
    answer = _post(gw, "/custom/v1/log", orjson.dumps(manual(content="secret prompt", text="secret answer")))
    assert answer.status == 200, answer.body
    assert gw.stop() == 0, gw.log()
    rows = query(data, "SELECT request_body, response_body FROM fastgw.requests FINAL")
    assert rows == [("", "")]
