"""SigV4 against AWS's published test suite, and the Bedrock path rule (``:`` in model ids)."""

from __future__ import annotations

import calendar
import hashlib
import json
import time
from pathlib import Path

import pytest

from fastgw.providers import sigv4

SUITE = json.loads((Path(__file__).parent.parent / "fixtures" / "sigv4" / "aws_sig_v4_test_suite.json").read_text())
CREDS = sigv4.AwsCredentials(SUITE["access_key_id"], SUITE["secret_access_key"])
VECTORS = {v["name"]: v for v in SUITE["vectors"]}


def _headers(v: dict) -> list[tuple[str, str]]:
    return [(n, val) for n, val in v["headers"]]


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector_authorization(name: str) -> None:
    v = VECTORS[name]
    got = sigv4.authorization(v["method"], v["path"], v["query"], _headers(v), v["body"].encode(), CREDS,
                              SUITE["region"], SUITE["service"], SUITE["date"])
    assert got == v["authz"]


@pytest.mark.parametrize("name", sorted(n for n, v in VECTORS.items() if "creq" in v))
def test_vector_canonical_request(name: str) -> None:
    v = VECTORS[name]
    creq, _ = sigv4.canonical_request(v["method"], v["path"], v["query"], _headers(v),
                                      hashlib.sha256(v["body"].encode()).hexdigest())
    assert creq == v["creq"]


@pytest.mark.parametrize("name", sorted(n for n, v in VECTORS.items() if "sts" in v))
def test_vector_string_to_sign(name: str) -> None:
    v = VECTORS[name]
    creq, _ = sigv4.canonical_request(v["method"], v["path"], v["query"], _headers(v),
                                      hashlib.sha256(v["body"].encode()).hexdigest())
    assert sigv4.string_to_sign(SUITE["date"], "20150830/us-east-1/service/aws4_request", creq) == v["sts"]


def test_sign_adds_date_token_and_matches_the_session_vector() -> None:
    """``sign`` (what Bedrock requests use) reproduces post-sts-header-before from a clock."""
    v = VECTORS["post-sts-header-before"]
    token = dict(v["headers"])["X-Amz-Security-Token"]
    creds = sigv4.AwsCredentials(CREDS.access_key_id, CREDS.secret_access_key, token)
    now = calendar.timegm(time.strptime(SUITE["date"], "%Y%m%dT%H%M%SZ"))
    added = sigv4.sign("POST", "example.amazonaws.com", "/", "", b"", creds, "us-east-1", "service", now=now)
    assert added == [("x-amz-date", SUITE["date"]), ("x-amz-security-token", token), ("authorization", v["authz"])]


def test_a_different_secret_gives_a_different_signature() -> None:
    v = VECTORS["get-vanilla"]
    other = sigv4.AwsCredentials("AKIDEXAMPLE", "not-the-secret")
    got = sigv4.authorization("GET", "/", "", _headers(v), b"", other, "us-east-1", "service", SUITE["date"])
    assert got != v["authz"] and got.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/")


def test_bedrock_model_id_colon_is_sent_once_encoded_and_signed_twice_encoded() -> None:
    """botocore sends /model/...-v1%3A0/converse and signs /model/...-v1%253A0/converse."""
    for raw in ("/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse",
                "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"):
        sent = sigv4.wire_path(raw)
        assert sent == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
        assert sigv4.canonical_uri(sent) == "/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse"
    # an inference-profile ARN: '/' inside the id is encoded too, so it stays one segment
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile%2Fus.anthropic.claude"
    assert sigv4.wire_path(f"/model/{arn}/converse") == (
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude/converse")


def test_credentials_from_env() -> None:
    assert sigv4.AwsCredentials.from_env({"AWS_ACCESS_KEY_ID": "A"}) is None
    c = sigv4.AwsCredentials.from_env({"AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "S", "AWS_SESSION_TOKEN": "T"})
    assert c == sigv4.AwsCredentials("A", "S", "T") and "S" not in repr(c)
    assert sigv4.region_from_env({"AWS_DEFAULT_REGION": "eu-west-1"}) == "eu-west-1"
    assert sigv4.region_from_env({"AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "eu-west-1"}) == "us-west-2"


def test_parse_authorization() -> None:
    f = sigv4.parse_authorization(VECTORS["get-vanilla"]["authz"])
    assert f is not None and f["SignedHeaders"] == "host;x-amz-date" and f["Credential"].startswith("AKIDEXAMPLE/")
    assert sigv4.parse_authorization("Bearer abc") is None
