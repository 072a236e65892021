"""A WebRTC offer must not make the server send UDP anywhere (issue 27, item 3): real aiortc offers, given hostile
ICE candidates, to the real server. A candidate aimed at a UDP listener of the test on loopback must get nothing
while one on an allowed address gets the server's STUN checks; too many candidates, or none allowed, are a clear 400;
a real visitor whose offer also carries hostile candidates still connects."""

from __future__ import annotations

import asyncio
import socket
import threading

import httpx
import pytest

from deepfer_bench.visitor import WebRtcClient
from deepfer_core.settings import Settings
from streamer.netpolicy import local_addresses
from streamer.webrtc.candidates import CandidateError, CandidatePolicy, machine_networks
from tests.conftest import SHIPPED_WEIGHTS
from tests.dashboard_helpers import AUTH, LiveServer, dashboard_settings
from tests.redis_helpers import free_port, unique_prefix

pytestmark = pytest.mark.timeout(300)


def candidate(address: str, port: int, n: int = 1, transport: str = "udp") -> str:
    return f"a=candidate:h{n} 1 {transport} 2130706431 {address} {port} typ host\r\n"


def with_candidates(sdp: str, extra: list[str]) -> str:
    """The offer with ``extra`` candidate lines in its first media section (where BUNDLE puts the transport)."""
    head, sep, rest = sdp.partition("\r\nm=")
    first, sep2, others = rest.partition("\r\nm=")
    lines = first.split("\r\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("a=candidate:") or line.startswith("a=end-of"))
    lines[at:at] = [c.rstrip("\r\n") for c in extra]
    return head + sep + "\r\n".join(lines) + (sep2 + others if sep2 else "")


class UdpListener:
    """A UDP socket that counts what arrives (the server's STUN checks, if any reach it)."""

    def __init__(self, address: str):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((address, 0))
        self.sock.settimeout(0.2)
        self.address, self.port = address, self.sock.getsockname()[1]
        self.packets: list[bytes] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                self.packets.append(self.sock.recv(2048))
            except (TimeoutError, OSError):
                continue

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.sock.close()


# ----- the policy on its own -----------------------------------------------------------------------------------------


def test_the_policy_refuses_every_kind_of_hostile_candidate():
    policy = CandidatePolicy.from_settings(Settings(), ["redis://127.0.0.1:6379", "redis://10.9.9.9:6380"])
    refused = {
        ("127.0.0.1", 5000): "loopback", ("::1", 5000): "loopback", ("::ffff:127.0.0.1", 5000): "loopback",
        ("169.254.169.254", 80): "link-local", ("fe80::1", 5000): "link-local",
        ("224.0.0.251", 5353): "multicast", ("ff02::fb", 5353): "multicast",
        ("0.0.0.0", 5000): "unspecified", ("::", 5000): "unspecified", ("255.255.255.255", 9): "reserved",
        ("100.100.100.200", 80): "a denied network (sources.denied_networks, or the Redis host)",
        ("fd00:ec2::254", 80): "a denied network (sources.denied_networks, or the Redis host)",  # inside fc00::/7
        ("10.9.9.9", 40000): "a denied network (sources.denied_networks, or the Redis host)",  # the remote Redis host
        ("8.8.8.8", 53): "not in webrtc.allowed_networks", ("2001:db8::1", 5000): "not in webrtc.allowed_networks",
        ("deadbeef.local", 5000): "a host name, not an IP address", ("evil.example", 5000): "a host name, not an IP "
                                                                                           "address",
        ("192.168.1.20", 0): "no usable port",
    }
    for (address, port), why in refused.items():
        assert policy.refusal(address, port) == why, (address, port)
    for address in ("192.168.1.20", "10.1.2.3", "172.20.0.5", "fd12:3456::7"):
        assert policy.refusal(address, 50000) is None
    for ip in local_addresses():  # a local Redis: refused at its port on every address of the machine
        assert policy.refusal(str(ip), 6379) is not None
    assert policy.refusal("192.168.1.20", 6379) is None  # another host's port 6379 is not our Redis

    offer = ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n" + candidate("192.168.1.20", 50000)
             + candidate("127.0.0.1", 6379, 2) + "a=candidate:x 1 udp 1 \x1b[31m 1 typ host\r\n"
             + candidate("192.168.1.21", 50001, 3, "sctp") + "a=end-of-candidates\r\n")
    kept = policy.filter(offer)
    assert kept.count("a=candidate:") == 1 and "192.168.1.20 50000" in kept and "\x1b" not in kept
    with pytest.raises(CandidateError, match="at most 64"):
        policy.filter("m=video 9\r\n" + "".join(candidate("192.168.1.20", 1000 + i, i) for i in range(65)))
    with pytest.raises(CandidateError, match="none of the offer's 2 ICE candidates"):
        policy.filter("m=video 9\r\n" + candidate("127.0.0.1", 1) + candidate("8.8.8.8", 2, 2))
    open_policy = CandidatePolicy.from_settings(Settings(webrtc={"allowed_networks": []}))
    assert open_policy.refusal("8.8.8.8", 53) is None and open_policy.refusal("127.0.0.1", 53) == "loopback"


# ----- the real server -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(media, redis_url, tmp_path_factory):
    with unique_prefix(redis_url, "test-candidates") as prefix:
        settings = dashboard_settings(SHIPPED_WEIGHTS, redis_url, prefix, tmp_path_factory.mktemp("cand-data"),
                                      free_port())
        w = settings.webrtc
        settings = settings.model_copy(update={
            "detector": settings.detector.model_copy(update={"detect_every": 3, "threads": 0}),
            # the site's LAN: the private ranges and wherever this test machine's own addresses are
            "webrtc": w.model_copy(update={"allowed_networks": w.allowed_networks + machine_networks()}),
        })
        with LiveServer(settings) as live:
            yield live


def trap_and_control() -> tuple[UdpListener, UdpListener, list[str]]:
    """A listener on loopback (must get nothing), one on an allowed address of this machine (gets the server's STUN
    checks: without it the trap's silence would prove nothing), and the hostile candidate lines."""
    own = [a for a in machine_networks() if ":" not in a]
    if not own:
        pytest.skip("needs a non-loopback IPv4 address on this machine")
    trap, control = UdpListener("127.0.0.1"), UdpListener(own[0].split("/")[0])
    hostile = [candidate("169.254.169.254", 80, 93), candidate("224.0.0.251", 5353, 94),
               candidate("0.0.0.0", trap.port, 92), candidate("8.8.8.8", 53, 95), candidate("evil.local", 5000, 96),
               candidate("::ffff:127.0.0.1", trap.port, 91), candidate("127.0.0.1", 6379, 97),
               candidate("127.0.0.1", trap.port, 90), candidate(control.address, control.port, 98)]
    return trap, control, hostile


async def post_offer(server: LiveServer, sdp: str) -> dict:
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=60) as http:
        res = await http.post("/api/webrtc/offer", json={"sdp": sdp, "type": "offer"})
        assert res.status_code == 200, res.text
        return res.json()


def test_an_offer_cannot_aim_the_servers_udp_at_loopback(server):
    """The audit's attack: an offer whose only candidates are chosen targets, from a peer that never answers; the
    server checks every candidate it keeps (each check retransmitted), so refused ones must never reach aiortc."""
    from aiortc import RTCPeerConnection, VideoStreamTrack

    trap, control, hostile = trap_and_control()

    async def attack() -> None:
        pc = RTCPeerConnection()
        pc.addTrack(VideoStreamTrack())
        await pc.setLocalDescription(await pc.createOffer())
        own = "".join(line for line in pc.localDescription.sdp.splitlines(keepends=True)
                      if not line.startswith("a=candidate:"))  # no genuine peer: only the chosen targets
        await pc.close()
        answer = await post_offer(server, with_candidates(own, hostile))
        await asyncio.sleep(4)
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
            assert (await http.delete(f"/api/webrtc/sessions/{answer['session_id']}")).status_code == 200

    try:
        asyncio.run(attack())
    finally:
        trap.close()
        control.close()
    assert control.packets, "the allowed candidate got no STUN check: the trap's silence would prove nothing"
    assert trap.packets == [], "the server sent UDP to a loopback candidate"


def test_a_visitor_whose_offer_also_carries_hostile_candidates_still_connects(server, media):
    trap, control, hostile = trap_and_control()

    async def visit() -> int:
        client = WebRtcClient(str(media / "woman2.mp4"))
        try:
            await client.connect(lambda offer: post_offer(server, with_candidates(offer["sdp"], hostile)))
            await client.wait_first(timeout=60)  # the genuine candidates still work
            await asyncio.sleep(2)
            return client.counts.frames_received
        finally:
            await client.close()

    try:
        frames = asyncio.run(visit())
    finally:
        trap.close()
        control.close()
    assert frames > 0
    assert trap.packets == []


def test_too_many_candidates_or_none_allowed_is_a_clear_400(server):
    from aiortc import RTCPeerConnection, VideoStreamTrack

    async def offer() -> str:
        pc = RTCPeerConnection()
        pc.addTrack(VideoStreamTrack())
        await pc.setLocalDescription(await pc.createOffer())
        await pc.close()
        return "".join(line for line in pc.localDescription.sdp.splitlines(keepends=True)
                       if not line.startswith("a=candidate:"))

    base = asyncio.run(offer())
    flood = with_candidates(base, [candidate("192.168.7.7", 1000 + i, i) for i in range(200)])  # the audit's 200
    res = httpx.post(f"{server.url}/api/webrtc/offer", json={"sdp": flood, "type": "offer"}, headers=AUTH)
    assert res.status_code == 400 and "200 ICE candidates; at most 64" in res.json()["detail"], res.text
    hostile = with_candidates(base, [candidate("127.0.0.1", 9, 1), candidate("169.254.169.254", 80, 2)])
    res = httpx.post(f"{server.url}/api/webrtc/offer", json={"sdp": hostile, "type": "offer"}, headers=AUTH)
    assert res.status_code == 400, res.text
    assert "none of the offer's 2 ICE candidates" in res.json()["detail"] and "loopback" in res.json()["detail"]
    assert httpx.get(f"{server.url}/api/webrtc/sessions", headers=AUTH).json() == []  # nothing left behind
