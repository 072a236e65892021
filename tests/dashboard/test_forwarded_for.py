"""X-Forwarded-For is believed only from dashboard.trusted_proxies, and only as IP addresses (issue 27, item 7):
against ``deepfer serve`` in its own process (its real access log), raw requests carrying escape sequences and
spoofed hops; the sign-in throttle counts each client, so one guesser cannot lock the others out."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import httpx
import pytest

from dashboard.auth import LoginThrottle, throttle_key
from dashboard.security import ForwardedFor, parse_address
from tests.dashboard_helpers import AUTH, TOKEN, LiveServer, dashboard_settings, served_process
from tests.redis_helpers import free_port, unique_prefix

pytestmark = pytest.mark.timeout(300)
ESCAPE = "\x1b[2J\x1b[31mroot\x1b[0m"


def raw(url: str, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.1 request written by hand (httpx refuses control characters in header values; attackers do not)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
                f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def login(url: str, token: str, forwarded: str) -> int:
    body = f"token={token}".encode()
    return raw(url, "POST", "/login", {"X-Forwarded-For": forwarded, "Accept": "application/json",
                                        "Content-Type": "application/x-www-form-urlencoded"}, body)[0]


@pytest.fixture(scope="module")
def proxied(tiny_checkpoint, redis_url, tmp_path_factory):
    """``deepfer serve`` as behind a proxy on this machine: trusted_proxies = 127.0.0.1, 3 failures per 30 s."""
    root = tmp_path_factory.mktemp("proxied")
    with unique_prefix(redis_url, "test-xff") as prefix:
        env = {"DEEPFER_DASHBOARD__TOKEN": TOKEN, "DEEPFER_DASHBOARD__TRUSTED_PROXIES": '["127.0.0.1/32"]',
               "DEEPFER_DASHBOARD__LOGIN_MAX_FAILURES": "3", "DEEPFER_DASHBOARD__LOGIN_WINDOW_S": "30",
               "DEEPFER_REDIS__KEY_PREFIX": prefix, "DEEPFER_PATHS__DATA_DIR": str(root / "data"),
               "DEEPFER_CLASSIFIER__DEVICE": "cpu", "DEEPFER_DETECTOR__DEVICE": "cpu", "DEEPFER_DETECTOR__THREADS": "1"}
        with served_process(["--weights", str(tiny_checkpoint), "--redis", redis_url], env, free_port(),
                            root / "serve.log") as s:
            yield s.url, s.log


def test_forwarded_addresses_are_validated_before_anything_reads_them(proxied):
    url, log = proxied
    assert raw(url, "GET", "/health", {"X-Forwarded-For": ESCAPE})[0] == 200
    assert raw(url, "GET", "/health", {"X-Forwarded-For": f"198.51.100.9, {ESCAPE}"})[0] == 200  # nearest hop bad
    assert raw(url, "GET", "/health?n=2", {"X-Forwarded-For": f"{ESCAPE}, 198.51.100.7"})[0] == 200
    assert raw(url, "GET", "/health?n=3", {"X-Forwarded-For": "[2001:db8::5]:4711"})[0] == 200
    time.sleep(0.5)
    text = log.read_text(errors="replace")
    assert "\x1b" not in text and "[31m" not in text
    access = [line for line in text.splitlines() if "GET /health" in line]
    assert any('198.51.100.7:0 - "GET /health?n=2' in line for line in access), access
    assert any('2001:db8::5:0 - "GET /health?n=3' in line for line in access), access
    assert "198.51.100.9" not in text  # beyond an entry that is no address, nothing is believed


def test_the_webrtc_peer_is_a_checked_address(proxied):
    url, _ = proxied
    from aiortc import RTCPeerConnection, VideoStreamTrack

    async def offer() -> str:
        pc = RTCPeerConnection()
        pc.addTrack(VideoStreamTrack())
        await pc.setLocalDescription(await pc.createOffer())
        await pc.close()
        return pc.localDescription.sdp

    import json

    body = json.dumps({"sdp": asyncio.run(offer()), "type": "offer"}).encode()
    for forwarded, peer in ((f"{ESCAPE}", "127.0.0.1"), ("192.0.2.44", "192.0.2.44")):
        status, data = raw(url, "POST", "/api/webrtc/offer", {**AUTH, "Content-Type": "application/json",
                                                               "X-Forwarded-For": forwarded}, body)
        assert status == 200, data[-500:]
        session = json.loads(data.split(b"\r\n\r\n", 1)[1])["session_id"]
        seen = httpx.get(f"{url}/api/webrtc/sessions/{session}", headers=AUTH).json()
        assert seen["peer"] == peer
        assert httpx.delete(f"{url}/api/webrtc/sessions/{session}", headers=AUTH).status_code == 200


def test_one_guesser_behind_the_proxy_cannot_lock_out_the_others(proxied):
    url, _ = proxied
    attacker = "203.0.113.7"
    for i in range(3):  # spoofed hops on the left do not make the attacker someone new: the proxy appends the truth
        assert login(url, f"wrong-guess-{i}-xyzw", f"10.9.8.{i}, {attacker}") == 401
    assert login(url, TOKEN, f"10.9.9.9, {attacker}") == 429
    assert login(url, TOKEN, attacker) == 429
    assert login(url, TOKEN, "203.0.113.8") == 303  # everyone else still signs in
    assert login(url, TOKEN, ESCAPE) == 303  # (a garbage header counts as the proxy itself, which is not locked)


# ----- no trusted proxy: the headers are ignored ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def direct(tiny_checkpoint, redis_url, tmp_path_factory):
    with unique_prefix(redis_url, "test-xff-off") as prefix:
        settings = dashboard_settings(tiny_checkpoint, redis_url, prefix, tmp_path_factory.mktemp("direct"),
                                      free_port(), login_max_failures=3, login_window_s=30)
        with LiveServer(settings) as live:
            yield live


def test_without_trusted_proxies_a_new_forwarded_for_per_guess_gains_nothing(direct, caplog):
    caplog.set_level(logging.WARNING, "dashboard.security")
    for i in range(3):
        assert login(direct.url, f"wrong-guess-{i}-xyzw", f"198.51.100.{i}") == 401
    assert login(direct.url, TOKEN, "198.51.100.200") == 429  # the audit's bypass: closed
    warned = [r.getMessage() for r in caplog.records if "trusted_proxies" in r.getMessage()]
    assert len(warned) == 1, warned  # said once, not per request


# ----- the parts -----------------------------------------------------------------------------------------------------


def test_parse_address_and_the_throttle_key():
    assert str(parse_address(" 192.0.2.1 ")) == "192.0.2.1" and str(parse_address("192.0.2.1:80")) == "192.0.2.1"
    assert str(parse_address("[2001:db8::1]:443")) == "2001:db8::1"
    assert str(parse_address("::ffff:10.0.0.1")) == "10.0.0.1"
    for bad in (ESCAPE, "unknown", "", "1.2.3", "_hidden", "[::1", "a" * 100, "192.0.2.1\r\nX: y"):
        assert parse_address(bad) is None, bad
    assert throttle_key("2001:db8:1:2:aaaa::1") == throttle_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert throttle_key("::ffff:192.0.2.1") == "192.0.2.1" and throttle_key("192.0.2.1") == "192.0.2.1"
    throttle = LoginThrottle(2, 60, clock=lambda: 0.0)
    for suffix in ("1", "2"):  # one host rotating addresses inside its /64
        throttle.failed(f"2001:db8:1:2::{suffix}")
    assert throttle.retry_after("2001:db8:1:2::99") > 0 and throttle.retry_after("2001:db8:1:3::1") == 0


def test_forwarded_for_walks_from_the_nearest_hop():
    chain = ForwardedFor(["127.0.0.1/32", "10.0.0.0/8"])

    def client(peer: str, *values: str, proto: str | None = None) -> tuple[str, str]:
        headers = [(b"x-forwarded-for", v.encode("latin-1")) for v in values]
        if proto:
            headers.append((b"x-forwarded-proto", proto.encode()))
        scope = {"type": "http", "client": (peer, 5000), "headers": headers, "scheme": "http"}
        chain.apply(scope)
        return scope["client"][0], scope["scheme"]

    assert client("127.0.0.1", "198.51.100.1, 10.1.1.1") == ("198.51.100.1", "http")  # through two proxies
    assert client("127.0.0.1", "198.51.100.1", "10.1.1.1", proto="https") == ("198.51.100.1", "https")
    assert client("192.0.2.50", "198.51.100.1", proto="https") == ("192.0.2.50", "http")  # not a proxy: ignored
    assert client("127.0.0.1", "10.1.1.1") == ("10.1.1.1", "http")  # only proxies: the farthest one
    assert client("127.0.0.1", proto="javascript") == ("127.0.0.1", "http")


def test_https_at_a_trusted_proxy_gives_hsts_and_secure_cookies(proxied, direct):
    url, _ = proxied
    status, data = raw(url, "GET", "/health", {"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.60"})
    assert status == 200 and b"strict-transport-security: max-age=" in data.lower()
    body = f"token={TOKEN}".encode()
    status, data = raw(url, "POST", "/login", {"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.61",
                                               "Content-Type": "application/x-www-form-urlencoded"}, body)
    cookie = next(line for line in data.split(b"\r\n") if line.lower().startswith(b"set-cookie:"))
    assert status == 303 and b"; secure" in cookie.lower()
    # from a client that is not a trusted proxy the header means nothing
    status, data = raw(direct.url, "GET", "/health", {"X-Forwarded-Proto": "https"})
    assert status == 200 and b"strict-transport-security" not in data.lower()
