"""The admin key: required beyond loopback (the start is refused without one), checked on every path."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.error import HTTPError

import orjson
import pytest

from fastgw.analytics.access import is_loopback, key_required
from fastgw.analytics.admin_server import AdminServer
from fastgw.config import AdminConfig

KEY = "admin-s3cret-key"


def local_address() -> str | None:
    """This machine's address on its default route, if it has one that is not loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.123", 9))  # no packet is sent: this only picks the route
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if is_loopback(address) else address


def status_of(url: str, auth: str | None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": auth} if auth is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status
    except HTTPError as exc:
        with exc:
            if exc.code == 401:
                body = orjson.loads(exc.read())
                assert body["error"]["code"] == "invalid_api_key" and exc.headers["WWW-Authenticate"]
            return exc.code


def test_policy() -> None:
    assert key_required("127.0.0.1", "") is False and key_required("::1", "") is False
    assert key_required("localhost", "") is False and key_required("127.0.0.1", KEY) is True
    assert key_required("0.0.0.0", KEY) is True and key_required("192.0.2.2", KEY) is True
    for host in ("0.0.0.0", "::", "192.0.2.2", "admin.example.com"):
        with pytest.raises(ValueError, match="admin.key"):
            key_required(host, "")


def test_server_refuses_to_start_beyond_loopback_without_a_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        AdminServer(AdminConfig(host="0.0.0.0", port=0), "none://")
    cfg = tmp_path / "gw.yaml"
    cfg.write_text("admin: {host: 0.0.0.0}\n")
    done = subprocess.run([sys.executable, "-m", "fastgw", "check-config", str(cfg)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2 and "admin.key" in done.stderr and str(cfg) in done.stderr


@pytest.fixture
def open_to_all(tmp_path: Path) -> Iterator[AdminServer]:
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "app.js").write_text("")
    server = AdminServer(AdminConfig(host="0.0.0.0", port=0, key=KEY), "none://", dashboard_dir=tmp_path)
    server.start()
    yield server
    server.stop()


def test_key_required_on_the_api_and_metrics(open_to_all: AdminServer) -> None:
    # Bound to 0.0.0.0: reached through loopback, and through this machine's own address when it
    # has one (a container without a network has only loopback; the policy is the same).
    hosts = ["127.0.0.1"] + ([addr] if (addr := local_address()) else [])
    for host in hosts:
        base = f"http://{host}:{open_to_all.port}"
        for path in ("/api/v1/health", "/api/v1/summary", "/metrics", "/nope", "/api/v1/requests?since=1h"):
            assert status_of(base + path, None) == 401, path
            assert status_of(base + path, "Bearer wrong") == 401, path
            assert status_of(base + path, f"Bearer {KEY}x") == 401, path
            assert status_of(base + path, KEY) == 401, path  # the scheme is part of it
        assert status_of(base + "/api/v1/health", f"Bearer {KEY}") == 200
        assert status_of(base + "/api/v1/health", f"bearer  {KEY}") == 200  # the scheme is case-insensitive
        # Authorised, the sink decides: this one logs nowhere, so the query API has nothing to read.
        assert status_of(base + "/api/v1/summary", f"Bearer {KEY}") == 503
        # The page and its files hold no data and load without the key (the page then asks for it).
        assert status_of(base + "/", None) == 200 and status_of(base + "/static/app.js", None) == 200
        assert status_of(base + "/static/missing.js", None) == 404


def test_loopback_server_without_key_is_open() -> None:
    server = AdminServer(AdminConfig(port=0), "none://")
    server.start()
    try:
        assert status_of(f"http://127.0.0.1:{server.port}/api/v1/health", None) == 200
        assert status_of(f"http://127.0.0.1:{server.port}/api/v1/health", "Bearer anything") == 200
    finally:
        server.stop()


def test_without_a_key_only_loopback_host_names_are_answered(tmp_path: Path) -> None:
    """DNS rebinding: a page on attacker.example rebound to 127.0.0.1 sends its own name as Host;
    a keyless admin server answers only requests addressed to loopback."""
    import http.client

    (tmp_path / "index.html").write_text("<!doctype html>")
    server = AdminServer(AdminConfig(host="127.0.0.1", port=0), "none://", dashboard_dir=tmp_path)
    server.start()
    try:
        def status(host: str) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            try:
                conn.request("GET", "/api/v1/health", headers={"Host": host})
                resp = conn.getresponse()
                resp.read()
                return resp.status
            finally:
                conn.close()

        for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", "[::1]"):
            assert status(host) != 403, host
        for host in (f"attacker.example:{server.port}", "127.0.0.1.nip.io", "localhost.attacker.example"):
            assert status(host) == 403, host
    finally:
        server.stop()
