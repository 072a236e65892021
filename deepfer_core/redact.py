"""The one redaction function: every log line and answer that can hold a URL or a secret goes through ``redact``."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "***"
MIN_SECRET_LEN = 4  # shorter known secrets would mask ordinary words
_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^\s'\"<>`]*)")
_SECRET_PARAM = re.compile(r"(?i)([?&;][^=&;#\s'\"<>]*(?:pass|pwd|secret|token|key|auth|sig|cred)[^=&;#\s'\"<>]*=)"
                           r"[^&;#\s'\"<>]*")


def _url(match: re.Match[str]) -> str:
    scheme, rest = match.group(1), match.group(2)
    end = len(rest)
    for sep in "/?#":
        i = rest.find(sep)
        if i != -1:
            end = min(end, i)
    at = rest.rfind("@", 0, end)  # the last '@' of the authority, as URL parsers split user info from the host
    return scheme + (MASK + rest[at:] if at != -1 else rest)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with the user and password of every ``scheme://user:pass@host`` in it, the values of secret-looking
    query parameters (``token=``, ``password=``, ``key=``...) and every one of ``secrets`` replaced by ``***``.

    A URL is a text like any other: ``redact(url)`` is its displayable form. Safe on any string (never raises).
    """
    text = _SECRET_PARAM.sub(r"\1" + MASK, _URL.sub(_url, str(text)))
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LEN}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class RedactFilter(logging.Filter):
    """A handler filter that passes every record's message (and traceback) through ``redact``: the last line of
    defence for lines written by libraries (aiortc, redis, uvicorn) that DeepFER does not format itself."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self.secrets = tuple(secrets)

    def _clean(self, value: object) -> object:
        text = value if isinstance(value, str) else str(value)
        clean = redact(text, self.secrets)
        return value if clean == text else clean

    def filter(self, record: logging.LogRecord) -> bool:
        # message and arguments one by one: formatters such as uvicorn's access log read ``args`` by position
        record.msg = self._clean(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._clean(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: self._clean(v) for k, v in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), self.secrets)
        elif record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        return True


def install_log_redaction(secrets: Iterable[str] = ()) -> None:
    """Put a ``RedactFilter`` (knowing ``secrets``) on every handler of the root logger, replacing an earlier one."""
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactFilter)]:
            handler.removeFilter(old)
        handler.addFilter(RedactFilter(secrets))
