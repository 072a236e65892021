"""API token check: ``Authorization: Bearer <token>``, the login page's cookie, or ``?token=`` (EventSource, MJPEG).

With ``dashboard.token`` empty (allowed only on a loopback address, see ``Settings``) every route is open.
"""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request, status

COOKIE = "deepfer_token"


def presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE) or request.query_params.get("token")


def token_ok(expected: str, given: str | None) -> bool:
    return not expected or (given is not None and secrets.compare_digest(given.encode(), expected.encode()))


async def require_token(request: Request) -> None:
    """Router dependency: 401 with a reason when a token is configured and the request lacks the right one."""
    expected = request.app.state.settings.dashboard.token
    given = presented_token(request)
    if token_ok(expected, given):
        return
    reason = "missing API token" if not given else "wrong API token"
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"{reason}: send 'Authorization: Bearer <token>' or sign in at /login",
                        headers={"WWW-Authenticate": "Bearer"})
