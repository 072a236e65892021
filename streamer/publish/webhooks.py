"""Webhooks out: each payload POSTed as JSON to every hook that asked for its type, signed, retried, in order.

Signature: ``X-DeepFER-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`` with
``X-DeepFER-Timestamp: <unix seconds>`` (a receiver refuses old timestamps: no replay), ``X-DeepFER-Event: <type>``.

Each hook has its own bounded queue and delivery thread: a receiver that is down or slow holds only its own queue
(overflow dropped and counted), never the pipeline or the other hooks. Each attempt resolves the host again and
checks every address against the network policy (like a camera before each connect) and connects to the checked
address (no DNS rebinding in between); redirects are not followed. Logs name a hook by scheme, host and port only:
a path or query may carry a receiver's token.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from deepfer_core.settings import WebhookSettings, WebhooksSettings
from streamer.netpolicy import NetworkPolicy
from streamer.publish.base import EventsConfigError, checked_address, encode

log = logging.getLogger(__name__)

USER_AGENT = "DeepFER-webhook/1"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-DeepFER-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass(frozen=True)
class HookUrl:
    scheme: str
    host: str
    port: int
    target: str  # path and query

    @property
    def display(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_hook_url(url: str, what: str) -> HookUrl:
    """``http(s)://host[:port]/path?query``; no credentials, whitespace, controls or non-ASCII characters."""
    if any(ord(ch) <= 0x20 or ord(ch) >= 0x7F for ch in url):
        raise EventsConfigError(f"{what}: the URL has whitespace, control or non-ASCII characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise EventsConfigError(f"{what}: not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EventsConfigError(f"{what}: only http:// and https:// URLs with a host are accepted")
    if parts.username or parts.password:
        raise EventsConfigError(f"{what}: credentials in the URL are refused (use the hook's secret)")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return HookUrl(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), target)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to an address checked beforehand, with the certificate verified against the URL's host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class _Hook:
    def __init__(self, index: int, hook: WebhookSettings, settings: WebhooksSettings, policy: NetworkPolicy | None):
        self.what = f"webhooks.hooks[{index}]"
        self.url = parse_hook_url(hook.url, self.what)
        checked_address(policy, self.url.host, self.url.port, f"{self.what} ({self.url.display})")
        self.hook, self.s, self.policy = hook, settings, policy
        self.kinds = set(hook.events)
        self.queue: deque[tuple[str, bytes]] = deque()
        self.cond = threading.Condition()
        self.closing = False
        self.delivered = self.failed = self.retries = self.dropped = 0
        self.thread = threading.Thread(target=self._run, name=f"deepfer-webhook-{index}", daemon=True)

    def offer(self, kind: str, body: bytes) -> None:
        if kind not in self.kinds:
            return
        with self.cond:
            if len(self.queue) >= self.s.queue_size:
                self.dropped += 1
                return
            self.queue.append((kind, body))
            self.cond.notify()

    def _run(self) -> None:
        backoff = self.s.backoff_s
        attempts = 0
        while True:
            with self.cond:
                while not self.queue and not self.closing:
                    self.cond.wait()
                if not self.queue:
                    return
                kind, body = self.queue[0]
            outcome = self._attempt(kind, body)
            attempts += 1
            if outcome == "retry" and not (self.s.max_attempts and attempts >= self.s.max_attempts):
                self.retries += 1
                with self.cond:
                    if self.closing:
                        return
                    self.cond.wait(backoff)
                backoff = min(self.s.backoff_max_s, backoff * 2)
                continue
            with self.cond:
                self.queue.popleft()
            if outcome == "ok":
                self.delivered += 1
            else:
                self.failed += 1
            backoff, attempts = self.s.backoff_s, 0

    def _attempt(self, kind: str, body: bytes) -> str:
        """One POST: ``ok``, ``retry`` (no answer, 5xx, 408, 429) or ``failed`` (refused address, other 4xx)."""
        u = self.url
        try:
            address = checked_address(self.policy, u.host, u.port, f"{self.what} ({u.display})")
        except EventsConfigError as exc:
            log.warning("%s", exc)
            return "failed"
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-DeepFER-Event": kind,
                   "X-DeepFER-Timestamp": timestamp, "X-DeepFER-Signature": sign(self.hook.secret, timestamp, body),
                   "Host": u.host if u.port in (80, 443) else f"{u.host}:{u.port}"}
        conn: http.client.HTTPConnection = (_PinnedHTTPS(u.host, u.port, address, self.s.timeout_s)
                                            if u.scheme == "https" else
                                            http.client.HTTPConnection(address, u.port, timeout=self.s.timeout_s))
        try:
            conn.request("POST", u.target, body, headers)
            resp = conn.getresponse()
            resp.read(4096)
            status = resp.status
        except (OSError, http.client.HTTPException) as exc:
            if self.retries % 20 == 0:
                log.warning("%s (%s): delivery failed (%s), retrying", self.what, u.display, type(exc).__name__)
            return "retry"
        finally:
            conn.close()
        if 200 <= status < 300:
            return "ok"
        if status in (408, 429) or status >= 500:
            return "retry"
        log.warning("%s (%s): answered %d, payload dropped", self.what, u.display, status)
        return "failed"


class WebhookPublisher:
    name = "webhooks"

    def __init__(self, settings: WebhooksSettings, policy: NetworkPolicy | None = None):
        """Checks every hook's URL now (``EventsConfigError``, one line, at start-up)."""
        self.hooks = [_Hook(i, h, settings, policy) for i, h in enumerate(settings.hooks)]
        self.too_large = 0

    def start(self) -> None:
        for h in self.hooks:
            h.thread.start()

    def offer(self, kind: str, payload: dict[str, Any]) -> None:
        body = encode(payload)
        if body is None:
            self.too_large += 1
            return
        for h in self.hooks:
            h.offer(kind, body)

    def close(self, timeout_s: float) -> None:
        """Deliver what is queued within ``timeout_s`` (no retries after it), then stop."""
        deadline = time.monotonic() + timeout_s
        for h in self.hooks:
            with h.cond:
                while h.queue and time.monotonic() < deadline:
                    h.cond.wait(0.05)
                h.closing = True
                h.cond.notify_all()
        for h in self.hooks:
            if h.thread.is_alive():
                h.thread.join(max(0.0, deadline - time.monotonic()))

    def counters(self) -> dict[str, int]:
        return {"delivered": sum(h.delivered for h in self.hooks), "failed": sum(h.failed for h in self.hooks),
                "retries": sum(h.retries for h in self.hooks), "dropped": sum(h.dropped for h in self.hooks),
                "too_large": self.too_large, "queued": sum(len(h.queue) for h in self.hooks)}
