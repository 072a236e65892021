"""Camera URLs parsed, checked and rebuilt from their parts before anything reaches FFmpeg.

FFmpeg does not validate what it is given: it writes the path and query of an ``rtsp://`` URL verbatim into its
request line (so a raw CR/LF starts new request lines: command smuggling into whatever listens at host:port), and it
percent-decodes the user name into a Digest ``Authorization`` header (so ``%0d%0a`` there does the same; measured
with FFmpeg 8.1 in PyAV 18.1). Python's ``urlsplit`` silently drops tabs and CR/LF, so a URL that looks clean once
parsed may not be. FFmpeg does not decode escapes in the path or query (they go out as written), but the camera
server at the other end may, so escaped control characters are refused everywhere, not only in the user info.
Hence: the raw text is checked first (printable ASCII only, no whitespace, every ``%`` a valid escape, no escaped
control character), then split, each part checked, and the URL handed on is rebuilt from the parts (user info
re-encoded byte for byte, host normalised, odd characters in path and query escaped).

Error messages never repeat the URL: a URL that fails to parse cannot be reliably redacted.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, quote_from_bytes, unquote_to_bytes, urlsplit

LIVE_SCHEMES = {"rtsp": 554, "rtsps": 322}
WEBCAM = re.compile(r"[0-9]{1,4}|/dev/video[0-9]{1,4}")
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]*")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL_ESCAPE = re.compile(r"%(?:[01][0-9A-Fa-f]|7[Ff])")
_HOSTNAME = re.compile(r"(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                       r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?")
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"  # RFC 3986 pchar and '/', and '%' (escapes are kept, validated above)
_QUERY_SAFE = _PATH_SAFE + "?"

SourceKind = Literal["file", "rtsp", "webcam"]


class SourceError(ValueError):
    """A source that cannot be used at all (missing file, not a video, unknown URI); the message says why."""


@dataclass(frozen=True)
class CameraUrl:
    """An ``rtsp://`` or ``rtsps://`` URL as its checked parts. ``url`` rebuilds it; ``with_host`` swaps the host
    (a pinned IP address) and keeps everything else."""

    scheme: str
    user: bytes | None
    password: bytes | None
    host: str  # a lower-case host name or an IP address (IPv6 without brackets)
    port: int | None  # as given; ``effective_port`` fills in the scheme's default
    path: str
    query: str

    @property
    def effective_port(self) -> int:
        return self.port or LIVE_SCHEMES[self.scheme]

    def with_host(self, host: str) -> CameraUrl:
        return CameraUrl(self.scheme, self.user, self.password, host, self.port, self.path, self.query)

    @property
    def url(self) -> str:
        netloc = ""
        if self.user is not None:
            netloc = quote_from_bytes(self.user, safe="")
            if self.password is not None:
                netloc += ":" + quote_from_bytes(self.password, safe="")
            netloc += "@"
        netloc += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            netloc += f":{self.port}"
        return f"{self.scheme}://{netloc}{self.path}" + (f"?{self.query}" if self.query else "")


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def source_kind(uri: str) -> SourceKind:
    """What ``uri`` names: a network camera, a webcam (``/dev/videoN`` or an index) or a video file."""
    head, sep, _ = uri.partition("://")
    scheme = head.lower() if sep else ""
    if scheme in LIVE_SCHEMES:
        return "rtsp"
    if WEBCAM.fullmatch(uri):
        return "webcam"
    if scheme in ("", "file") or len(scheme) == 1:  # a path (a Windows drive letter looks like a scheme)
        return "file"
    raise SourceError("unsupported source: use rtsp:// or rtsps://, a video file, /dev/videoN or a webcam index")


def parse_camera_url(text: str) -> CameraUrl:
    """Check an ``rtsp://``/``rtsps://`` URL and split it into parts; ``SourceError`` with one reason otherwise."""
    if not _PRINTABLE_ASCII.fullmatch(text):
        raise SourceError("camera URL has whitespace, control or non-ASCII characters (percent-encode them, "
                          "e.g. %20 for a space in a password)")
    if _BAD_ESCAPE.search(text):
        raise SourceError("camera URL has a '%' that is not followed by two hex digits (write %25 for a '%')")
    if _CONTROL_ESCAPE.search(text):
        raise SourceError("camera URL has a percent-encoded control character (%00-%1F, %7F)")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise SourceError("camera URL is malformed (host or port cannot be read)") from None
    scheme = parts.scheme.lower()
    if scheme not in LIVE_SCHEMES:
        raise SourceError("camera URL scheme must be rtsp:// or rtsps://")
    if parts.fragment or "#" in text:
        raise SourceError("camera URL has a '#' fragment (percent-encode '#' in a password as %23)")
    if port == 0:
        raise SourceError("camera URL port must be 1-65535")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user = password = None
    if at:
        raw_user, colon, raw_password = userinfo.partition(":")
        user = unquote_to_bytes(raw_user)
        password = unquote_to_bytes(raw_password) if colon else None
    host = parts.hostname or ""
    if hostport.startswith("["):
        ip = _ip(host)
        if ip is None or ip.version != 6 or ip.scope_id:  # a zone id (fe80::1%25eth0) names a local interface
            raise SourceError("camera URL has an invalid IPv6 address")
    elif _ip(host) is None and not _HOSTNAME.fullmatch(host):
        raise SourceError("camera URL has no valid host name or IP address")
    ip = _ip(host)
    host = str(ip) if ip is not None else host.rstrip(".").lower()
    path = quote(parts.path, safe=_PATH_SAFE)
    query = quote(parts.query, safe=_QUERY_SAFE)
    return CameraUrl(scheme, user, password, host, port, path, query)
