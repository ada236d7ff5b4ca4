"""A scripted raw-socket upstream for review tests: each request gets the next canned reply.

``replies`` is a list of bytes; request N on the server (across all connections) is answered with
``replies[N]`` (the last one repeats). ``requests`` records (connection index, raw request head+body).
"""

from __future__ import annotations

import socket
import threading


class RawUpstream:
    def __init__(self, replies: list[bytes], close_after: bool = False) -> None:
        self.replies = replies
        self.close_after = close_after
        self.requests: list[tuple[int, bytes]] = []
        self.connections = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._stop = False
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            index = self.connections
            self.connections += 1
            self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn, index), daemon=True)
            t.start()

    def _serve(self, conn: socket.socket, index: int) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(rest) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    rest += data
                self.requests.append((index, head + b"\r\n\r\n" + rest[:length]))
                buf = rest[length:]
                n = len(self.requests) - 1
                conn.sendall(self.replies[min(n, len(self.replies) - 1)])
                if self.close_after:
                    conn.shutdown(socket.SHUT_WR)
        except OSError:
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        self._stop = True
        self._sock.close()
        for c in self._conns:
            try:
                c.close()
            except OSError:
                pass

    def __enter__(self) -> "RawUpstream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
