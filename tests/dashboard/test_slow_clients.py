"""Slow and idle clients (issue 27, item 5) with real sockets: against ``deepfer serve`` in its own process, idle,
slow-header and slow-body sockets (the audit's attack: before, each stayed open 60 s before any auth) are answered
408 and closed by the deadlines; against the real uvicorn (``LiveServer``), the connection cap, the kept-alive idle
timeout, and a long answer (the event stream) that the deadlines do not cut."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.dashboard_helpers import AUTH, TOKEN, LiveServer, dashboard_settings, served_process
from tests.redis_helpers import free_port, unique_prefix

pytestmark = pytest.mark.timeout(300)


def read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started, data = time.monotonic(), b""
    sock.settimeout(0.2)
    while time.monotonic() - started < limit_s:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - started


def idle(port: int) -> tuple[bytes, float]:
    with socket.create_connection(("127.0.0.1", port)) as s:
        return read_until_closed(s, 20)


def slow_header(port: int) -> tuple[bytes, float]:
    """A request line and headers sent a few bytes at a time, never finished."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        started, data = time.monotonic(), b""
        head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
        s.settimeout(0.25)
        for i in range(len(head)):
            try:
                s.sendall(head[i:i + 1])
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        return data, time.monotonic() - started


def slow_body(port: int) -> tuple[bytes, float]:
    """A complete, authorised head announcing 1000 bytes of body; 10 of them come, then nothing."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /api/cameras HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"id\": \"x\"")
        return read_until_closed(s, 20)


def status_of(answer: bytes) -> int | None:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


@pytest.fixture(scope="module")
def served(tiny_checkpoint, redis_url, tmp_path_factory):
    """``deepfer serve`` with 1 s header and 2 s body deadlines set in its environment."""
    root = tmp_path_factory.mktemp("slow")
    with unique_prefix(redis_url, "test-slow") as prefix:
        env = {"DEEPFER_DASHBOARD__TOKEN": TOKEN, "DEEPFER_REDIS__KEY_PREFIX": prefix,
               "DEEPFER_DASHBOARD__HEADER_TIMEOUT_S": "1", "DEEPFER_DASHBOARD__BODY_TIMEOUT_S": "2",
               "DEEPFER_PATHS__DATA_DIR": str(root / "data"), "DEEPFER_CLASSIFIER__DEVICE": "cpu",
               "DEEPFER_DETECTOR__DEVICE": "cpu", "DEEPFER_DETECTOR__THREADS": "1"}
        with served_process(["--weights", str(tiny_checkpoint), "--redis", redis_url], env, free_port(),
                            root / "serve.log") as s:
            yield s.port


def test_idle_slow_header_and_slow_body_sockets_are_closed_by_their_deadlines(served: int):
    attacks = [idle] * 30 + [slow_header] * 30 + [slow_body] * 30
    with ThreadPoolExecutor(len(attacks)) as pool:
        results = list(pool.map(lambda attack: (attack.__name__, attack(served)), attacks))
    for name, (answer, took) in results:
        limit = 2 if name == "slow_body" else 1
        assert status_of(answer) == 408, (name, answer[:200])
        assert limit - 0.2 < took < limit + 2.5, (name, took)  # by its deadline, not the audit's 60 s
    assert b"not complete within 2 s" in results[-1][1][0]
    assert httpx.get(f"http://127.0.0.1:{served}/health", timeout=5).json()["status"] == "ok"  # others still served


@pytest.fixture(scope="module")
def capped(tiny_checkpoint, redis_url, tmp_path_factory):
    with unique_prefix(redis_url, "test-cap") as prefix:
        settings = dashboard_settings(tiny_checkpoint, redis_url, prefix, tmp_path_factory.mktemp("cap"), free_port(),
                                      max_connections=8, header_timeout_s=3, keep_alive_s=1, sse_keepalive_s=0.5)
        with LiveServer(settings) as live:
            yield live


def test_connections_beyond_the_cap_get_503_and_are_closed_at_once(capped: LiveServer):
    port = capped.server.config.port
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
    try:
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", port)) as extra:
            answer, took = read_until_closed(extra, 5)
        assert status_of(answer) == 503 and b"retry-after: 5" in answer.lower() and took < 1
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    assert httpx.get(f"{capped.url}/health", timeout=5).status_code == 200  # the cap counts open connections only


def test_a_kept_alive_connection_left_idle_is_closed(capped: LiveServer):
    with socket.create_connection(("127.0.0.1", capped.server.config.port)) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer, took = read_until_closed(s, 10)
    assert status_of(answer) == 200 and b"408" not in answer  # no 408 after an answer: just closed
    assert 0.8 < took < 2.5  # dashboard.keep_alive_s (1 s), before the 3 s header deadline


def test_the_deadlines_do_not_cut_a_long_answer(capped: LiveServer):
    """The event stream stays open well past the header deadline (its request was in on time)."""
    started = time.monotonic()
    with httpx.stream("GET", f"{capped.url}/api/events", headers=AUTH, timeout=10) as events:
        assert events.status_code == 200
        for _ in events.iter_raw():
            if time.monotonic() - started > 5:
                break
    assert time.monotonic() - started > 5
