"""API token check: ``Authorization: Bearer <token>``, the login page's session cookie, or ``?token=`` (EventSource,
MJPEG); the sessions; and the per-client throttle of failed sign-ins at ``/login``.

The cookie is never the token: signing in creates a session, ``<id>.<expiry>.<HMAC-SHA256 of both>``, signed with a
key made at start-up and listed in memory until it expires or ``/logout`` revokes it. A copied cookie therefore dies
at logout, at expiry (``dashboard.cookie_max_age_s``) and at every restart (the key and the list are not kept).

With ``dashboard.token`` empty (allowed only on a loopback address, see ``Settings``) every route is open. The token
is checked twice: by ``security.Gate`` before any body is read, and by ``require_token`` on the routers (which also
documents the 401 in the OpenAPI spec).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from fastapi import HTTPException, Request, status
from starlette.requests import HTTPConnection

COOKIE = "deepfer_session"
MAX_TRACKED_CLIENTS = 10_000  # addresses with recent sign-in failures kept in memory at most
MAX_SESSIONS = 10_000  # signed-in sessions kept at most; beyond, the oldest is signed out


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SessionStore:
    """Signed session cookies, listed in memory (one process; a restart signs everyone out)."""

    def __init__(self, lifetime_s: float, clock: Callable[[], float] = time.time):
        self.lifetime_s, self.clock = lifetime_s, clock
        self._key = secrets.token_bytes(32)
        self._live: OrderedDict[str, float] = OrderedDict()  # session id -> expiry (unix s), oldest first

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def issue(self) -> str:
        sid, expires = secrets.token_urlsafe(18), int(self.clock() + self.lifetime_s)
        self._live[sid] = expires
        while len(self._live) > MAX_SESSIONS:
            self._live.popitem(last=False)
        body = f"{sid}.{expires}"
        return f"{body}.{self._sign(body)}"

    def _session_id(self, cookie: str | None) -> str | None:
        """The cookie's session id when its signature is right and it has not expired (it may be revoked)."""
        if not cookie or len(cookie) > 200 or cookie.count(".") != 2:
            return None
        sid, expires, sig = cookie.split(".")
        if not hmac.compare_digest(sig.encode(), self._sign(f"{sid}.{expires}").encode()):
            return None
        if not expires.isdigit() or int(expires) <= self.clock():
            self._live.pop(sid, None)
            return None
        return sid

    def valid(self, cookie: str | None) -> bool:
        sid = self._session_id(cookie)
        return sid is not None and sid in self._live

    def revoke(self, cookie: str | None) -> bool:
        sid = self._session_id(cookie)
        return sid is not None and self._live.pop(sid, None) is not None

    def __len__(self) -> int:
        return len(self._live)


def sessions_of(app) -> SessionStore:
    """The app's sessions (made on first use, with ``dashboard.cookie_max_age_s``)."""
    store = getattr(app.state, "sessions", None)
    if store is None:
        store = app.state.sessions = SessionStore(app.state.settings.dashboard.cookie_max_age_s)
    return store


def token_ok(expected: str, given: str | None) -> bool:
    return not expected or (given is not None and secrets.compare_digest(given.encode(), expected.encode()))


def _bearer(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def signed_in(conn: HTTPConnection) -> bool:
    """A bearer token, a live session cookie, or ``?token=`` (in that order: a bearer header is the only one read
    when present). Always true when no token is configured."""
    expected = conn.app.state.settings.dashboard.token
    if not expected:
        return True
    bearer = _bearer(conn)
    if bearer is not None:
        return token_ok(expected, bearer)
    if sessions_of(conn.app).valid(conn.cookies.get(COOKIE)):
        return True
    query = conn.query_params.get("token")
    return query is not None and token_ok(expected, query)


def unauthorized_reason(conn: HTTPConnection) -> str:
    if _bearer(conn) is not None or conn.query_params.get("token"):
        reason = "wrong API token"
    elif conn.cookies.get(COOKIE):
        reason = "session expired or signed out"
    else:
        reason = "missing API token"
    return f"{reason}: send 'Authorization: Bearer <token>' or sign in at /login"


async def require_token(request: Request) -> None:
    """Router dependency: 401 with a reason when a token is configured and the request lacks the right one."""
    if signed_in(request):
        return
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, unauthorized_reason(request),
                        headers={"WWW-Authenticate": "Bearer"})


def throttle_key(client: str) -> str:
    """The client a sign-in failure counts against: its IPv4 address, or its IPv6 /64 (one host's share: a client
    that owns a /64 could otherwise take a new address per guess). Not an address: counted as it is."""
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return client[:64]
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)


class LoginThrottle:
    """Failed sign-ins per client (``throttle_key``) over a sliding window, never one global count. A client with
    ``max_failures`` failures inside ``window_s`` must wait until the oldest leaves the window; every attempt
    meanwhile, right or wrong, is refused (so guessing cannot go on). Other clients are not affected."""

    def __init__(self, max_failures: int, window_s: float, clock: Callable[[], float] = time.monotonic):
        self.max_failures, self.window_s, self.clock = max_failures, window_s, clock
        self.failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self.failures.get(client, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            self.failures.pop(client, None)
        return times

    def retry_after(self, client: str) -> int:
        """Whole seconds the client must wait before trying again (0: it may try now)."""
        client = throttle_key(client)
        now = self.clock()
        times = self._recent(client, now)
        if len(times) < self.max_failures:
            return 0
        return max(1, math.ceil(times[0] + self.window_s - now))

    def failed(self, client: str) -> None:
        client = throttle_key(client)
        now = self.clock()
        if client not in self.failures and len(self.failures) >= MAX_TRACKED_CLIENTS:
            for other in list(self.failures):
                self._recent(other, now)
            if len(self.failures) >= MAX_TRACKED_CLIENTS:  # still full: forget the client idle longest
                del self.failures[min(self.failures, key=lambda c: self.failures[c][-1])]
        times = self.failures.setdefault(client, deque())
        times.append(now)
        while len(times) > self.max_failures:
            times.popleft()

    def succeeded(self, client: str) -> None:
        self.failures.pop(throttle_key(client), None)
