"""Signing in makes a signed session, not a copy of the token (issue 27, item 9): against the real server, a copied
cookie dies at logout and at expiry, a tampered or raw-token cookie is refused, and a weak token stops start-up."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from dashboard import auth
from dashboard.auth import COOKIE, SessionStore
from tests.dashboard_helpers import AUTH, TOKEN, LiveServer, dashboard_settings
from tests.redis_helpers import free_port, unique_prefix

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server(tiny_checkpoint, redis_url, tmp_path_factory):
    with unique_prefix(redis_url, "test-sessions") as prefix:
        settings = dashboard_settings(tiny_checkpoint, redis_url, prefix, tmp_path_factory.mktemp("sessions"),
                                      free_port(), cookie_max_age_s=3600)
        with LiveServer(settings) as live:
            yield live


def sign_in(server: LiveServer) -> str:
    res = httpx.post(f"{server.url}/login", data={"token": TOKEN}, follow_redirects=False)
    assert res.status_code == 303, res.text
    cookie = res.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=3600" in cookie
    return res.cookies[COOKIE]


def cameras_with(server: LiveServer, session: str) -> httpx.Response:
    return httpx.get(f"{server.url}/api/cameras", cookies={COOKIE: session})


def test_the_cookie_is_a_signed_session_not_the_token(server):
    session = sign_in(server)
    assert TOKEN not in session and session.count(".") == 2
    assert cameras_with(server, session).status_code == 200
    assert httpx.get(f"{server.url}/", cookies={COOKIE: session}).status_code == 200
    assert httpx.get(f"{server.url}/api/cameras", headers=AUTH).status_code == 200  # the token itself still works
    # the token where the session belongs is no credential (the old cookie), nor is a forged or altered session
    raw = cameras_with(server, TOKEN)
    assert raw.status_code == 401 and "session expired or signed out" in raw.json()["detail"]
    sid, expires, sig = session.split(".")
    for forged in (f"{sid}.{int(expires) + 86400}.{sig}", f"{sid}x.{expires}.{sig}", f"{sid}.{expires}.{sig[:-2]}AA",
                   "a.b.c", "." * 2, "x" * 5000):
        assert cameras_with(server, forged).status_code == 401, forged
    assert sign_in(server) != session  # each sign-in is its own session


def test_logout_revokes_the_session_on_the_server(server):
    mine, other = sign_in(server), sign_in(server)
    copied = mine  # e.g. taken from the browser by someone else
    out = httpx.post(f"{server.url}/logout", cookies={COOKIE: mine}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    refused = cameras_with(server, copied)
    assert refused.status_code == 401 and "session expired or signed out" in refused.json()["detail"]
    page = httpx.get(f"{server.url}/", cookies={COOKIE: copied}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login"
    assert cameras_with(server, other).status_code == 200  # another session is not affected


def test_a_session_expires(server):
    session = sign_in(server)
    store: SessionStore = server.app.state.sessions
    real = store.clock
    try:
        store.clock = lambda: real() + 3601  # an hour later, on the server's own clock
        assert cameras_with(server, session).status_code == 401
    finally:
        store.clock = real
    assert cameras_with(server, session).status_code == 401  # expired sessions are forgotten, not paused


def test_sessions_kept_in_memory_are_bounded(monkeypatch):
    monkeypatch.setattr(auth, "MAX_SESSIONS", 3)
    store = SessionStore(60)
    first, *rest = [store.issue() for _ in range(4)]
    assert len(store) == 3 and not store.valid(first) and all(store.valid(s) for s in rest)
    assert store.revoke(rest[0]) and not store.valid(rest[0]) and not store.revoke(rest[0])
    assert not SessionStore(60).valid(rest[1])  # another process (a restart) has another key


@pytest.mark.parametrize("weak", ["aaaaaaaaaaaaaaaa", "abababababababab", "abcdefghijklmnop", "1234567890123456",
                                  "Secret42Secret42"])
def test_a_weak_token_is_a_one_line_start_up_error(weak, tmp_path):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFER_")}
    proc = subprocess.run([sys.executable, "-m", "deepfer", "serve", "--port", str(free_port())],
                          env=environ | {"DEEPFER_DASHBOARD__TOKEN": weak}, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "dashboard.token" in out and "too easy to guess" in out and len(out.strip().splitlines()) == 1, out
    assert weak not in out  # the secret itself is never echoed


def test_random_tokens_pass_the_strength_check():
    import secrets

    from deepfer_core.settings.service import token_weakness

    assert token_weakness(TOKEN) is None
    assert not [t for t in (secrets.token_urlsafe(24) for _ in range(2000)) if token_weakness(t)]
    start = time.monotonic()
    token_weakness("x" * 10_000 + "yz0123")  # no quadratic blow-up on long values
    assert time.monotonic() - start < 2
