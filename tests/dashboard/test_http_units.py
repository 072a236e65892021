"""Edge cases of the HTTP layer's parts, beside the live-server tests in test_http_hardening.py: Host parsing, the
cross-site rule, the sign-in throttle's window (a controllable clock), and the upload pool's places (real threads)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from starlette.datastructures import Headers

from dashboard.auth import LoginThrottle
from dashboard.security import (
    HostNames,
    content_security_policy,
    cross_site_reason,
    host_name,
    sha256_source,
)
from dashboard.uploads import PoolFull, UploadPool
from deepfer_core.settings import DashboardSettings


@pytest.mark.parametrize("header, name", [
    ("127.0.0.1:8000", "127.0.0.1"), ("LocalHost", "localhost"), ("[::1]:8000", "::1"), ("[::1]", "::1"),
    ("dash.shop.lan.:443", "dash.shop.lan"), ("", ""), ("a:b", ""), ("[::1]x", ""), ("[::1", ""), ("host:80:90", ""),
])
def test_host_name(header, name):
    assert host_name(header) == name


def test_allowed_hosts_from_the_settings():
    local = HostNames.for_settings(DashboardSettings())
    assert all(local.allows(h) for h in ("localhost:8000", "127.0.0.1", "[::1]:8000"))
    assert not any(local.allows(h) for h in ("evil.example", "localhost.evil.example", "", "0.0.0.0"))
    named = HostNames.for_settings(DashboardSettings(host="cams.lan", allowed_hosts=["*.shop.lan", "Dash.Example."]))
    assert named.allows("cams.lan:8000") and named.allows("a.b.shop.lan") and named.allows("dash.example")
    assert not named.allows("shop.lan") and not named.allows("xshop.lan")
    # bound to every interface: every address of this machine is a name clients may use, names still are not
    wild = HostNames.for_settings(DashboardSettings(host="0.0.0.0", token="x9-Kq2xZ-7mWp4vB"))
    assert wild.allows("127.0.0.1:8000") and not wild.allows("evil.example")
    assert HostNames.for_settings(DashboardSettings(allowed_hosts=["*"])).allows("anything.example")


@pytest.mark.parametrize("method, headers, refused", [
    ("GET", {"origin": "http://evil.example"}, False),
    ("POST", {}, False),
    ("POST", {"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"}, False),
    ("POST", {"origin": "http://127.0.0.1:80"}, True),
    ("POST", {"origin": "http://127.0.0.1:8000/"}, False),
    ("DELETE", {"sec-fetch-site": "none"}, False),
    ("PUT", {"sec-fetch-site": "same-site"}, True),
    ("PATCH", {"origin": "null"}, True),
    ("POST", {"origin": "http://127.0.0.1:99999"}, True),
])
def test_cross_site_rule(method, headers, refused):
    scope = {"method": method, "scheme": "http"}
    reason = cross_site_reason(scope, Headers({"host": "127.0.0.1:8000", **headers}))
    assert (reason is not None) == refused and (reason is None or "cross-site" in reason)


def test_csp_hashes_exactly_the_given_inline_texts():
    csp = content_security_policy(scripts=["alert(1)"], styles=["", "b{}"])
    assert f"script-src 'self' {sha256_source('alert(1)')}" in csp
    assert sha256_source("") == "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"  # the well-known empty hash
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp


def test_login_throttle_window_per_client():
    now = [1000.0]
    throttle = LoginThrottle(max_failures=3, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.retry_after("a") == 0
        throttle.failed("a")
        now[0] += 10
    assert throttle.retry_after("a") == 30  # the first failure (t=1000) leaves the window at t=1060; now t=1030
    assert throttle.retry_after("b") == 0
    now[0] += 30
    assert throttle.retry_after("a") == 0  # one failure left the window: one more try
    throttle.failed("a")
    assert throttle.retry_after("a") == 10
    throttle.succeeded("b")
    now[0] += 100
    assert throttle.retry_after("a") == 0 and "a" not in throttle.failures  # forgotten once all are old


def test_login_throttle_memory_is_bounded(monkeypatch):
    import dashboard.auth as auth

    monkeypatch.setattr(auth, "MAX_TRACKED_CLIENTS", 3)
    now = [0.0]
    throttle = LoginThrottle(max_failures=2, window_s=60, clock=lambda: now[0])
    for i, client in enumerate("abcd"):
        now[0] = i
        throttle.failed(client)
    assert set(throttle.failures) == {"b", "c", "d"}  # the client idle longest was forgotten


def test_upload_pool_holds_a_place_until_the_work_ends_even_if_the_client_left():
    async def scenario():
        pool = UploadPool(workers=1, queue=1)
        release = threading.Event()
        first = pool.take()
        second = pool.take()
        with pytest.raises(PoolFull, match="dashboard.predict_queue"):
            pool.take()
        async with first:
            task = asyncio.ensure_future(first.run(release.wait, 10))
            await asyncio.sleep(0.05)
            task.cancel()  # the client went away; its decode still runs in the worker
        async with second:
            pass  # never ran anything: its place comes back on leaving the block
        assert pool.taken == 1
        release.set()
        for _ in range(100):
            if pool.taken == 0:
                break
            await asyncio.sleep(0.01)
        assert pool.taken == 0
        third = pool.take()
        async with third:
            assert await third.run(sum, [1, 2, 3]) == 6
        pool.close()

    asyncio.run(scenario())


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height``, with no pixel data at all."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


@pytest.mark.parametrize("width, height", [(6300, 6300), (20000, 20000)])  # under and over Pillow's own bomb ceiling
def test_decode_refuses_from_the_header_alone(width, height):
    from dashboard.uploads import ImageRefused, decode

    with pytest.raises(ImageRefused, match="dashboard.max_image_pixels") as refused:
        decode(png_header(width, height), 16_000_000)
    assert refused.value.status == 413
