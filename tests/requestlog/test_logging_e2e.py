"""Request logging end to end: real gateway processes, real chDB, only the provider mocked.

chDB holds its folder for one process at a time, so each test lets the gateway (its exporter)
write, stops it with SIGTERM (which drains every ring and spill file to the sink), and only then
opens the folder to count.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import clickhouse_connect
import openai
import pytest

from fastgw.requestlog.priority import autogroups_on
from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import (
    GatewayProcess, can_make_idle_cgroup, chat_request, children, connect, cpu_cgroup_of, exporter_pid, gateway_config,
    post_once, process_gone, query_chdb, read_responses,
)

MSGS = [{"role": "user", "content": "hello there"}]


def chdb_config(mock: MockUpstreamThread, data: Path, **logging: Any) -> dict[str, Any]:
    return gateway_config(mock.url, logging={"sink": f"chdb://{data}", **logging})


query = query_chdb



def send_mixed(gw: GatewayProcess, n: int) -> dict[str, int]:
    """n rounds of: JSON chat, streamed chat, an upstream error, an Anthropic stream, a disconnect."""
    kinds = {"json": 0, "stream": 0, "error": 0, "anthropic": 0, "disconnect": 0}
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0) as client:
        for i in range(n):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, extra_headers={"helicone-user-id": f"u{i}"})
            kinds["json"] += 1
            list(client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True))
            kinds["stream"] += 1
            with pytest.raises(openai.InternalServerError):
                client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, extra_headers={"x-mock-status": "500"})
            kinds["error"] += 1
            with connect(gw.port) as s:
                body = b'{"model":"claude-sonnet-4-6","max_tokens":9,"stream":true,"messages":[{"role":"user","content":"hi"}]}'
                s.sendall(chat_request(body, path="/anthropic/v1/messages"))
                assert read_responses(s, 1)[0].status == 200
            kinds["anthropic"] += 1
            with connect(gw.port) as s:  # leaves while the upstream is still thinking
                s.sendall(chat_request(extra="x-mock-latency-ms: 300\r\n"))
                time.sleep(0.05)
            kinds["disconnect"] += 1
    time.sleep(0.4)  # the disconnected requests' upstream calls end and are logged
    return kinds


def test_every_request_lands_exactly_once_with_tokens_and_cost(start_gateway, mock: MockUpstreamThread, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "ch"
    gw = start_gateway(chdb_config(mock, data))
    kinds = send_mixed(gw, 5)
    assert gw.stop() == 0, gw.log()
    total = sum(kinds.values())
    (count,) = query(data, "SELECT count() FROM fastgw.requests FINAL")[0]
    assert count == total
    rows = query(data, """
        SELECT status, stream, usage_source, prompt_tokens, completion_tokens, cost_nanousd, error_type
        FROM fastgw.requests FINAL""")
    ok_json = [r for r in rows if r[0] == 200 and not r[1]]
    streams = [r for r in rows if r[0] == 200 and r[1]]
    errors = [r for r in rows if r[0] == 500]
    left = [r for r in rows if r[6] == "client_disconnected"]
    assert len(ok_json) == kinds["json"] and len(errors) == kinds["error"] and len(left) == kinds["disconnect"]
    assert len(streams) == kinds["stream"] + kinds["anthropic"]
    # the mock's usage: prompt = len(body)//4, completion = number of pieces (5); priced exactly
    for status, _, source, prompt, completion, cost, _ in ok_json + streams:
        assert source == "provider" and prompt > 0 and completion == 5 and cost is not None and cost > 0
    gpt = query(data, "SELECT prompt_tokens, completion_tokens, cost_nanousd FROM fastgw.requests FINAL "
                      "WHERE model_served = 'gpt-4o-mini' AND status = 200 LIMIT 1")[0]
    # gpt-4o-mini: $0.15 / M input, $0.60 / M output, in nano-dollars per token: 150 and 600
    assert gpt[2] == gpt[0] * 150 + gpt[1] * 600
    (users,) = query(data, "SELECT uniqExact(user_id) FROM fastgw.requests FINAL WHERE user_id != ''")[0]
    assert users == 5
    (leaks,) = query(data, "SELECT count() FROM fastgw.requests WHERE position(toString(request_headers), 'sk-test') > 0")[0]
    assert leaks == 0


def test_sink_down_for_a_while_loses_and_doubles_nothing(start_gateway, mock: MockUpstreamThread, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """chDB's folder held by another process is the sink being down: the exporter backs off, and
    parks what the rings hold in files on disk until the sink takes writes again."""
    data = tmp_path / "ch"
    query(data, "SELECT 1")  # create the folder
    holder = clickhouse_connect.get_client(dsn=f"chdb://{data}")  # ... and hold it: the sink is down
    try:
        gw = start_gateway(chdb_config(mock, data))
        parked = gw.log_dir / "spill" / "parked"
        with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0) as client:
            for _ in range(40):
                client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
        deadline = time.monotonic() + 15  # the first park comes a second after a try (back-off 0.1, 0.2, ...)
        while not list(parked.glob("parked-*.wal")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(parked.glob("parked-*.wal")), gw.log()
    finally:
        holder.close()  # the sink is back
    deadline = time.monotonic() + 40
    while list(parked.glob("parked-*.wal")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gw.stop() == 0, gw.log()
    assert "sink write failed" in gw.log() or "retrying" in gw.log()
    assert query(data, "SELECT count(), uniqExact(request_id) FROM fastgw.requests")[0] == (40, 40)
    assert not list(parked.glob("parked-*.wal")) and not list((gw.log_dir / "spill").rglob("spill-*.wal"))


def test_exporter_killed_mid_load_then_restarted_keeps_counts_exact(start_gateway, mock: MockUpstreamThread, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "ch"
    gw = start_gateway(chdb_config(mock, data, batch_max_age="100ms"))
    sent = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal sent
        with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0) as client:
            while not stop.is_set():
                client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
                sent += 1

    t = threading.Thread(target=load)
    t.start()
    try:
        time.sleep(1.0)
        first = exporter_pid(gw)
        os.kill(first, signal.SIGKILL)
        time.sleep(1.5)  # the supervisor starts a new exporter; load goes on
        assert exporter_pid(gw) != first  # found by name: the workers' pids are lower
    finally:
        stop.set()
        t.join(10)
    assert gw.stop() == 0, gw.log()
    assert sent > 20
    assert query(data, "SELECT count() FROM fastgw.requests FINAL")[0][0] == sent


def test_records_of_a_killed_worker_still_arrive(start_gateway, mock: MockUpstreamThread, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The exporter is paused (SIGSTOP) so records wait in the worker's ring; the worker is killed."""
    data = tmp_path / "ch"
    gw = start_gateway(chdb_config(mock, data))
    exporter = exporter_pid(gw)
    os.kill(exporter, signal.SIGSTOP)
    try:
        with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0) as client:
            for _ in range(25):
                client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
        worker = [p for p in children(gw.proc.pid) if p != exporter][0]
        os.kill(worker, signal.SIGKILL)
    finally:
        os.kill(exporter, signal.SIGCONT)
    time.sleep(1.0)
    assert gw.stop() == 0, gw.log()
    assert query(data, "SELECT count() FROM fastgw.requests FINAL")[0][0] == 25


def test_a_supervisor_killed_outright_takes_its_children_down_and_their_records_arrive(start_gateway, mock: MockUpstreamThread, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``kill -9`` on ``fastgw serve`` itself: its worker and exporter must not live on as orphans
    holding the port and the folders. They get a SIGTERM from the kernel and stop as on a normal
    shutdown, the exporter draining the rings: every record is in chDB, and the port is free."""
    data = tmp_path / "ch"
    gw = start_gateway(chdb_config(mock, data))
    exporter = exporter_pid(gw)
    worker = [p for p in children(gw.proc.pid) if p != exporter][0]
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0) as client:
        for _ in range(20):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    deadline = time.monotonic() + 20
    while "exporter priority" not in gw.log():  # placed (in its idle cgroup, where it may make one)
        assert time.monotonic() < deadline, gw.log()
        time.sleep(0.05)
    os.kill(gw.proc.pid, signal.SIGKILL)
    gw.proc.wait()
    deadline = time.monotonic() + 60
    while not (process_gone(worker) and process_gone(exporter)) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert process_gone(worker) and process_gone(exporter), f"orphans left: worker {worker}, exporter {exporter}\n{gw.log()}"
    finally:
        for pid in (worker, exporter):
            if not process_gone(pid):
                os.kill(pid, signal.SIGKILL)
    with socket.socket() as s:
        s.bind(("127.0.0.1", gw.port))  # nothing holds the gateway's port any more
    assert query(data, "SELECT count(), uniqExact(request_id) FROM fastgw.requests FINAL")[0] == (20, 20), gw.log()
    # Nobody was left to remove the exporter's idle cgroup: the next start's sweep does.
    home = cpu_cgroup_of(os.getpid())
    if can_make_idle_cgroup():
        assert home is not None
        cgroup = home / f"fastgw-exporter-{gw.proc.pid}"
        assert cgroup.is_dir() and not (cgroup / "tasks" if (cgroup / "tasks").exists() else cgroup / "cgroup.procs").read_text()
        start_gateway(chdb_config(mock, tmp_path / "ch2")).stop()
        assert not cgroup.exists()


def test_records_left_in_the_rings_by_a_killed_gateway_arrive_at_the_next_start(start_gateway, mock: MockUpstreamThread, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Every process of a gateway killed at once (a container's SIGKILL) while its exporter was
    paused: the records are in the rings, on shared memory or a run_dir. A new ``fastgw serve`` on
    the same folders exports them."""
    data, folders = tmp_path / "ch", {"run_dir": str(tmp_path / "run"), "spill_dir": str(tmp_path / "spill")}
    gw = start_gateway(chdb_config(mock, data, **folders))
    exporter = exporter_pid(gw)
    os.kill(exporter, signal.SIGSTOP)
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0) as client:
        for _ in range(15):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    everyone = [gw.proc.pid, *children(gw.proc.pid)]
    for pid in everyone:
        os.kill(pid, signal.SIGKILL)
    gw.proc.wait()
    deadline = time.monotonic() + 10
    while not all(process_gone(pid) for pid in everyone) and time.monotonic() < deadline:
        time.sleep(0.05)
    again = start_gateway(chdb_config(mock, data, **folders))
    assert again.stop() == 0, again.log()  # its exporter drains every ring on SIGTERM
    assert query(data, "SELECT count(), uniqExact(request_id) FROM fastgw.requests FINAL")[0] == (15, 15), again.log()


def test_full_ring_spills_to_disk_and_is_replayed(start_gateway, mock: MockUpstreamThread, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "ch"
    gw = start_gateway(chdb_config(mock, data, ring_size="64KiB"))
    exporter = exporter_pid(gw)
    os.kill(exporter, signal.SIGSTOP)  # nobody drains: the 64 KiB ring fills after a few dozen records
    try:
        big = "x" * 3000
        with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0) as client:
            for _ in range(80):
                client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": big}])
        spilled = list((gw.log_dir / "spill").rglob("spill-*.wal"))
        assert spilled, "nothing was spilled although the ring was full"
    finally:
        os.kill(exporter, signal.SIGCONT)
    time.sleep(1.5)
    assert gw.stop() == 0, gw.log()
    assert query(data, "SELECT count(), uniqExact(request_id) FROM fastgw.requests")[0] == (80, 80)
    assert not list((gw.log_dir / "spill").rglob("spill-*.wal")), "replayed segments are deleted"


BIG = [  # (path, body): answers the mock makes larger than the body cap below
    ("/v1/chat/completions", b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'),
    ("/v1/chat/completions",
     b'{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}'),
    ("/anthropic/v1/messages", b'{"model":"claude-sonnet-4-6","max_tokens":9,"messages":[{"role":"user","content":"hi"}]}'),
    ("/anthropic/v1/messages",
     b'{"model":"claude-sonnet-4-6","max_tokens":9,"stream":true,"messages":[{"role":"user","content":"hi"}]}'),
    ("/gemini/v1beta/models/gemini-2.5-flash:generateContent", b'{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}'),
    ("/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
     b'{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}'),
]


def test_answers_longer_than_the_body_cap_keep_their_usage(start_gateway, mock: MockUpstreamThread, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Usage sits at the end of every provider's answer, so a capped body keeps its tail. A review
    found an answer that arrived whole (JSON, or a stream read in one piece) capped to its head
    alone, and a stream whose end came in the chunk that filled the head's half cut there: the
    rows had counted tokens, or none, and the wrong cost."""
    data = tmp_path / "ch"
    cfg = chdb_config(mock, data, body_max_bytes="4KiB")
    cfg["providers"]["gemini"] = {"base_url": mock.url, "format": "gemini"}
    gw = start_gateway(cfg)
    for path, body in BIG:
        reply = _post(gw, path, body, extra="x-mock-chunk-bytes: 3000\r\n")
        assert reply.status == 200 and len(reply.body) > 4096, (path, reply.status, len(reply.body))
    assert gw.stop() == 0, gw.log()
    rows = query(data, "SELECT path, usage_source, prompt_tokens, completion_tokens, cost_nanousd, response_truncated, "
                       "length(response_body) FROM fastgw.requests FINAL")
    assert len(rows) == len(BIG)
    for path, source, prompt, completion, cost, truncated, stored in rows:
        assert source == "provider" and prompt > 0 and completion == 5, (path, source, prompt, completion)
        assert cost is not None and cost > 0 and truncated and stored == 4096, (path, cost, truncated, stored)


def _post(gw: GatewayProcess, path: str, body: bytes, extra: str = "") -> Any:
    return post_once(gw.port, path, body, extra)


MANUAL = {
    "providerRequest": {"url": "https://api.openai.com/v1/chat/completions",
                        "json": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                        "meta": {"Authorization": "Bearer sk-manual-secret"}},
    "providerResponse": {"status": 200, "headers": {},
                         "json": {"model": "gpt-4o-mini", "choices": [{"message": {"role": "assistant", "content": "yo"}}],
                                  "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}}},
    "timing": {"startTime": {"seconds": 1790000000, "milliseconds": 250}, "endTime": {"seconds": 1790000001, "milliseconds": 0}},
}


def test_manual_log_feedback_and_scores(start_gateway, mock: MockUpstreamThread, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import orjson

    data = tmp_path / "ch"
    gw = start_gateway(chdb_config(mock, data))
    logged = _post(gw, "/custom/v1/log", orjson.dumps(MANUAL), extra="Helicone-Property-Team: search\r\n")
    assert logged.status == 200
    rid = logged.json()["id"]
    assert _post(gw, f"/v1/request/{rid}/feedback", b'{"rating": true}').status == 200
    assert _post(gw, f"/v1/request/{rid}/score", b'{"scores": {"accuracy": 7, "helpful": false}}').status == 200
    # bad bodies: a 400 that names the field, and the server keeps serving
    bad = dict(MANUAL, timing={"startTime": {"seconds": "soon", "milliseconds": 0}, "endTime": MANUAL["timing"]["endTime"]})
    resp = _post(gw, "/custom/v1/log", orjson.dumps(bad))
    assert resp.status == 400 and "timing.startTime.seconds" in resp.json()["error"]["message"]
    resp = _post(gw, "/custom/v1/log", orjson.dumps({**MANUAL, "providerRequest": {"url": "x"}}))
    assert resp.status == 400 and resp.json()["error"]["message"] == "providerRequest.json must be an object"
    resp = _post(gw, f"/v1/request/{rid}/feedback", b'{"rating": "good"}')
    assert resp.status == 400 and "rating" in resp.json()["error"]["message"]
    resp = _post(gw, f"/v1/request/{rid}/score", b'{"scores": {"x": "high"}}')
    assert resp.status == 400 and "scores.x" in resp.json()["error"]["message"]
    # an id that is no UUID is this endpoint's 400, not a path forwarded to the provider
    before = len(mock.mock.requests)
    for bad_id in ("abc", "not-a-uuid-at-all", "0" * 36):
        resp = _post(gw, f"/v1/request/{bad_id}/feedback", b'{"rating": true}')
        assert resp.status == 400 and "UUID" in resp.json()["error"]["message"], (bad_id, resp.status)
    assert len(mock.mock.requests) == before
    assert gw.stop() == 0, gw.log()
    row = query(data, f"SELECT provider, prompt_tokens, completion_tokens, cost_nanousd, total_us, properties, "
                      f"toUnixTimestamp64Milli(created_at), request_headers['authorization'] FROM fastgw.requests FINAL "
                      f"WHERE request_id = '{rid}'")
    assert row == [("openai", 1000, 100, 1000 * 150 + 100 * 600, 750_000, {"team": "search"}, 1790000000250, "[redacted]")]
    assert query(data, f"SELECT rating FROM fastgw.feedback FINAL WHERE request_id = '{rid}'") == [(True,)]
    assert sorted(query(data, f"SELECT name, value, is_bool FROM fastgw.scores FINAL WHERE request_id = '{rid}'")) == [
        ("accuracy", 7.0, False), ("helpful", 0.0, True)]


@pytest.mark.parametrize(("stop", "own_session"), [("ctrl-c", True), ("ctrl-c", False), ("hangup", True),
                                                   ("hangup", False), ("sigterm to each", True),
                                                   ("sigkill to fastgw serve", True)])
def test_a_stop_sent_to_every_process_still_exports_a_request_answered_during_it(
        mock: MockUpstreamThread, tmp_path: Path, stop: str, own_session: bool) -> None:
    """The ways a stop reaches more than `fastgw serve`:
    - Ctrl-C in a terminal: SIGINT to the foreground process group, `fastgw serve` and its workers,
      and the exporter while it stays in their session;
    - the terminal closing: SIGHUP to that same group (from the shell, or the kernel). Its
      default action ended every process at once: the request in flight got no answer and no
      row, and an exporter in the job was gone before it drained;
    - systemd's default KillMode=control-group: SIGTERM to every process of the unit at once;
    - `fastgw serve` killed outright: the kernel's SIGTERM to its children (parent_death).
    Either way a request still in flight is answered during the stop (the workers' grace), and its
    record must be exported before the exporter leaves. Before, the exporter drained at once and
    left first: 12 rows of 13."""
    gw = GatewayProcess(chdb_config(mock, tmp_path / "ch", exporter_own_session=own_session), tmp_path,
                        foreground_job=True)
    slow: list[Any] = []
    try:
        with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0) as client:
            for _ in range(12):
                client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
        exporter = exporter_pid(gw)
        kids = children(gw.proc.pid)
        deadline = time.monotonic() + 20
        while "exporter priority" not in gw.log():  # the exporter has moved (or not) by then
            assert time.monotonic() < deadline, gw.log()
            time.sleep(0.05)
        if own_session and autogroups_on(group=f"/proc/{gw.proc.pid}/autogroup"):
            assert os.getpgid(exporter) == exporter != gw.proc.pid  # outside the job: Ctrl-C misses it
        else:
            assert os.getpgid(exporter) == gw.proc.pid
        # One more request, answered 1.5 s into the stop.
        body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
        sender = threading.Thread(target=lambda: slow.append(
            post_once(gw.port, "/v1/chat/completions", body, extra="x-mock-latency-ms: 1500\r\n")))
        sender.start()
        time.sleep(0.3)
        if stop == "ctrl-c":
            os.killpg(gw.proc.pid, signal.SIGINT)
        elif stop == "hangup":
            os.killpg(gw.proc.pid, signal.SIGHUP)
        elif stop == "sigterm to each":
            for pid in [gw.proc.pid, *kids]:
                os.kill(pid, signal.SIGTERM)
        else:
            os.kill(gw.proc.pid, signal.SIGKILL)
        sender.join(20)
        assert gw.proc.wait(60) == (-signal.SIGKILL if stop.startswith("sigkill") else 0), gw.log()
        deadline = time.monotonic() + 60
        while not all(process_gone(pid) for pid in kids):  # orphans: nobody waits for them but this
            assert time.monotonic() < deadline, (kids, gw.log())
            time.sleep(0.05)
    finally:
        gw.stop()
    assert slow and slow[0].status == 200, slow
    assert all(process_gone(pid) for pid in kids), (kids, gw.log())
    rows = query(tmp_path / "ch", "SELECT count(), uniqExact(request_id) FROM fastgw.requests FINAL")
    assert rows == [(13, 13)], (rows, gw.log())


def _threads(pid: int) -> dict[int, tuple[str, int, int]]:
    """Each thread of a process: its name, scheduling policy and nice value."""
    out: dict[int, tuple[str, int, int]] = {}
    for tid in map(int, os.listdir(f"/proc/{pid}/task")):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            out[tid] = (name, os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid))
        except OSError:
            continue  # the thread ended meanwhile
    return out


@pytest.mark.parametrize(("idle", "own_session", "idle_cgroup"), [(True, True, True), (False, True, True),
                                                                    (True, False, True), (True, True, False)])
def test_exporter_runs_in_the_background(start_gateway, mock: MockUpstreamThread, tmp_path: Path, idle: bool,  # type: ignore[no-untyped-def]
                                         own_session: bool, idle_cgroup: bool) -> None:
    """SCHED_IDLE by default, for every thread chDB starts too, but the admin server's; nice 10 when
    switched off. In a cpu.idle cgroup of its own where this machine lets a process make one."""
    gw = start_gateway(chdb_config(mock, tmp_path / "ch", batch_max_age="100ms", exporter_idle=idle,
                                   exporter_own_session=own_session, exporter_idle_cgroup=idle_cgroup))
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    exporter = exporter_pid(gw)
    deadline = time.monotonic() + 20
    threads = _threads(exporter)
    while not any(name.startswith("MergeMutate") for name, _, _ in threads.values()):
        assert time.monotonic() < deadline, threads  # chDB starts its merge threads with the first write
        time.sleep(0.1)
        threads = _threads(exporter)
    worker = [p for p in children(gw.proc.pid) if p != exporter][0]
    assert Path(f"/proc/{worker}/comm").read_text() == "fastgw-worker-0\n"
    assert os.sched_getscheduler(worker) == os.SCHED_OTHER and os.getpriority(os.PRIO_PROCESS, worker) == 0
    assert len(threads) > 5, threads
    if idle:
        # All but one: the admin server's thread, started before, keeps the normal policy and nice
        # (scrapes and dashboards answer on a busy machine). Python doesn't name OS threads.
        normal = [t for t in threads.values() if t[1] != os.SCHED_IDLE]
        assert [t[1:] for t in normal] == [(os.SCHED_OTHER, 0)], threads
    else:
        assert {policy for _, policy, _ in threads.values()} == {os.SCHED_OTHER}, threads
        assert threads[exporter][2] == 10, threads
    # Where sessions are scheduled as groups, the exporter's session is its own, at the lowest
    # weight it may ask for; the worker stays in the session of `fastgw serve`. Where that session
    # is the root task group (its autogroup file reads empty), the exporter stays in it.
    assert os.getsid(worker) == os.getsid(gw.proc.pid)
    applied = ["idle" if idle else "nice 10"]
    if own_session and autogroups_on(group=f"/proc/{worker}/autogroup"):
        assert os.getsid(exporter) == exporter
        group, _, nice = Path(f"/proc/{exporter}/autogroup").read_text().split()
        assert group != Path(f"/proc/{worker}/autogroup").read_text().split()[0]
        assert int(nice) == (19 if idle else 10)
        applied.append(f"autogroup nice {nice}")
    else:
        assert os.getsid(exporter) == os.getsid(gw.proc.pid)
    # And in a cpu.idle cgroup of its own under the one of `fastgw serve` (the worker's), where this
    # machine lets a process make one: all its threads but the admin server's in cgroup v1.
    home = cpu_cgroup_of(worker)
    cgroup = home / f"fastgw-exporter-{gw.proc.pid}" if home is not None else None
    placed = {tid: cpu_cgroup_of(exporter, tid) for tid in threads}
    if idle and idle_cgroup and can_make_idle_cgroup():
        assert cgroup is not None and (cgroup / "cpu.idle").read_text() == "1\n"
        outside = [tid for tid, where in placed.items() if where != cgroup]
        if cpu_cgroup_of(exporter) == cgroup and len(outside) == 1:  # cgroup v1: the admin thread stays out
            assert threads[outside[0]][1] == os.SCHED_OTHER and placed[outside[0]] == home, (placed, threads)
        else:
            assert outside == [], (placed, threads)  # v2: the whole process
        applied.append(f"cpu.idle cgroup {cgroup}")
    else:
        assert cgroup is None or not cgroup.exists()
        assert set(placed.values()) == {home}, placed
    assert f"exporter priority: {', '.join(applied)}\n" in gw.log()
    assert gw.stop() == 0, gw.log()
    assert cgroup is None or not cgroup.exists()  # fastgw serve removed it once its exporter was gone
    assert query(tmp_path / "ch", "SELECT count() FROM fastgw.requests")[0][0] == 1
