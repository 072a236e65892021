"""API token check: ``Authorization: Bearer <token>``, the login page's cookie, or ``?token=`` (EventSource, MJPEG);
and the per-client throttle of failed sign-ins at ``/login``.

With ``dashboard.token`` empty (allowed only on a loopback address, see ``Settings``) every route is open. The token
is checked twice: by ``security.Gate`` before any body is read, and by ``require_token`` on the routers (which also
documents the 401 in the OpenAPI spec).
"""

from __future__ import annotations

import math
import secrets
import time
from collections import deque
from collections.abc import Callable

from fastapi import HTTPException, Request, status
from starlette.requests import HTTPConnection

COOKIE = "deepfer_token"
MAX_TRACKED_CLIENTS = 10_000  # addresses with recent sign-in failures kept in memory at most


def presented_token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return conn.cookies.get(COOKIE) or conn.query_params.get("token")


def token_ok(expected: str, given: str | None) -> bool:
    return not expected or (given is not None and secrets.compare_digest(given.encode(), expected.encode()))


def unauthorized_reason(given: str | None) -> str:
    reason = "missing API token" if not given else "wrong API token"
    return f"{reason}: send 'Authorization: Bearer <token>' or sign in at /login"


async def require_token(request: Request) -> None:
    """Router dependency: 401 with a reason when a token is configured and the request lacks the right one."""
    expected = request.app.state.settings.dashboard.token
    given = presented_token(request)
    if token_ok(expected, given):
        return
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, unauthorized_reason(given),
                        headers={"WWW-Authenticate": "Bearer"})


class LoginThrottle:
    """Failed sign-ins per client address over a sliding window. A client with ``max_failures`` failures inside
    ``window_s`` must wait until the oldest leaves the window; every attempt meanwhile, right or wrong, is refused
    (so guessing cannot go on). Other clients are not affected."""

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
        now = self.clock()
        times = self._recent(client, now)
        if len(times) < self.max_failures:
            return 0
        return max(1, math.ceil(times[0] + self.window_s - now))

    def failed(self, client: str) -> None:
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
        self.failures.pop(client, None)
