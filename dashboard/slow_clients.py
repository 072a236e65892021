"""Slow and idle clients: deadlines on uvicorn's HTTP/1.1 protocol, and a cap on open connections.

uvicorn closes a kept-alive connection that stays idle (``timeout_keep_alive``), but a fresh connection that sends
nothing, or sends its headers a byte at a time, or its body, is kept for ever: a few hundred such sockets hold the
server's file descriptors and memory before any token is checked. ``guarded_protocol`` is uvicorn's h11 protocol with
two deadlines, read from h11's view of the client (its state says what the server is waiting for):

- the request line and headers within ``dashboard.header_timeout_s`` of connecting or of the previous response;
- the body within ``dashboard.body_timeout_s`` of the headers.

A connection that misses one gets 408 (when no response has begun) and is closed. A connection beyond
``dashboard.max_connections`` gets 503 with ``Retry-After`` and is closed at once. Once a request is in, the
deadlines stop: a long answer (the event stream, an MJPEG preview) is not cut.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from deepfer_core.settings import DashboardSettings

log = logging.getLogger(__name__)


def raw_response(status: str, text: str, extra: str = "") -> bytes:
    body = text.encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {len(body)}\r\n"
            f"connection: close\r\n{extra}\r\n").encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the header and body deadlines and the connection cap (see the module)."""

    header_timeout_s = 10.0
    body_timeout_s = 60.0
    max_connections = 256

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting: str | None = None
        if len(self.connections) > self.max_connections:
            log.warning("%d connections open, over dashboard.max_connections (%d): one refused",
                        len(self.connections) - 1, self.max_connections)
            self._close_with("503 Service Unavailable", "too many connections; try again", "retry-after: 5\r\n")
            return
        self._watch()

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():  # refused or timed out: nothing more is parsed, no request reaches the app
            return
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def _watch(self) -> None:
        """Arm the deadline for what the client owes now: the next request's head, its body, or nothing."""
        state = self.conn.their_state
        waiting = "head" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
        if waiting == self._waiting:
            return
        self._disarm()
        self._waiting = waiting
        if waiting is not None and not self.transport.is_closing():
            seconds = self.header_timeout_s if waiting == "head" else self.body_timeout_s
            self._deadline = self.loop.call_later(seconds, self._expired, waiting, seconds)

    def _disarm(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()  # type: ignore[union-attr]
            self._deadline = None

    def _expired(self, waiting: str, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        what = "request headers" if waiting == "head" else "request body"
        client = "{}:{}".format(*self.client) if self.client else "?"
        log.info("closing the connection from %s: %s not complete within %.0f s", client, what, seconds)
        cycle = self.cycle if waiting == "body" else None
        if cycle is not None:  # the app is waiting in receive(): it sees a disconnect, and sends nothing more
            started = cycle.response_started
            cycle.disconnected = True
            cycle.message_event.set()
            if started:
                self.transport.close()
                return
        self._close_with("408 Request Timeout", f"{what} not complete within {seconds:.0f} s")

    def _close_with(self, status: str, text: str, extra: str = "") -> None:
        self.transport.write(raw_response(status, text, extra))
        self.transport.close()


def guarded_protocol(d: DashboardSettings) -> type[GuardedH11Protocol]:
    """The protocol class for uvicorn's ``http=`` with ``d``'s deadlines and cap."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {
        "header_timeout_s": d.header_timeout_s, "body_timeout_s": d.body_timeout_s,
        "max_connections": d.max_connections,
    })


def uvicorn_options(d: DashboardSettings) -> dict[str, Any]:
    """What ``deepfer serve`` (and the tests' live server) give uvicorn against slow and idle clients."""
    return {
        "http": guarded_protocol(d),
        "timeout_keep_alive": d.keep_alive_s,
        "limit_concurrency": d.max_connections + 16,  # requests in flight; connections are capped above
        "h11_max_incomplete_event_size": d.max_header_kb * 1024,
    }
