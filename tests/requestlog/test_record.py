"""The log record's wire format and its redaction: no credential leaves the worker."""

from __future__ import annotations

from fastgw.app import context_from_raw
from hypothesis import example, given
from hypothesis import strategies as st

from fastgw.requestlog.record import BodyCapture, capped, decode_record, encode_record, redacted_lines

SECRETS = [b"AZ-SECRET", b"cookie-secret", b"GOOG-SECRET", b"sk-bearer-secret", b"sk-ant-secret", b"AMZ-SECRET"]


def test_every_credential_header_is_redacted() -> None:
    raw = [(b"Host", b"h"), (b"api-key", SECRETS[0]), (b"Cookie", SECRETS[1]), (b"X-Goog-Api-Key", SECRETS[2]),
           (b"Authorization", b"Bearer " + SECRETS[3]), (b"x-api-key", SECRETS[4]),
           (b"X-Amz-Security-Token", SECRETS[5]), (b"X-Ok", b"fine")]
    block = redacted_lines(context_from_raw(b"POST", b"/v1/x", raw, b"", 0)).decode("latin-1")
    assert not any(secret.decode() in block for secret in SECRETS), block
    headers = decode_record(encode_record({"request_headers": block}))["request_headers"]
    assert headers == {"api-key": "[redacted]", "cookie": "[redacted]", "x-goog-api-key": "[redacted]",
                       "x-amz-security-token": "[redacted]", "x-ok": "fine", "authorization": "[redacted]",
                       "x-api-key": "[redacted]"}


def test_record_round_trip_keeps_bodies_byte_for_byte() -> None:
    meta = {"kind": "request", "request_id": "r", "properties": {"env": "prod"}}
    request, response = '{"messages":"héllo ✓"}'.encode(), b"data: {}\n\n"
    got = decode_record(encode_record(meta, request, response))
    assert got == {**meta, "request_body": request.decode(), "response_body": response.decode()}


def test_body_capture_keeps_head_and_tail() -> None:
    cap = BodyCapture(100)
    for i in range(50):
        cap.add(b"%02d" % i * 5)  # 10 bytes a chunk, 500 in all
    value, truncated = cap.value()
    assert truncated and len(value) == 100
    assert value.startswith(b"00000000000101010101") and value.endswith(b"48484848484949494949")
    small = BodyCapture(100)
    small.add(b"abc")
    assert small.value() == (b"abc", False)


def test_body_capture_keeps_the_end_that_arrives_in_the_chunk_that_fills_the_head() -> None:
    # A reviewer's case: the second chunk both filled the head and ended the body, and the end
    # (where a stream's usage is) was cut away with the head's overflow.
    cap = BodyCapture(100)
    cap.add(b"x" * 10)
    cap.add(b"y" * 95 + b"USAGE")
    value, truncated = cap.value()
    assert truncated and len(value) == 100 and value.endswith(b"USAGE")


@given(st.lists(st.binary(max_size=70), max_size=12), st.integers(min_value=0, max_value=160))
@example([b"xxxxx", b"a", b"bbbbb"], 11)  # a review's: odd limits lost a chunk of a body that long
@example([b"x"], 1)
@example([b"a", b"b", b"c"], 3)
def test_body_capture_equals_capping_the_whole_body(chunks: list[bytes], limit: int) -> None:
    cap = BodyCapture(limit)
    for chunk in chunks:
        cap.add(chunk)
    assert cap.value() == capped(b"".join(chunks), limit)


def test_body_capture_equals_capping_on_every_small_body() -> None:
    """Every split of bodies up to 7 bytes into chunks, every limit up to 9: small enough to try all."""
    import itertools

    for length in range(8):
        body = bytes(range(97, 97 + length))
        for cuts in itertools.product((False, True), repeat=max(length - 1, 0)):
            chunks, start = [], 0
            for i, cut in enumerate(cuts, 1):
                if cut:
                    chunks.append(body[start:i])
                    start = i
            chunks.append(body[start:])
            for limit in range(10):
                cap = BodyCapture(limit)
                for chunk in chunks:
                    cap.add(chunk)
                assert cap.value() == capped(body, limit), (chunks, limit)


def test_capped_keeps_nothing_past_a_limit_under_two() -> None:
    assert capped(b"abcdef", 1) == (b"", True)
    assert capped(b"abcdef", 0) == (b"", True)
    assert capped(b"abcdef", 4) == (b"abef", True)


def test_the_fast_redaction_check_covers_every_credential_name() -> None:
    """redacted_lines skips its regex unless a hint matches: each credential name must hit one."""
    from fastgw.requestlog.record import _CREDENTIAL_HINTS, CREDENTIAL_HEADERS

    for name in CREDENTIAL_HEADERS:
        assert any((name + ":").encode().endswith(hint) for hint in _CREDENTIAL_HINTS), name


def test_a_key_in_the_query_is_redacted_from_path_and_target_url() -> None:
    """Gemini takes its key as ?key=, OAuth a token as ?access_token=: the logged path and target
    URL keep the query, not the credentials."""
    import time

    from fastgw.config import ProviderConfig
    from fastgw.providers.table import Provider
    from fastgw.requestlog.record import pack_record

    target = b"/gemini/v1beta/models/g:streamGenerateContent?key=GOOG-SECRET&alt=sse&Access_Token=TOK-SECRET"
    ctx = context_from_raw(b"POST", target, [(b"host", b"h")], b"{}", time.perf_counter_ns())
    ctx.provider = Provider.from_config("gemini", ProviderConfig(base_url="https://g.test", format="gemini"))
    ctx.upstream_path = b"/v1beta/models/g:streamGenerateContent?key=GOOG-SECRET&alt=sse&Access_Token=TOK-SECRET"
    packed = pack_record(ctx, status=200, error=None, response_body=b"", response_truncated=False,
                         response_content_type="", t_first_byte=0, client_left=False, body_limit=100,
                         omit_request=False, omit_response=False, worker=0)
    assert b"GOOG-SECRET" not in packed and b"TOK-SECRET" not in packed
    meta = decode_record(packed)
    assert meta["path"] == "/gemini/v1beta/models/g:streamGenerateContent?key=[redacted]&alt=sse&Access_Token=[redacted]"
    assert meta["target_url"].endswith("/v1beta/models/g:streamGenerateContent?key=[redacted]&alt=sse&Access_Token=[redacted]")


def test_headers_of_a_request_without_context_lose_the_secrets_inside_helicone_values() -> None:
    """A refused request's record keeps its raw headers: Helicone-Fallbacks carries each
    fallback's Authorization, Helicone-Target-Url may carry a password or a ?key=."""
    from fastgw.requestlog.record import redact_headers

    fallbacks = b'[{"target-url": "https://a.test", "headers": {"Authorization": "Bearer sk-FALLBACK"}}]'
    got = redact_headers([(b"Helicone-Fallbacks", fallbacks),
                          (b"Helicone-Target-Url", b"https://u:sk-USERINFO@h.test/v1?key=sk-QUERY&x=1"),
                          (b"Helicone-Request-Id", b"nope"), (b"Authorization", b"Bearer sk-AUTH")])
    assert got == {"helicone-fallbacks": "[redacted]", "helicone-target-url": "https://[redacted]@h.test/v1?key=[redacted]&x=1",
                   "helicone-request-id": "nope", "authorization": "[redacted]"}
