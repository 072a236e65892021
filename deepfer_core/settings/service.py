"""Settings of the service: the dashboard's HTTP server, WebRTC visitors and the Ray cluster cameras run on."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from deepfer_core.settings.base import Section

MIN_TOKEN_LENGTH = 16
MIN_TOKEN_DISTINCT = 6
MAKE_TOKEN = " (make one with: python -c 'import secrets; print(secrets.token_urlsafe(24))')"


def token_weakness(token: str) -> str | None:
    """Why a token of the right length is still guessable, or None: few distinct characters ('aaaa...',
    'abab...'), a run of neighbouring characters ('abcdef...', '123456...'), or one block repeated ('pass1pass1...').
    A random token of 16+ characters practically never trips these (measured: fewer than 1 in 10,000 of
    secrets.token_hex(8), none of a million secrets.token_urlsafe(12))."""
    if len(set(token)) < MIN_TOKEN_DISTINCT:
        return f"fewer than {MIN_TOKEN_DISTINCT} different characters"
    steps = [abs(ord(b) - ord(a)) for a, b in zip(token, token[1:], strict=False)]
    if sum(step <= 1 for step in steps) * 5 > len(steps) * 3:
        return "mostly runs of neighbouring or repeated characters"
    if any(token[size:] == token[:-size] for size in range(1, len(token) // 2 + 1)):  # a period of at most half
        return "one short block repeated"
    return None


def cidrs(values: list[str]) -> list[str]:
    out = []
    for v in values:
        try:
            out.append(str(ipaddress.ip_network(v.strip(), strict=False)))
        except ValueError:
            raise ValueError(f"not a network in CIDR form (like 192.168.0.0/16 or fd00::/8): {v!r}") from None
    return out


# Where a WebRTC visitor may be by default: the private LAN ranges (RFC 1918, IPv6 unique local). No STUN or TURN is
# configured by default, so a visitor's candidates are its host addresses on the shop's LAN.
WEBRTC_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")


class DashboardSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    token: str = Field(
        "",
        description="API token, at least 16 characters; required when host is not loopback. Prefer "
        "DEEPFER_DASHBOARD__TOKEN to a flag or this file (flags show in ps).",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names answered besides localhost, "
        "127.0.0.1, ::1 and host (every address of the "
        "machine when host is 0.0.0.0 or ::); "
        "'*.example.com' takes its subdomains, '*' any "
        "name (no DNS-rebinding protection). Others get "
        "400.",
    )
    max_upload_mb: float = Field(
        10.0, gt=0, description="Largest /api/predict or /api/explain upload, counted on the bytes received "
                                "(chunked too)."
    )
    max_json_kb: int = Field(
        64,
        ge=1,
        description="Largest request body on every other route (JSON, the sign-in "
        "form), counted on the bytes received.",
    )
    snapshots: bool = Field(False, description="Keep face images; off by default for privacy.")
    max_image_pixels: int = Field(
        16_000_000,
        ge=1,
        description="Uploads with more pixels are refused from their "
        "header (413) before decoding: 16 MP takes 12 MP "
        "photos and 4K frames, and one decode peaks near 11 "
        "bytes a pixel (about 175 MB).",
    )
    predict_workers: int = Field(2, ge=1, description="Uploads decoded and analysed at once.")
    predict_queue: int = Field(4, ge=0, description="Uploads waiting for a worker; more get 503 with Retry-After.")
    login_max_failures: int = Field(
        5,
        ge=1,
        description="Failed sign-ins per client address within login_window_s; "
        "then /login answers 429 with Retry-After.",
    )
    login_window_s: float = Field(300.0, gt=0, description="Window over which failed sign-ins are counted.")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="CIDRs of reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed (e.g. "
                    "['127.0.0.1/32'] for a proxy on this machine); empty: these headers are ignored and the client "
                    "is the connecting address.")
    hsts_max_age_s: int = Field(
        31_536_000, ge=0, description="Strict-Transport-Security max-age sent over HTTPS (0: not sent)."
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="A connection whose request line and headers are not all in within this many seconds "
                                "(of connecting, or of its previous response) is closed with 408: slow-header and "
                                "idle sockets are not kept.")
    body_timeout_s: float = Field(
        60.0, gt=0, description="A request body not all in within this many seconds of its headers is refused with 408 "
                                "and the connection closed (a 10 MB upload needs about 1.4 Mbit/s).")
    keep_alive_s: float = Field(5.0, gt=0, description="An idle kept-alive connection is closed after this long.")
    max_connections: int = Field(
        256, ge=1, description="Open HTTP connections at once (the page's event stream and previews included); one "
                               "more gets 503 with Retry-After and is closed at once.")
    max_header_kb: int = Field(16, ge=1, description="Largest request line plus headers; larger gets 400.")
    present_window_s: float = Field(5.0, gt=0, description="A person seen within this many seconds is 'in view now'.")
    summary_window_s: float = Field(
        600.0, ge=60, description="The plain-words summary of the metrics (the page's sentence per camera and overall) "
                                  "tells the last this many seconds, against the same time before it.")
    summary_trend_min: float = Field(
        0.1, ge=0, le=2, description="The summary says satisfaction went up or down only when it moved by at least "
                                     "this much (on its -1..1 scale) against the window before.")
    max_series_points: int = Field(5000, ge=1, description="Most points one person's time series answer holds.")
    max_people: int = Field(500, ge=1, description="Most people one people answer holds (most recent first).")
    max_visits: int = Field(
        1000, ge=1, description="Most visits one /api/visits answer holds (its limit's default; a larger limit gets "
                                "400)."
    )
    max_cameras: int = Field(
        0,
        ge=0,
        description="Most cameras configured at once (each is a decode thread); 0: 4 per "
        "CPU core this process may use.",
    )
    default_range_s: float = Field(
        3600.0, gt=0, description="Time range of people and metrics answers when none is given."
    )
    preview_fps: float = Field(5.0, gt=0, description="Frames per second of the live MJPEG preview.")
    preview_jpeg_quality: int = Field(75, ge=10, le=95, description="JPEG quality of previews.")
    live_max_per_s: float = Field(4.0, gt=0, description="Most live (SSE) events sent per camera per second.")
    sse_keepalive_s: float = Field(15.0, gt=0, description="A comment line is sent this often on idle event streams.")
    sse_stats_every_s: float = Field(
        2.0, gt=0, description="Camera status and counters are sent on the event stream this often."
    )
    snapshot_max_people: int = Field(
        200, ge=1, description="Face snapshots kept in memory per camera (cameras with snapshots on)."
    )
    cookie_max_age_s: int = Field(7 * 86400, ge=60, description="Lifetime of the login cookie.")
    tls_cert: str = Field(
        "", description="PEM certificate: serve HTTPS (browsers allow the camera only over HTTPS or on localhost)."
    )
    tls_key: str = Field("", description="PEM private key of tls_cert.")

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_cidrs(cls, values: list[str]) -> list[str]:
        return cidrs(values)

    @field_validator("token")
    @classmethod
    def _token_strength(cls, token: str) -> str:
        """A short or patterned token can be guessed; the message names the rule, never the value."""
        if token and len(token) < MIN_TOKEN_LENGTH:
            raise PydanticCustomError("token_too_short", "must be at least {n} characters" + MAKE_TOKEN,
                                      {"n": MIN_TOKEN_LENGTH})
        if token and (why := token_weakness(token)):
            raise PydanticCustomError("token_too_weak", "is too easy to guess ({why})" + MAKE_TOKEN, {"why": why})
        return token

    @model_validator(mode="after")
    def _tls_pair(self) -> DashboardSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("dashboard.tls_cert and dashboard.tls_key go together: set both or neither")
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ValueError(f"dashboard.{name} file not found: {path}")
        return self


class WebRtcSettings(Section):
    ice_servers: list[str] = Field(
        default_factory=list,
        description="STUN/TURN URLs for visitors behind NAT (empty: host candidates only, enough on a LAN).",
    )
    ice_username: str = Field(
        "", repr=False, description="TURN user name (sent to the browser with ice_servers, never logged)."
    )
    ice_credential: str = Field(
        "", repr=False, description="TURN password (sent to the browser with ice_servers, never logged)."
    )
    max_sessions: int = Field(4, ge=1, description="Most WebRTC visitors at once; more get 429.")
    max_in_flight: int = Field(
        1,
        ge=1,
        description="A visitor's frames analysed at once (pipeline.max_in_flight for "
        "cameras): 1 gives the lowest delay.",
    )
    batch_wait_ms: float = Field(
        0.0,
        ge=0,
        description="Longest a visitor's frame waits for a detector/classifier "
        "batch to fill (cameras: pipeline.detect_max_wait_ms, "
        "classifier.max_wait_ms); 0: start at once with what is queued.",
    )
    connect_timeout_s: float = Field(
        20.0, gt=0, description="A session whose peer has not connected by then is closed."
    )
    disconnect_grace_s: float = Field(
        5.0, ge=0, description="A peer gone 'disconnected' this long is closed (it may come back before)."
    )
    camera_prefix: str = Field(
        "webrtc", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,40}$", description="Camera id of a session: <prefix>-<8 hex>."
    )
    max_channel_buffer_kb: int = Field(
        256, ge=1, description="Per-face messages are skipped while the data channel holds more than this."
    )
    latency_samples: int = Field(2048, ge=16, description="Recent arrival-to-send delays kept per session for p50/p95.")
    allowed_networks: list[str] = Field(
        default_factory=lambda: list(WEBRTC_NETWORKS),
        description="A visitor's ICE candidates (the addresses the server sends STUN checks and media to) must be "
                    "in one of these CIDRs: private LAN ranges by default; add the TURN server's address (or public "
                    "ranges) when ice_servers serve visitors beyond the LAN; empty: any address not refused. "
                    "Loopback, link-local, multicast, unspecified, sources.denied_networks and the Redis DeepFER "
                    "uses are refused whatever this says.")
    max_candidates: int = Field(64, ge=1, le=1000, description="Most ICE candidates one offer may carry (400 beyond).")

    @field_validator("allowed_networks")
    @classmethod
    def _cidrs(cls, values: list[str]) -> list[str]:
        return cidrs(values)


class ClusterSettings(Section):
    address: str = Field("", description="Ray cluster to run cameras on (what ray.init takes: 'auto' or the head's "
                                         "HOST:PORT); empty: this process analyses every camera.")
    num_cpus: float = Field(1.0, ge=0, description="CPUs a worker reserves on its node (also its torch threads, at "
                                                   "least 1).")
    num_gpus: float = Field(0.0, ge=0, description="GPUs a worker reserves (1: one worker per GPU; 0: CPU workers).")
    max_workers_per_node: int = Field(1, ge=0, description="Workers per node at most (0: as many as the node's "
                                                           "CPUs/GPUs allow for num_cpus/num_gpus).")
    cameras_per_worker: int = Field(4, ge=1, description="Cameras one worker analyses at most; a camera goes to the "
                                                         "worker with the most room.")
    replace_after_s: float = Field(30.0, gt=0, description="A worker that has not answered for this long is given up "
                                                           "and its cameras placed on others (one Ray reports dead: at "
                                                           "once).")
    poll_s: float = Field(2.0, gt=0, description="How often the dashboard checks workers and nodes, and refreshes "
                                                 "camera stats.")
    call_timeout_s: float = Field(30.0, gt=0, description="Longest wait for a worker to add, remove or pause a camera.")
    worker_start_timeout_s: float = Field(180.0, gt=0, description="Longest a new worker may take to start (load its "
                                                                   "models); then it is given up.")
    preview_ttl_s: float = Field(3.0, gt=0, description="Workers put a camera's annotated JPEG in Redis only while "
                                 "someone watched it within this time; the key expires after it.")
    allow_unauthenticated: bool = Field(False, description="deepfer serve --cluster refuses a Ray cluster that lets "
                                                          "in clients without its token (anyone reaching its ports "
                                                          "could run code on every node); true: a warning instead.")


def max_cameras(settings: DashboardSettings) -> int:
    """``dashboard.max_cameras``, or 4 per CPU core available to this process when it is 0."""
    if settings.max_cameras:
        return settings.max_cameras
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return 4 * max(1, cores)
