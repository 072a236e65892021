"""The dashboard's front door: plain ASGI middleware ahead of FastAPI, so that a request is refused before any of its
body is read.

``Gate`` first settles who the client is: the connecting address, or, only when that is one of
``dashboard.trusted_proxies``, the nearest untrusted address of ``X-Forwarded-For`` (each entry must parse as an IP
address; the first that does not ends the walk, so header text never becomes the client) and ``X-Forwarded-Proto``.
It writes them into the ASGI scope, which the access log, the sign-in throttle and the WebRTC peer all read. Then it
checks, in order: the ``Host`` is one of the dashboard's names (a DNS-rebinding page carries its own name)
-> 400; a state-changing request comes from the dashboard's own pages (``Origin``, ``Sec-Fetch-Site``) -> 403; the
API token, when one is set -> 401; the body fits its route's limit, on the declared ``Content-Length`` and again on
the bytes actually received (a chunked body declares nothing) -> 413. ``SecurityHeaders`` puts the CSP and its
companions on every answer, refusals included.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import HTTPException
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashboard.auth import signed_in, unauthorized_reason
from deepfer_core.settings import DashboardSettings

log = logging.getLogger(__name__)
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# routes that answer without the token: the sign-in flow, /health, the favicon, and the pages (they redirect to
# /login themselves)
OPEN_PATHS = frozenset({"/health", "/login", "/logout", "/", "/demo", "/favicon.svg", "/favicon.ico"})
UPLOAD_PATHS = frozenset({"/api/predict", "/api/explain"})
MULTIPART_ALLOWANCE = 64 * 1024  # the multipart envelope around an upload of max_upload_mb
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse({"detail": self.reason}, status_code=self.status, headers=dict(self.headers))
        await response(scope, receive, send)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes its limit; FastAPI answers it like any HTTPException (413)."""

    def __init__(self, reason: str):
        super().__init__(413, reason)


# ----- Host names --------------------------------------------------------------------------------------------------


def host_name(value: str) -> str:
    """The name in a ``Host`` header, lower-cased, without port, brackets or trailing dot ('' when malformed)."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        rest = value[end + 1:] if end > 0 else "x"
        return value[1:end] if rest == "" or (rest.startswith(":") and rest[1:].isdigit()) else ""
    name, _, port = value.partition(":")
    return name.rstrip(".") if port == "" or port.isdigit() else ""


def machine_addresses() -> set[str]:
    """Every address of this machine's interfaces (what clients may type when the dashboard binds a wildcard)."""
    import psutil

    return {a.address.split("%")[0].lower() for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family in (socket.AF_INET, socket.AF_INET6)}


@dataclass(frozen=True)
class HostNames:
    """The ``Host`` values answered: exact names, ``*.suffix`` patterns, or ``*`` (any)."""

    exact: frozenset[str]
    suffixes: tuple[str, ...] = ()
    any: bool = False

    @classmethod
    def of(cls, names: Iterable[str]) -> HostNames:
        names = [n.strip().lower().rstrip(".") for n in names if n.strip()]
        return cls(exact=frozenset(host_name(n) or n for n in names if not n.startswith("*")),
                   suffixes=tuple(n[1:] for n in names if n.startswith("*.")), any="*" in names)

    @classmethod
    def for_settings(cls, d: DashboardSettings) -> HostNames:
        """Loopback names, the bound host (or every address of the machine when bound to a wildcard), allowed_hosts."""
        bound = {d.host.strip("[]").lower()} - WILDCARD_BINDS
        if d.host.strip("[]") in WILDCARD_BINDS:
            bound = machine_addresses()
        return cls.of([*LOOPBACK_NAMES, *bound, *d.allowed_hosts])

    def allows(self, header: str) -> bool:
        name = host_name(header)
        return bool(name) and (self.any or name in self.exact or name.endswith(self.suffixes))


# ----- cross-site requests -----------------------------------------------------------------------------------------


def origin_of(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            return None
        return parts.scheme, parts.hostname.rstrip("."), parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        return None


OWN_PAGES_ONLY = "changes come only from this dashboard's own pages"


def cross_site_reason(scope: Scope, headers: Headers) -> str | None:
    """Why a state-changing request is not from the dashboard's own pages, or None. Clients that send neither
    ``Origin`` nor ``Sec-Fetch-Site`` (curl, scripts) are not browsers acting for another site."""
    if scope["method"] not in STATE_CHANGING:
        return None
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {fetch_site[:40]}): {OWN_PAGES_ONLY}"
    origin = headers.get("origin")
    if origin is None:
        return None
    own = origin_of(f"{scope.get('scheme', 'http')}://{headers.get('host', '')}")
    if own is None or origin_of(origin) != own:
        return f"cross-site request refused (Origin: {origin[:100]}): {OWN_PAGES_ONLY}"
    return None


# ----- the client behind a proxy ----------------------------------------------------------------------------------


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An X-Forwarded-For entry as an address ('1.2.3.4', '1.2.3.4:80', '2001:db8::1', '[2001:db8::1]:80'), else
    None. IPv4-mapped IPv6 becomes IPv4."""
    text = text.strip()
    if len(text) > 64:
        return None
    if text.startswith("["):
        text = text[1:text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip


def _trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None, proxies: tuple[IPNetwork, ...]) -> bool:
    return ip is not None and any(ip.version == n.version and ip in n for n in proxies)


class ForwardedFor:
    """Settles the client of a request (see the module docstring); warns once about a likely misconfiguration."""

    def __init__(self, proxies: Iterable[str]):
        self.proxies = tuple(ipaddress.ip_network(p) for p in proxies)
        self._warned: set[str] = set()

    def _warn_once(self, what: str, message: str, *args: object) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning(message, *args)

    def apply(self, scope: Scope) -> None:
        client = scope.get("client")
        peer = parse_address(client[0]) if client else None
        forwarded = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-forwarded-for"]
        if not _trusted(peer, self.proxies):
            if forwarded and peer is not None and peer.is_loopback:
                self._warn_once("ignored", "X-Forwarded-For from %s ignored: list the proxy in "
                                "dashboard.trusted_proxies (until then all its clients share one address)", peer)
            return
        hops = [h for value in forwarded for h in value.split(",")]
        if not hops:
            self._warn_once("missing", "trusted proxy %s sends no X-Forwarded-For: all its clients share one address "
                            "(and one sign-in throttle)", peer)
        chosen = peer
        for hop in reversed(hops):  # nearest first: each proxy appends the address it saw
            ip = parse_address(hop)
            if ip is None:
                break  # not an address: nothing further left is believed
            chosen = ip
            if not _trusted(ip, self.proxies):
                break
        scope["client"] = (str(chosen), client[1] if chosen == peer and client else 0)
        proto = Headers(scope=scope).get("x-forwarded-proto", "").strip().lower()
        if proto in DEFAULT_PORTS:
            scope["scheme"] = proto


# ----- body limits -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BodyLimits:
    json_kb: int
    upload_mb: float

    def for_path(self, path: str) -> tuple[int, str]:
        """The most bytes a request to ``path`` may send, and the reason given when it sends more."""
        if path in UPLOAD_PATHS:
            return (int(self.upload_mb * 2**20) + MULTIPART_ALLOWANCE,
                    f"upload larger than the {self.upload_mb:g} MB limit (dashboard.max_upload_mb)")
        return self.json_kb * 1024, f"request body larger than the {self.json_kb} KB limit (dashboard.max_json_kb)"


def declared_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


class Gate:
    """Host, cross-site, token and body-size checks before the app sees the request (see the module docstring)."""

    def __init__(self, app: ASGIApp, settings: DashboardSettings):
        self.app = app
        self.settings = settings
        self.hosts = HostNames.for_settings(settings)
        self.limits = BodyLimits(settings.max_json_kb, settings.max_upload_mb)
        self.forwarded = ForwardedFor(settings.trusted_proxies)

    def refusal(self, scope: Scope, limit: int, reason: str) -> Refusal | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if not self.hosts.allows(host):
            return Refusal(400, f"Host {host[:100]!r} is not a name of this dashboard: "
                                "add it to dashboard.allowed_hosts")
        if cross_site := cross_site_reason(scope, headers):
            return Refusal(403, cross_site)
        if self.settings.token and scope["path"] not in OPEN_PATHS:
            conn = HTTPConnection(scope)  # scope["app"] is the app (Starlette sets it before its middleware)
            if not signed_in(conn):
                return Refusal(401, unauthorized_reason(conn), (("WWW-Authenticate", "Bearer"),))
        length = declared_length(headers)
        if length is not None and length > limit:
            return Refusal(413, reason)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.forwarded.apply(scope)
        limit, reason = self.limits.for_path(scope["path"])
        refusal = self.refusal(scope, limit, reason)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(reason)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge as exc:  # read outside a route's own error handling
            if started:
                raise
            await Refusal(413, exc.detail)(scope, receive, send)


# ----- security headers --------------------------------------------------------------------------------------------

INLINE = {tag: re.compile(rf"<{tag}>(.*?)</{tag}>", re.S) for tag in ("script", "style")}


def inline_blocks(page: str, tag: str) -> list[str]:
    """The text of every attribute-less ``<script>`` or ``<style>`` element of an HTML page (its inline code)."""
    return INLINE[tag].findall(page)


def sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def content_security_policy(scripts: Iterable[str], styles: Iterable[str]) -> str:
    """Scripts and styles only from this server, and the inline ones whose exact text is given (allowed by hash)."""
    return "; ".join([
        "default-src 'self'", " ".join(["script-src 'self'", *sorted({sha256_source(s) for s in scripts})]),
        " ".join(["style-src 'self'", *sorted({sha256_source(s) for s in styles})]),
        "img-src 'self' data: blob:", "font-src 'self' data:", "connect-src 'self'", "object-src 'none'",
        "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'"])


class SecurityHeaders:
    """Adds the CSP, ``X-Frame-Options: DENY``, ``nosniff``, ``Referrer-Policy`` and ``Cross-Origin-Resource-Policy``
    to every answer, and ``Strict-Transport-Security`` when the request came over TLS."""

    def __init__(self, app: ASGIApp, csp: str, hsts_max_age_s: int):
        self.app = app
        self.headers = {"Content-Security-Policy": csp, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                        # URLs may carry ?token= (EventSource, MJPEG): never hand them to another site. Not
                        # no-referrer: with it browsers send "Origin: null" on the dashboard's own form posts
                        "Referrer-Policy": "same-origin",
                        # other sites cannot even embed the camera previews as images
                        "Cross-Origin-Resource-Policy": "same-origin"}
        self.hsts = f"max-age={hsts_max_age_s}" if hsts_max_age_s > 0 else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
                # read now, not on the way in: Gate (inside) may have set it from a trusted X-Forwarded-Proto
                if scope.get("scheme") == "https" and self.hsts:
                    headers.setdefault("Strict-Transport-Security", self.hsts)
            await send(message)

        await self.app(scope, receive, send_with_headers)
