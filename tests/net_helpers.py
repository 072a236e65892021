"""Real TCP endpoints on loopback for the camera-URL tests: a listener that records every byte it receives (the
stand-in for a smuggling target such as a password-less Redis), optionally answering each request with a canned
reply; and a port where nothing listens."""

from __future__ import annotations

import re
import socket
import threading
from typing import Callable


def closed_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def digest_challenge(request: bytes) -> bytes:
    """An RTSP 401 asking for Digest authentication: FFmpeg then sends the URL's (percent-decoded) user name."""
    cseq = re.search(rb"(?im)^cseq:\s*(\d+)", request)
    return (b"RTSP/1.0 401 Unauthorized\r\nCSeq: " + (cseq.group(1) if cseq else b"1")
            + b'\r\nWWW-Authenticate: Digest realm="cam", nonce="abc"\r\n\r\n')


class TcpRecorder:
    """Listens on ``host``:``port`` (0: any free port) and keeps every byte any client sends, in ``received``.

    ``reply``: called with each request (bytes up to a blank line) and its answer sent back; None: never answers
    (a port that accepts and then stays silent)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, reply: Callable[[bytes], bytes] | None = None):
        self.reply = reply
        self.connections = 0
        self._chunks: list[bytes] = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.host, self.port = host, self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._clients: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def received(self) -> bytes:
        with self._lock:
            return b"".join(self._chunks)

    def __enter__(self) -> "TcpRecorder":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        for c in self._clients:
            c.close()
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            self._clients.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(0.2)
        pending = b""
        while not self._stop.is_set():
            try:
                data = client.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self._chunks.append(data)
            pending += data
            while self.reply is not None and b"\r\n\r\n" in pending:
                request, pending = pending.split(b"\r\n\r\n", 1)
                try:
                    client.sendall(self.reply(request + b"\r\n\r\n"))
                except OSError:
                    return
