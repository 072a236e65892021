"""Which of a visitor's ICE candidates the server may send to, decided before aiortc sees the offer.

Each remote candidate is an address the server sends STUN checks (with text the visitor chose) and then media to,
so an offer could otherwise aim the server's UDP at any host and port: its own loopback services, cloud metadata,
multicast groups, the Redis it uses, or anything on the internet. Candidates are kept only when they name an IP
address (no host or mDNS ``.local`` names, which aioice would resolve later, out of sight) that is not loopback,
link-local, multicast, unspecified or reserved, not in ``sources.denied_networks``, not the Redis DeepFER uses,
and is in ``webrtc.allowed_networks`` (private LAN ranges by default). The machine's own LAN addresses stay allowed
(except Redis's port): a browser on the server itself offers them.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from deepfer_core.settings import Settings
from streamer.netpolicy import (
    REDIS_DEFAULT_PORT,
    IPAddress,
    IPNetwork,
    address_forms,
    local_addresses,
    lookup,
    system_resolver,
)

log = logging.getLogger(__name__)
CANDIDATE = "a=candidate:"


class CandidateError(ValueError):
    """The offer's candidates cannot be used (too many, or none allowed); the message says why."""


def _in(ip: IPAddress, net: IPNetwork) -> bool:
    return ip.version == net.version and ip in net


def redis_hosts(urls: Iterable[str], timeout_s: float = 5.0) -> tuple[list[IPNetwork], list[tuple[IPNetwork, int]]]:
    """(hosts refused entirely, (network, port) refused) for the Redis at each URL. A remote Redis host is refused
    whole; a local one only at its port on the machine's addresses (loopback is refused anyway)."""
    hosts: list[IPNetwork] = []
    endpoints: list[tuple[IPNetwork, int]] = []
    for url in urls:
        try:
            parts = urlsplit(url)
            if parts.scheme not in ("redis", "rediss"):
                continue
            port = parts.port or REDIS_DEFAULT_PORT
            addresses = lookup(system_resolver, parts.hostname or "localhost", port, timeout_s)
        except ValueError:
            continue
        local = set(local_addresses())
        for ip in addresses:
            if ip.is_loopback or ip.is_unspecified or ip in local:
                endpoints += [(ipaddress.ip_network(a), port) for a in local]
            else:
                hosts += [ipaddress.ip_network(a) for a in address_forms(ip)]
    return list(dict.fromkeys(hosts)), list(dict.fromkeys(endpoints))


def machine_networks() -> list[str]:
    """This machine's own non-loopback, non-link-local addresses as /32 and /128 networks: where a visitor running on
    the server itself (a test, ``deepfer bench webrtc``) offers its host candidates."""
    return [str(ipaddress.ip_network(ip)) for ip in local_addresses() if not (ip.is_loopback or ip.is_link_local)]


@dataclass(frozen=True)
class CandidatePolicy:
    allowed: tuple[IPNetwork, ...] = ()  # empty: any address not refused
    denied: tuple[IPNetwork, ...] = ()
    denied_endpoints: tuple[tuple[IPNetwork, int], ...] = ()
    max_candidates: int = 64

    @classmethod
    def from_settings(cls, settings: Settings, redis_urls: Iterable[str] = ()) -> CandidatePolicy:
        """Blocking (resolves the Redis host names): call it off the event loop."""
        hosts, endpoints = redis_hosts([u for u in redis_urls if u], settings.sources.connect_timeout_s)
        return cls(tuple(ipaddress.ip_network(n) for n in settings.webrtc.allowed_networks),
                   tuple(ipaddress.ip_network(n) for n in settings.sources.denied_networks) + tuple(hosts),
                   tuple(endpoints), settings.webrtc.max_candidates)

    def refusal(self, address: str, port: int) -> str | None:
        """Why the server must not send to ``address:port``, or None when it may (a short reason, no input text)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return "a host name, not an IP address"
        if not 0 < port < 65536:
            return "no usable port"
        forms = address_forms(ip)
        for a in forms:
            for what in ("loopback", "link_local", "multicast", "unspecified", "reserved"):
                if getattr(a, f"is_{what}"):
                    return what.replace("_", "-")
        if any(port == p and _in(a, net) for a in forms for net, p in self.denied_endpoints):
            return "the Redis DeepFER uses"
        if any(_in(a, net) for a in forms for net in self.denied):
            return "a denied network (sources.denied_networks, or the Redis host)"
        if self.allowed and not any(_in(a, net) for a in forms for net in self.allowed):
            return "not in webrtc.allowed_networks"
        return None

    def filter(self, sdp: str) -> str:
        """The offer without the candidates the server must not contact; ``CandidateError`` beyond
        ``max_candidates`` or when candidates were offered and none is allowed."""
        lines = sdp.splitlines(keepends=True)
        offered = sum(1 for line in lines if line.startswith(CANDIDATE))
        if offered > self.max_candidates:
            raise CandidateError(f"the offer has {offered} ICE candidates; at most {self.max_candidates} are accepted "
                                 "(webrtc.max_candidates)")
        kept, refused = [], Counter[str]()
        for line in lines:
            if line.startswith(CANDIDATE):
                why = self._candidate_refusal(line[len(CANDIDATE):].split())
                if why is not None:
                    refused[why] += 1
                    continue
            kept.append(line)
        if refused:
            summary = ", ".join(f"{n} {why}" for why, n in refused.most_common())
            log.info("webrtc offer: %d of %d ICE candidates refused (%s)", sum(refused.values()), offered, summary)
            if sum(refused.values()) == offered:
                raise CandidateError(f"none of the offer's {offered} ICE candidates may be used ({summary}); "
                                     "webrtc.allowed_networks says where visitors may be")
        return "".join(kept)

    def _candidate_refusal(self, fields: list[str]) -> str | None:
        # foundation component transport priority address port "typ" type [...]
        if len(fields) < 8 or fields[6] != "typ" or fields[2].lower() not in ("udp", "tcp") or not fields[5].isdigit():
            return "malformed"
        return self.refusal(fields[4], int(fields[5]))
