"""Where a network camera may be: its host is resolved and every address checked, when the camera is added and again
before every connect, against ``sources.allowed_networks`` / ``sources.denied_networks`` and the Redis DeepFER
itself uses (always refused, whatever the lists say).

DNS rebinding (a name that resolves to an allowed address when checked and to a refused one a moment later, when
FFmpeg resolves it again) is closed by resolving once and handing FFmpeg the checked address:

- ``rtsp://``: the checked IP replaces the name in the URL FFmpeg opens (RTSP servers do not route on the name;
  Digest authentication uses whatever request URI the client sends).
- ``rtsps://`` with ``sources.rtsps_ca_file``: FFmpeg verifies the certificate's chain and host name
  (``tls_verify``), so the name is kept (for SNI and the name check); a rebound address cannot present a valid
  certificate for it, and the handshake fails before any RTSP byte is sent.
- ``rtsps://`` without it: FFmpeg's default is to verify nothing (measured: FFmpeg 8.1 in PyAV 18.1 completes the
  handshake with any self-signed certificate, which is what cameras have), so the name protects nothing and the
  checked IP is used, as for ``rtsp://``. The cost: no SNI, which camera firmware does not need.

Not closed here: FFmpeg follows RTSP 3xx redirects from a camera it reached (to any address, measured), and PyAV
offers no hook to refuse them. A redirected request is a fixed ``OPTIONS`` line (the Location cannot carry CR/LF),
and what comes back never reaches an API answer (connection errors are one generic text).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from streamer.source_url import SourceError

if TYPE_CHECKING:
    from deepfer_core.settings import SourceSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

REDIS_DEFAULT_PORT = 6379
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOOPBACK_LIKE = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"),
                  ipaddress.ip_network("0.0.0.0/32"), ipaddress.ip_network("::/128"))
_dns = ThreadPoolExecutor(max_workers=4, thread_name_prefix="deepfer-dns")  # getaddrinfo has no timeout of its own


class PolicyRefused(SourceError):
    """The camera's host resolves to an address the network policy refuses."""


class HostUnresolved(SourceError):
    """The camera's host name resolves to no address (or not in time)."""


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to for a TCP connection, in the system's preferred order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))


def lookup(resolver: Resolver, host: str, port: int, timeout_s: float) -> list[IPAddress]:
    """``host``'s addresses (an IP address is its own); ``HostUnresolved`` when there are none within ``timeout_s``."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        addresses = [ipaddress.ip_address(a) for a in _dns.submit(resolver, host, port).result(timeout=timeout_s)]
    except FutureTimeout:
        raise HostUnresolved(f"camera host name did not resolve within {timeout_s:g} s") from None
    except (OSError, ValueError, UnicodeError):
        addresses = []
    if not addresses:
        raise HostUnresolved("camera host name does not resolve to any address")
    return addresses


def _in(ip: IPAddress, net: IPNetwork) -> bool:
    return ip.version == net.version and ip in net  # ``in`` alone compares IPv4 with IPv6 bit patterns


def address_forms(ip: IPAddress) -> list[IPAddress]:
    """The address and the IPv4 address it carries, if any (IPv4-mapped, NAT64, 6to4), which is where it leads."""
    if ip.version == 4:
        return [ip]
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    inner = [ip.sixtofour] if ip.sixtofour is not None else []
    if ip in _NAT64:
        inner.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [ip, *inner]


def local_addresses() -> list[IPAddress]:
    """This machine's own addresses (every interface), where a Redis bound to all interfaces also listens."""
    import psutil

    out = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    out.append(ipaddress.ip_address(a.address.split("%", 1)[0]))
                except ValueError:
                    continue
    return out


def service_endpoints(url: str, resolver: Resolver = system_resolver,
                      timeout_s: float = 5.0) -> list[tuple[IPNetwork, int]]:
    """The (network, port) pairs where the Redis at ``url`` answers; a local one may answer on every local address."""
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            return []  # unix:// sockets cannot be reached through a camera URL
        host, port = parts.hostname or "localhost", parts.port or REDIS_DEFAULT_PORT
        addresses = lookup(resolver, host, port, timeout_s)
    except ValueError:  # HostUnresolved included: a Redis that does not resolve cannot be reached either
        return []
    nets: list[IPNetwork] = [ipaddress.ip_network(a) for ip in addresses for a in address_forms(ip)]
    local = set(local_addresses())
    if any(ip.is_loopback or ip.is_unspecified or ip in local for ip in addresses):
        nets += list(_LOOPBACK_LIKE) + [ipaddress.ip_network(a) for a in local]
    return [(n, port) for n in dict.fromkeys(nets)]


@dataclass(frozen=True)
class NetworkPolicy:
    """``allowed`` empty: any address not ``denied``. ``denied_endpoints``: (network, port) pairs always refused."""

    allowed: tuple[IPNetwork, ...] = ()
    denied: tuple[IPNetwork, ...] = ()
    denied_endpoints: tuple[tuple[IPNetwork, int], ...] = ()
    resolve_timeout_s: float = 5.0
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def from_settings(cls, sources: SourceSettings, service_urls: Iterable[str] = (),
                      resolver: Resolver | None = None) -> NetworkPolicy:
        """The policy of ``sources``, refusing the Redis at each of ``service_urls`` too."""
        resolver = resolver or system_resolver
        endpoints = [e for url in service_urls if url
                     for e in service_endpoints(url, resolver, sources.connect_timeout_s)]
        return cls(tuple(ipaddress.ip_network(n) for n in sources.allowed_networks),
                   tuple(ipaddress.ip_network(n) for n in sources.denied_networks),
                   tuple(dict.fromkeys(endpoints)), sources.connect_timeout_s, resolver)

    def refusal(self, ip: IPAddress, port: int) -> str | None:
        """Why ``ip:port`` is refused, or None when a camera may be there."""
        forms = address_forms(ip)
        if any(port == p and _in(a, net) for a in forms for net, p in self.denied_endpoints):
            return "the Redis DeepFER uses"
        for a in forms:
            for net in self.denied:
                if _in(a, net):
                    return f"in sources.denied_networks ({net})"
        if self.allowed and not any(_in(a, net) for a in forms for net in self.allowed):
            return "not in sources.allowed_networks"
        return None

    def check(self, host: str, port: int) -> IPAddress:
        """Resolve ``host`` and check every address it has (one refused address refuses the name: a name that
        also points into a refused network is not a camera's); the first address is the one to connect to."""
        addresses = lookup(self.resolver, host, port, self.resolve_timeout_s)
        for ip in addresses:
            why = self.refusal(ip, port)
            if why is not None:
                raise PolicyRefused(f"camera address refused by the network policy: {why}")
        return addresses[0]
