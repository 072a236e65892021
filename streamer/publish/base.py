"""What every publisher offers the events sink, and the checks they share (payload size, topic segments)."""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from streamer.netpolicy import NetworkPolicy, lookup
from streamer.source_url import SourceError

MAX_PAYLOAD_BYTES = 64 * 1024  # a bigger payload is a bug or an attack (a huge camera id): dropped and counted
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class EventsConfigError(SourceError):
    """A broker or webhook that cannot be used: one line, shown at start-up (exit 2)."""


class Publisher(Protocol):
    name: str

    def start(self) -> None: ...  # connect or begin delivering (threads of its own)

    def offer(self, kind: str, payload: dict[str, Any]) -> None: ...  # never blocks: queued or dropped (counted)

    def close(self, timeout_s: float) -> None: ...  # blocking: deliver what it can within timeout_s, then stop

    def counters(self) -> dict[str, int]: ...


def encode(payload: dict[str, Any]) -> bytes | None:
    """Compact JSON, or None when it is over ``MAX_PAYLOAD_BYTES``."""
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    return body if len(body) <= MAX_PAYLOAD_BYTES else None


def segment(text: str) -> str:
    """One MQTT topic level from an id: no ``/``, ``+``, ``#``, CR/LF or other controls (each becomes ``_``)."""
    return _UNSAFE.sub("_", text)[:128] or "_"


def checked_address(policy: NetworkPolicy | None, host: str, port: int, what: str) -> str:
    """``host`` resolved and checked like a camera's (no metadata addresses, not DeepFER's Redis); the address to
    connect to. ``EventsConfigError`` names ``what`` and the reason, never a secret."""
    if policy is None:
        return host
    try:
        addresses = lookup(policy.resolver, host, port, policy.resolve_timeout_s)
    except SourceError as exc:
        raise EventsConfigError(f"{what}: {exc}".replace("camera host", "host")) from None
    for ip in addresses:
        why = policy.refusal(ip, port)
        if why is not None:
            raise EventsConfigError(f"{what} refused by the network policy: {why}")
    return str(addresses[0])
