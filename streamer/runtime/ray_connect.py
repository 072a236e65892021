"""Joining the Ray cluster at ``cluster.address`` as a driver: ``connect``, with one-line ``ClusterError``s for what
can go wrong (Ray missing, nobody listening, a bad address); ``check_auth``: whether the cluster lets in clients
without its token (Ray's default: anyone who reaches the head's ports can run code on every node)."""

from __future__ import annotations

import logging
import os
import selectors
import subprocess
import sys
import tempfile
import time

from deepfer_core.settings import Settings

log = logging.getLogger(__name__)

# Joins the cluster as a client without any token (no RAY_AUTH_*, an empty HOME: no ~/.ray/auth_token); prints
# "joined" when the cluster lets it in. A cluster in token mode answers "Unauthenticated" within a second.
_PROBE = ("import logging, sys, ray; ray.init(address=sys.argv[1], logging_level=logging.ERROR, "
          "configure_logging=False); print('joined', flush=True)")


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


def check_auth(settings: Settings, timeout_s: float = 20.0) -> bool:
    """Whether the cluster at ``cluster.address`` lets in a client without its token: then ``ClusterError``
    (``cluster.allow_unauthenticated`` false, the default), or a loud warning and True. False when it refuses one, or
    answers neither way within ``timeout_s`` (``connect`` then says why it cannot join)."""
    address = settings.cluster.address
    _probe(address)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "PYTHONSTARTUP"))}
    with tempfile.TemporaryDirectory(prefix="deepfer-ray-probe") as home:
        env["HOME"] = home
        proc = subprocess.Popen([sys.executable, "-c", _PROBE, address], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        verdict = None
        seen = b""
        deadline = time.monotonic() + timeout_s
        try:
            assert proc.stdout is not None
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                while verdict is None and (left := deadline - time.monotonic()) > 0:
                    if not sel.select(min(left, 0.5)):
                        continue
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    if not chunk:
                        break  # it exited: neither joined nor refused (connect says why)
                    seen = seen[-4096:] + chunk
                    if b"joined" in seen:
                        verdict = "open"
                    elif b"Unauthenticated" in seen or b"InvalidAuthToken" in seen:
                        verdict = "token"
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
    if verdict != "open":
        return False
    message = (f"the Ray cluster at {address} lets in clients without a token: anyone who reaches its ports can run "
               "code on every node. Start its head and nodes with RAY_AUTH_MODE=token and the token in "
               "~/.ray/auth_token (docs/cluster.md), or set cluster.allow_unauthenticated = true")
    if not settings.cluster.allow_unauthenticated:
        raise ClusterError(message)
    log.warning("SECURITY: %s (it is: running anyway)", message.split(". Start")[0])
    return True


def _token_mode() -> None:
    """A Ray head checks tokens only when started in token mode (``RAY_AUTH_MODE=token``; not the default), and a
    driver joining such a head sends its token only in token mode too: turn that on when a token is at hand
    (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``)."""
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
