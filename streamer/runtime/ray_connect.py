"""Joining the Ray cluster at ``cluster.address`` as a driver: ``connect``, with one-line ``ClusterError``s for what
can go wrong (Ray missing, nobody listening, a bad address)."""

from __future__ import annotations

import logging

from core.settings import Settings


class ClusterError(RuntimeError):
    """The cluster cannot be used (Ray missing, address unreachable); the message says what to do."""


def connect(settings: Settings) -> None:
    """Join the Ray cluster at ``cluster.address`` as a driver (once per process); ``ClusterError`` in one line."""
    address = settings.cluster.address
    _probe(address)
    _token_mode()
    try:
        import ray
    except ImportError:
        raise ClusterError("cluster mode needs Ray: pip install 'deepfer[cluster]'") from None
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, namespace=f"deepfer-{settings.redis.key_prefix}", logging_level=logging.WARNING,
                 configure_logging=False)
    except Exception as exc:  # ConnectionError, or ValueError for a bad address
        raise ClusterError(
            f"cannot join the Ray cluster at {address!r}: {exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''} (start one with `ray start --head`)"
        ) from None


def _token_mode() -> None:
    """Ray (2.5x+) heads require a token by default, but a driver joining one sends it only in token mode: turn that
    on when a token is at hand (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``)."""
    import os
    import sys
    from pathlib import Path

    if "RAY_AUTH_MODE" in os.environ or "ray" in sys.modules:  # Ray reads it once, at import (re-reading its
        return  # config later breaks a running driver); a process that already runs a cluster has its mode
    if (
        os.environ.get("RAY_AUTH_TOKEN")
        or os.environ.get("RAY_AUTH_TOKEN_PATH")
        or (Path.home() / ".ray" / "auth_token").is_file()
    ):
        os.environ["RAY_AUTH_MODE"] = "token"


def _probe(address: str) -> None:
    """A HOST:PORT nobody listens on fails here in seconds (``ray.init`` would retry for minutes)."""
    import socket

    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ClusterError(
            f"cluster address {address!r} is not 'auto' or HOST:PORT (the head's GCS port, 6379 by default)"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=3.0):
            pass
    except OSError as exc:
        raise ClusterError(
            f"no Ray head answers at {address} ({exc.__class__.__name__}); start one with "
            f"`ray start --head` there, or check the address"
        ) from None
