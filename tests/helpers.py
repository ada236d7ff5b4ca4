"""Test helpers: a real gateway process, raw sockets, and an HTTP response reader."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httptools
import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


class GatewayProcess:
    """``fastgw serve`` started the way a user starts it, with a config file written for the test."""

    def __init__(self, config: dict[str, Any], tmp: Path, *, pure: bool = False, env: dict[str, str] | None = None,
                 args: list[str] | None = None, foreground_job: bool = False, nohup: bool = False) -> None:
        """``foreground_job``: a process group of its own, as a shell runs a command in a terminal
        (Ctrl-C goes to the whole group). `fastgw serve` and its workers set their own SIGINT
        handlers, so one the test runner left ignored doesn't matter. ``nohup``: started through
        coreutils' nohup (SIGHUP ignored)."""
        self.port = free_port()
        cfg = {**config, "server": {"port": self.port, **config.get("server", {})}}
        # Each gateway's admin server on a port of its own: tests run many gateways side by side.
        self.admin_port = free_port()
        cfg["admin"] = {"port": self.admin_port, **config.get("admin", {})}
        # Each gateway logs into its own folders (rings, spill, sink); a jsonl sink unless the test
        # asks for another: chDB holds its folder for one process, and starts slower.
        self.log_dir = tmp / f"log-{self.port}"
        cfg["logging"] = {
            "sink": f"jsonl://{self.log_dir}/sink", "run_dir": str(self.log_dir / "run"),
            "spill_dir": str(self.log_dir / "spill"), **config.get("logging", {}),
        }
        self.config_path = tmp / f"fastgw-{self.port}.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg))
        full_env = {**os.environ, **(env or {})}
        if pure:
            full_env["FASTGW_PURE"] = "1"
        self.stderr_path = tmp / f"fastgw-{self.port}.log"
        self._stderr = open(self.stderr_path, "wb")
        # Run from the test's folder: defaults relative to the working directory (the key store's
        # ./fastgw-keys.db, ./fastgw-data) land there, never in the checkout.
        self.proc = subprocess.Popen(
            [*(["nohup"] if nohup else []), sys.executable, "-m", "fastgw", "serve", "--config", str(self.config_path),
             *(args or [])],
            env=full_env, stdout=subprocess.DEVNULL, stderr=self._stderr, cwd=tmp,
            **({"process_group": 0} if foreground_job else {}),
        )
        try:
            wait_for_port(self.port, proc=self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"gateway did not start: {self.log()}") from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        return self.proc.returncode


def gateway_config(mock_url: str, **extra: Any) -> dict[str, Any]:
    """Every built-in provider pointed at the mock, plus a custom one and the mock allow-listed."""
    cfg: dict[str, Any] = {
        "providers": {
            "openai": {"base_url": mock_url},
            "anthropic": {"base_url": mock_url, "format": "anthropic"},
            "local": {"base_url": mock_url, "format": "openai"},
        },
        "targets": {"allow": [mock_url]},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


T = TypeVar("T")
_SDK_CLIENTS: list[Any] = []


def sdk(client: T) -> T:
    """An SDK client (openai, anthropic) that the test does not close itself: closed after the test
    (conftest's ``close_sdk_clients``). Left to the garbage collector, its pooled sockets would
    raise an unclosed-socket ResourceWarning, an error here, in whichever later test collects it."""
    _SDK_CLIENTS.append(client)
    return client


def close_sdk_clients() -> None:
    while _SDK_CLIENTS:
        _SDK_CLIENTS.pop().close()


def process_gone(pid: int) -> bool:
    """Exited; a zombie counts (whoever adopted it may not have reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def exporter_pid(gw: GatewayProcess) -> int:
    """The supervisor's child named fastgw-exporter (process_name): by name, as a restarted
    exporter comes after the workers, and pids wrap."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for pid in children(gw.proc.pid):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "fastgw-exporter" and not process_gone(pid):
                    return pid  # not a killed one the supervisor hasn't reaped yet
            except OSError:
                continue
        time.sleep(0.05)
    raise AssertionError("no exporter process")


# --- raw HTTP ------------------------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: list[bytes] = field(default_factory=list)
    complete: bool = False

    def json(self) -> Any:
        import orjson

        return orjson.loads(self.body)


class ResponseReader:
    """Splits the bytes of a connection into responses (pipelining, keep-alive) with httptools."""

    def __init__(self, head_request: bool = False) -> None:
        self.responses: list[RawResponse] = []
        self.parser = httptools.HttpResponseParser(self)
        self._cur: RawResponse | None = None
        self.head_request = head_request

    def on_message_begin(self) -> None:
        self._cur = RawResponse()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._cur.headers[name.decode().lower()] = value.decode("latin-1")  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        self._cur.status = self.parser.get_status_code()  # type: ignore[union-attr]
        if self.head_request:
            self._cur.complete = True  # type: ignore[union-attr]
            self.responses.append(self._cur)  # type: ignore[arg-type]

    def on_body(self, body: bytes) -> None:
        self._cur.body += body  # type: ignore[union-attr]
        self._cur.chunks.append(body)  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        if not self.head_request:
            self._cur.complete = True  # type: ignore[union-attr]
            self.responses.append(self._cur)  # type: ignore[arg-type]

    def feed(self, data: bytes) -> None:
        self.parser.feed_data(data)


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_responses(sock: socket.socket, count: int, timeout: float = 5.0, head_request: bool = False) -> list[RawResponse]:
    """Read until ``count`` complete responses arrived (or the peer closed, or timeout)."""
    reader = ResponseReader(head_request)
    sock.settimeout(timeout)
    while len(reader.responses) < count:
        data = sock.recv(65536)
        if not data:
            break
        reader.feed(data)
    return reader.responses


def read_until_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    out = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        out += data
    return out


def chat_request(body: bytes = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}',
                 path: str = "/v1/chat/completions", extra: str = "", version: str = "1.1") -> bytes:
    return (
        f"POST {path} HTTP/{version}\r\nHost: gw\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer sk-test\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def query_chdb(data: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` in the chDB folder ``data``, opened after its gateway stopped: chDB lets one
    process at a time hold a folder."""
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=f"chdb://{data}")
    try:
        return list(client.query(sql).result_rows)
    finally:
        client.close()


def post_once(port: int, path: str, body: bytes, extra: str = "") -> RawResponse:
    """One request on a fresh connection, and its response."""
    with connect(port) as s:
        s.sendall(chat_request(body, path=path, extra=extra))
        return read_responses(s, 1)[0]


def can_make_idle_cgroup() -> bool:
    """Whether this process may make a cpu cgroup marked cpu.idle under its own without changing the
    hierarchy, as the exporter does (requestlog/idle_cgroup.py): cgroup v1, or v2's root cgroup with
    the cpu controller given to its children. Tried here with a folder of the test's own, then removed."""
    from fastgw.requestlog.idle_cgroup import cpu_cgroup

    where = cpu_cgroup()
    if where is None or not (Path(where.path) / "cgroup.procs").exists():
        return False
    if not where.v1 and ((Path(where.path) / "cgroup.type").exists()
                         or "cpu" not in (Path(where.path) / "cgroup.subtree_control").read_text().split()):
        return False
    probe = Path(where.path) / f"fastgw-test-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError:
        return False
    try:
        fd = os.open(probe / "cpu.idle", os.O_WRONLY)
        try:
            os.write(fd, b"1\n")
        finally:
            os.close(fd)
        return True
    except OSError:
        return False
    finally:
        probe.rmdir()


def cpu_cgroup_of(pid: int, tid: int | None = None) -> Path | None:
    """The folder of a process's (or one of its threads') cpu cgroup, as the kernel reports it."""
    from fastgw.requestlog.idle_cgroup import cpu_cgroup

    where = cpu_cgroup(f"/proc/{pid}/task/{tid or pid}/cgroup", f"/proc/{pid}/mountinfo")
    return Path(where.path) if where is not None else None
