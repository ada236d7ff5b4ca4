"""The command line as a user runs it: --version, --workers with restarts, graceful shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable

import pytest
import yaml

from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import chat_request, children, connect, free_port, gateway_config, read_responses


@pytest.mark.parametrize(("pure", "word"), [(False, "native: cython"), (True, "native: pure")])
def test_version_says_which_twin(pure: bool, word: str) -> None:
    env = {**os.environ, "FASTGW_PURE": "1"} if pure else {k: v for k, v in os.environ.items() if k != "FASTGW_PURE"}
    out = subprocess.run([sys.executable, "-m", "fastgw", "--version"], capture_output=True, text=True, env=env, check=True)
    assert word in out.stdout, out.stdout


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return sorted(int(p) for p in f.read().split())


def test_workers_share_the_port_and_a_dead_worker_is_replaced(start_gateway, mock: MockUpstreamThread) -> None:  # type: ignore[no-untyped-def]
    # logging off: the only children are the two workers (the exporter has its own test)
    gw = start_gateway(gateway_config(mock.url, server={"workers": 2}, logging={"enabled": False}))
    deadline = time.monotonic() + 10
    while len(_children(gw.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = _children(gw.proc.pid)
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = _children(gw.proc.pid)
        if len(now) == 2 and workers[0] not in now:
            break
        time.sleep(0.05)
    assert len(now) == 2 and workers[0] not in now and workers[1] in now
    for _ in range(20):  # both workers answer; none of the new connections fails
        with connect(gw.port) as s:
            s.sendall(chat_request())
            assert read_responses(s, 1)[0].status == 200
    assert gw.stop() == 0


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP])
def test_graceful_shutdown_finishes_requests_in_flight(start_gateway, mock: MockUpstreamThread, stop: int) -> None:  # type: ignore[no-untyped-def]
    """After SIGTERM (or SIGHUP, a terminal that closed) the gateway stops accepting while a request is still with the upstream, then
    answers that request (with ``connection: close``) and exits 0. Waits for each step rather than
    sleeping a fixed time: a 0.2 s allowance for the listener to close failed on a loaded machine."""
    gw = start_gateway(gateway_config(mock.url, server={"graceful_timeout": "10s"}))
    result: dict[str, object] = {}
    seen = mock.mock.request_count

    def slow_request() -> None:
        with connect(gw.port) as s:
            s.sendall(chat_request(extra="x-mock-latency-ms: 3000\r\n"))
            result["responses"] = read_responses(s, 1, timeout=20)

    t = threading.Thread(target=slow_request)
    t.start()
    _wait(lambda: mock.mock.request_count > seen, 5, "the request to reach the upstream")
    gw.proc.send_signal(stop)
    _wait(lambda: not _accepts(gw.port), 2.5, "the gateway to stop accepting")
    assert "responses" not in result  # the upstream answers 3 s after the request came: still in flight
    t.join(20)
    (resp,) = result["responses"]  # type: ignore[misc]
    assert resp.status == 200 and resp.headers.get("connection") == "close"
    assert gw.proc.wait(10) == 0


@pytest.mark.parametrize("logging", [False, True], ids=["in-process", "supervised"])
def test_under_nohup_a_hangup_changes_nothing(start_gateway, mock: MockUpstreamThread, logging: bool) -> None:  # type: ignore[no-untyped-def]
    """`nohup fastgw serve` is asked to outlive its terminal: SIGHUP to its whole job (as a closing
    terminal sends it) must not stop it, in the worker served in-process (logging off) or under
    the supervisor with two workers and an exporter; SIGTERM still stops it cleanly."""
    config = gateway_config(mock.url, server={"workers": 2} if logging else {},
                            logging={} if logging else {"enabled": False})
    gw = start_gateway(config, nohup=True, foreground_job=True)
    deadline = time.monotonic() + 20
    # Ready: the in-process worker prints its banner once its signal handlers are set (its port
    # listens before); under the supervisor, two workers and the exporter are there.
    while not ("listening on" in gw.log() if not logging else len(children(gw.proc.pid)) == 3):
        assert time.monotonic() < deadline, gw.log()
        time.sleep(0.05)
    before = children(gw.proc.pid)
    os.killpg(gw.proc.pid, signal.SIGHUP)
    time.sleep(1.0)
    assert gw.proc.poll() is None, gw.log()
    assert sorted(children(gw.proc.pid)) == sorted(before), gw.log()
    for _ in range(4):  # SO_REUSEPORT spreads new connections over the workers
        with connect(gw.port) as s:
            s.sendall(chat_request())
            assert read_responses(s, 1)[0].status == 200
    gw.proc.send_signal(signal.SIGTERM)
    assert gw.proc.wait(30) == 0, gw.log()


def _accepts(port: int) -> bool:
    try:
        connect(port, timeout=1).close()
    except OSError:
        return False
    return True


def _wait(ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout} s for {what}")
        time.sleep(0.05)


def test_grace_period_ends_stuck_requests(start_gateway, mock: MockUpstreamThread) -> None:  # type: ignore[no-untyped-def]
    gw = start_gateway(gateway_config(mock.url, server={"graceful_timeout": "500ms"}))
    with connect(gw.port) as s:
        s.sendall(chat_request(extra="x-mock-latency-ms: 10000\r\n"))
        time.sleep(0.2)
        t0 = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(10) == 0
        assert time.monotonic() - t0 < 3


def test_the_shipped_example_config_is_valid() -> None:
    out = subprocess.run([sys.executable, "-m", "fastgw", "check-config", "fastgw.example.yaml"],
                         capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr


def test_a_second_gateway_on_the_same_log_folders_is_refused(start_gateway, mock: MockUpstreamThread, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two gateways sharing a ring or spill folder would take over each other's records; the second
    one is refused at start, naming the key and the first one's PID, and the first goes on."""
    gw = start_gateway(gateway_config(mock.url))
    first = yaml.safe_load(gw.config_path.read_text())["logging"]
    clashes = [
        ("logging.run_dir", {"run_dir": first["run_dir"], "spill_dir": str(tmp_path / "other-spill")}),
        ("logging.spill_dir", {"run_dir": str(tmp_path / "other-run"), "spill_dir": first["spill_dir"]}),
    ]
    for key, folders in clashes:
        cfg = gateway_config(mock.url, server={"port": free_port()}, admin={"port": free_port()},
                             logging={"sink": f"jsonl://{tmp_path}/other-sink", **folders})
        path = tmp_path / "second.yaml"
        path.write_text(yaml.safe_dump(cfg))
        out = subprocess.run([sys.executable, "-m", "fastgw", "serve", "--config", str(path)], capture_output=True,
                             text=True, timeout=60, cwd=tmp_path)
        assert out.returncode == 1, out.stderr
        assert f"{key}: " in out.stderr and f"(pid {gw.proc.pid})" in out.stderr, out.stderr
    with connect(gw.port) as s:  # the first gateway never noticed
        s.sendall(chat_request())
        assert read_responses(s, 1)[0].status == 200
    assert gw.stop() == 0
    # Gone, it leaves the folders free: a gateway started on them takes them over.
    again = start_gateway(gateway_config(mock.url, logging=first))
    with connect(again.port) as s:
        s.sendall(chat_request())
        assert read_responses(s, 1)[0].status == 200
    assert again.stop() == 0
