"""One way to show a URL safely: every log line and answer that can hold a URL passes it through here."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_SECRET_PARAMS = re.compile(r"pass|pwd|secret|token|key|auth|sig|cred", re.I)
_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@", re.I)


def redact(url: str) -> str:
    """``url`` with user, password and secret-looking query values replaced by ``***``; safe to log or show."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _USERINFO.sub(r"\1***@", url)
    if not parts.scheme or len(parts.scheme) == 1:  # a plain path (or a Windows drive letter)
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if _SECRET_PARAMS.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub(text: str, url: str) -> str:
    """An error message with the raw URL (and any other ``scheme://user:pass@``) replaced by its redacted form."""
    return _USERINFO.sub(r"\1***@", text.replace(url, redact(url)))
