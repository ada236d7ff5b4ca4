#!/usr/bin/env python3
"""HTTP/1.1 latency client for the fastgw benchmarks: a closed loop, or an open one with --rate.

By default each of ``-c`` keep-alive connections sends one request, waits for the complete
response (Content-Length or chunked framing), records the time it took, and sends the next: a
closed loop, so latency is never inflated by a request queue of the client's own making.

It is deliberately small and identical for every target (gateway, nginx, the mock directly):
raw sockets on uvloop, one ``asyncio.Protocol`` per connection, the request pre-encoded once,
the next request written from inside ``data_received``, timestamps from ``perf_counter_ns``,
the garbage collector off while measuring. Whatever it costs per request, it costs the same
through a proxy and direct, so it cancels out of "added latency" (proxy minus direct).

Modes:
  default  non-streamed requests; records the full response time.
  --sse    streamed requests answered with ``transfer-encoding: chunked`` server-sent events;
           additionally records the time to the first body byte (TTFB) and the arrival time of
           every SSE event (a blank-line-terminated block), so inter-event gaps can be checked.

  --rate R open loop instead: requests are due at R per second whatever the answers do (paced in
           the event loop's timer ticks, 1 ms with uvloop, so a tick sends the few that fell due),
           each sent on an idle one of the ``-c`` connections or queued until one is free.
           Latency counts from the tick that found a request due, so a wait for a connection (a
           server falling behind) is in it: no coordinated omission. Use enough connections that
           the queue stays empty while the server keeps up; ``queued_max`` says if it did not.

Run length: ``-d`` seconds of measurement after ``--warmup`` seconds (not recorded), or ``-n``
recorded responses. Prints one JSON object on stdout; latencies are in microseconds.

  python benchmarks/loadgen.py http://127.0.0.1:8787/v1/chat/completions -c 16 -d 3
  python benchmarks/loadgen.py URL --sse -n 6 -H "x-mock-chunk-delay-ms: 20" -H "x-mock-chunks: 5"
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import math
import socket
import sys
import time
from urllib.parse import urlsplit

perf = time.perf_counter_ns

CHAT_BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}'
CHAT_STREAM_BODY = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hello"}]}'


class Run:
    """Shared state of one load run: the request, the clock window and what was recorded."""

    def __init__(self, request: bytes, sse: bool, start_ns: int, end_ns: int, count: int) -> None:
        self.request = request
        self.sse = sse
        self.measure_from = start_ns  # responses to requests sent before this are warm-up
        self.stop_at = end_ns  # no request is sent after this (duration mode)
        self.want = count  # stop after this many recorded responses (count mode; 0 = duration mode)
        self.latency: list[int] = []
        self.sent_at: list[int] = []  # with --dump: when each recorded request was due (perf_counter_ns)
        self.dump = False
        self.ttfb: list[int] = []
        self.events: list[list[int]] = []  # per response: event arrival times relative to its send
        self.errors = 0
        self.statuses: dict[int, int] = {}
        self.reconnects = 0
        self.last_done = 0
        self.active = 0
        self.finished: asyncio.Future | None = None
        # Open loop (--rate): connections with nothing in flight, and due times not yet sent.
        self.open_loop = False
        self.idle: list[Client] = []
        self.queued: collections.deque[int] = collections.deque()
        self.queued_max = 0
        self.idle_closed = 0  # idle connections the server closed (its idle timeout)

    def running(self, now: int) -> bool:
        if self.want:
            return len(self.latency) < self.want
        return now < self.stop_at

    def conn_idle(self) -> None:
        self.active -= 1
        if self.active == 0 and self.finished is not None and not self.finished.done():
            self.finished.set_result(None)


class Client(asyncio.Protocol):
    """One keep-alive connection running the closed loop."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.t0 = 0
        self.body_at = -1  # offset of the body in buf, -1 while the head is incomplete
        self.need = 0  # Content-Length framing: total bytes of the response
        self.chunked = False
        self.pos = 0  # chunked framing: parse position in buf
        self.status = 0
        self.first_byte = 0
        self.sse_seen = 0  # decoded body bytes scanned for event boundaries
        self.sse_body = bytearray()
        self.ev: list[int] = []
        self.in_flight = False

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.in_flight:
            self.in_flight = False
            self.run.errors += 1
            self.run.conn_idle()
        elif self in self.run.idle:  # open loop: a spare connection the server timed out
            self.run.idle.remove(self)
            self.run.idle_closed += 1
            self.run.conn_idle()

    def fire(self, due: int = 0) -> None:
        """Send the request; ``due`` (open loop) is when it was due, which latency counts from."""
        self.buf.clear()
        self.body_at = -1
        self.chunked = False
        self.first_byte = 0
        if self.run.sse:
            self.sse_body.clear()
            self.sse_seen = 0
            self.ev = []
        self.in_flight = True
        self.t0 = due or perf()
        self.transport.write(self.run.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        now = perf()
        if not self.in_flight:  # unprompted (a 408 before an idle close): not an answer to count
            return
        buf = self.buf
        buf += data
        if self.body_at < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            self.status = int(head[9:12])
            self.body_at = end + 4
            i = head.find(b"\r\ncontent-length:")
            if i >= 0:
                j = head.find(b"\r\n", i + 17)
                self.need = self.body_at + int(head[i + 17 : j if j > 0 else len(head)])
            elif b"\r\ntransfer-encoding: chunked" in head:
                self.chunked = True
                self.pos = self.body_at
            else:  # no framing we know: treat as an error and drop the connection
                self._complete(now, ok=False)
                return
        if self.chunked:
            if self._feed_chunked(now):
                self._complete(now, ok=True)
        else:
            if self.first_byte == 0 and len(buf) > self.body_at:
                self.first_byte = now
            if self.run.sse:  # a stream may also come back whole, with a Content-Length
                self.sse_body[:] = buf[self.body_at : self.need]
                self._sse(now)
            if len(buf) >= self.need:
                self._complete(now, ok=True)

    def _feed_chunked(self, now: int) -> bool:
        """Decode what has arrived; True once the terminating 0-size chunk has been read."""
        buf, pos = self.buf, self.pos
        decoded = False
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
            if size == 0:
                # trailers (none expected) end with an empty line
                if buf.find(b"\r\n", eol + 2) < 0:
                    break
                self.pos = len(buf)
                if decoded:
                    self._sse(now)
                return True
            start = eol + 2
            if self.first_byte == 0 and len(buf) > start:
                self.first_byte = now  # the first byte of the first event's data
            if len(buf) < start + size + 2:
                break
            if self.run.sse:
                self.sse_body += buf[start : start + size]
            decoded = True
            pos = start + size + 2
        self.pos = pos
        if decoded:
            self._sse(now)
        return False

    def _sse(self, now: int) -> None:
        if not self.run.sse:
            return
        body = self.sse_body
        while True:
            i = body.find(b"\n\n", self.sse_seen)
            if i < 0:
                break
            self.ev.append(now - self.t0)
            self.sse_seen = i + 2

    def _complete(self, now: int, ok: bool) -> None:
        run = self.run
        self.in_flight = False
        if not ok or self.status != 200:
            run.errors += 1
        run.statuses[self.status] = run.statuses.get(self.status, 0) + 1
        if self.t0 >= run.measure_from and ok and run.running(self.t0):
            run.latency.append(now - self.t0)
            if run.dump:
                run.sent_at.append(self.t0)
            run.last_done = now
            if run.sse or self.first_byte:
                run.ttfb.append((self.first_byte or now) - self.t0)
            if run.sse:
                run.events.append(self.ev)
        if not ok:
            self.transport.close()  # type: ignore[union-attr]
            run.conn_idle()
            return
        if run.open_loop:
            if run.queued:
                self.fire(run.queued.popleft())
            else:
                run.idle.append(self)
        elif run.running(now):
            self.fire()
        else:
            run.conn_idle()


def build_request(url: str, body: bytes, headers: list[str], method: str) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}:{port}"]
    names = {h.split(":", 1)[0].strip().lower() for h in headers}
    if "content-type" not in names:
        lines.append("content-type: application/json")
    if "authorization" not in names:
        lines.append("authorization: Bearer sk-bench")
    lines.extend(h.strip() for h in headers)
    if method != "GET" or body:
        lines.append(f"content-length: {len(body)}")
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def pace(run: Run, rate: float) -> None:
    """Open loop: make ``rate`` requests per second due until the run ends, then let the last answers in."""
    interval = 1e9 / rate
    due = float(perf())
    while (now := perf()) < run.stop_at:
        while due <= now:
            # Latency counts from this tick: the timer's own lateness (up to a tick) is the
            # client's, while a wait for a free connection is the server's.
            if run.idle:
                run.idle.pop().fire()
            else:
                run.queued.append(now)
                run.queued_max = max(run.queued_max, len(run.queued))
            due += interval
        # Timers tick in whole milliseconds (uvloop): a shorter sleep returns at once and the
        # client would spin, taking the core it shares with the mock.
        await asyncio.sleep(max(0.001, (due - perf()) / 1e9))
    unsent = len(run.queued)
    run.queued.clear()  # due after the end: never sent, reported
    run.queued_max = max(run.queued_max, unsent)
    deadline = perf() + 10 * 10**9
    while run.active > len(run.idle) and perf() < deadline:
        await asyncio.sleep(0.005)


async def drive(host: str, port: int, run: Run, conns: int, warmup: float, duration: float,
                rate: float = 0.0) -> float:
    loop = asyncio.get_running_loop()
    clients: list[Client] = []
    for _ in range(conns):
        _, proto = await loop.create_connection(lambda: Client(run), host, port)
        clients.append(proto)  # type: ignore[arg-type]
    gc.collect()
    gc.disable()
    begin = perf()
    run.measure_from = begin + int(warmup * 1e9)
    run.stop_at = run.measure_from + int(duration * 1e9) if not run.want else 1 << 62
    run.finished = loop.create_future()
    run.active = conns
    if rate:
        run.open_loop = True
        run.idle = list(clients)
        await pace(run, rate)
        run.finished.set_result(None)
    for c in clients if not rate else ():
        c.fire()
    # Reconnect connections that the server closed (counted as errors) until the run ends.
    while True:
        done, _ = await asyncio.wait([run.finished], timeout=0.05)
        if done:
            break
        now = perf()
        for i, c in enumerate(clients):
            if c.transport is None and run.running(now):
                run.reconnects += 1
                _, proto = await loop.create_connection(lambda: Client(run), host, port)
                clients[i] = proto  # type: ignore[assignment]
                run.active += 1
                proto.fire()  # type: ignore[attr-defined]
    elapsed = (run.last_done - run.measure_from) / 1e9 if run.last_done > run.measure_from else 0.0
    gc.enable()
    run.idle = []  # closing them now is ours, not the server's idle timeout
    for c in clients:
        if c.transport is not None:
            c.transport.close()
    await asyncio.sleep(0)
    return elapsed


def percentiles(samples: list[int], scale: float = 1e-3) -> dict[str, float]:
    """Nearest-rank percentiles (p50, p90, p99, p99.9), min, max, mean; ns in, µs out."""
    if not samples:
        return {}
    s = sorted(samples)
    n = len(s)

    def pct(p: float) -> float:
        return s[max(0, math.ceil(p / 100 * n) - 1)] * scale

    return {"p50": pct(50), "p90": pct(90), "p99": pct(99), "p999": pct(99.9),
            "min": s[0] * scale, "max": s[-1] * scale, "mean": sum(s) / n * scale}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("url")
    ap.add_argument("-c", "--connections", type=int, default=1)
    ap.add_argument("-d", "--duration", type=float, default=3.0, help="seconds measured (after warm-up)")
    ap.add_argument("-n", "--count", type=int, default=0, help="stop after this many recorded responses")
    ap.add_argument("--warmup", type=float, default=0.5, help="seconds of unrecorded requests first")
    ap.add_argument("-H", "--header", action="append", default=[], help='extra header, "name: value"')
    ap.add_argument("--body", help="request body (default: a small chat completion, streamed with --sse)")
    ap.add_argument("--method", default="POST")
    ap.add_argument("--sse", action="store_true", help="streamed request; record TTFB and SSE event times")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="open loop: requests due per second, spread over -c connections (not with -n)")
    ap.add_argument("--dump", type=argparse.FileType("w"),
                    help="write each recorded request's due time and latency (ns, CLOCK_MONOTONIC) as TSV lines")
    ap.add_argument("--expect-gap-ms", type=float, default=0.0,
                    help="with --sse: report the max deviation of inter-event gaps from this")
    args = ap.parse_args(argv)

    body = args.body.encode() if args.body is not None else (CHAT_STREAM_BODY if args.sse else CHAT_BODY)
    host, port, request = build_request(args.url, body, args.header, args.method)
    run = Run(request, args.sse, 0, 0, args.count)
    run.dump = args.dump is not None
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    warmup = 0.0 if args.count else args.warmup
    if args.rate and args.count:
        ap.error("--rate runs for -d seconds; -n is for the closed loop")
    cpu0 = time.process_time()
    elapsed = runner(drive(host, port, run, args.connections, warmup, args.duration, args.rate))
    cpu_s = time.process_time() - cpu0  # the run's, warm-up included; not the interpreter's start-up

    out: dict = {
        "url": args.url, "connections": args.connections, "sse": args.sse,
        "count": len(run.latency), "errors": run.errors, "reconnects": run.reconnects,
        "statuses": {str(k): v for k, v in run.statuses.items()},
        "elapsed_s": round(elapsed, 4), "rps": round(len(run.latency) / elapsed, 1) if elapsed else 0.0,
        "latency_us": percentiles(run.latency),
        "cpu_s": round(cpu_s, 4),
    }
    if args.rate:
        out.update(rate=args.rate, queued_max=run.queued_max, idle_closed=run.idle_closed)
    if run.ttfb:
        out["ttfb_us"] = percentiles(run.ttfb)
    if args.sse:
        gaps = [ev[i] - ev[i - 1] for ev in run.events for i in range(1, len(ev))]
        out["events_per_response"] = sorted({len(ev) for ev in run.events})
        out["gaps_us"] = percentiles(gaps)
        if args.expect_gap_ms:
            target = args.expect_gap_ms * 1e6
            devs = [abs(g - target) for g in gaps]
            out["gap_max_dev_us"] = max(devs) / 1e3 if devs else None
            out["gap_median_dev_us"] = sorted(devs)[len(devs) // 2] / 1e3 if devs else None
            if len(gaps) <= 2000:
                out["gaps_raw_us"] = [round(g / 1e3, 1) for g in gaps]
    if args.dump is not None:
        args.dump.writelines(f"{t}\t{lat}\n" for t, lat in zip(run.sent_at, run.latency))
        args.dump.close()
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0 if run.latency and not run.errors else 1


if __name__ == "__main__":
    sys.exit(main())
