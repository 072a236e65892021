"""``deepfer serve``: check what can fail before the server starts, find or start Redis, then run uvicorn."""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Callable
from typing import Any

from dashboard.slow_clients import uvicorn_options
from deepfer_core.redact import RedactFilter, redact
from deepfer_core.settings import Settings, secret_values


class ServeError(ValueError):
    """The server cannot start; the message says why in one line."""


def serve(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Run the dashboard until Ctrl-C. A missing or broken model, an unusable TLS pair or no Redis fail here in one
    line, not in the server's start-up; the models and Redis found here are the app's (loaded and connected once).
    ``say`` gets the Redis in use and the address to open."""
    import uvicorn

    from aggregator.embedded_redis import connect_or_start
    from dashboard.app import create_app
    from streamer.assembly import check_events_out, load_models

    check_port(settings.dashboard.host, settings.dashboard.port)  # first: before the models load, before any banner
    models = load_models(settings)  # once, here, so a missing or broken weights file fails in one line
    d = settings.dashboard
    if d.tls_cert:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(d.tls_cert, d.tls_key)
        except (ssl.SSLError, OSError) as exc:
            raise ServeError(f"cannot use the TLS certificate {d.tls_cert} with key {d.tls_key}: {exc}") from None
    url, embedded = connect_or_start(settings)
    settings = settings.model_copy(update={"redis": settings.redis.model_copy(update={"url": url})})
    try:
        check_events_out(settings, url)  # a refused broker or webhook address: one line, before the server starts
    except ValueError as exc:
        if embedded is not None:
            embedded.stop()
        raise ServeError(str(exc)) from None
    if settings.cluster.address:
        from streamer.runtime.ray_connect import ClusterError, check_auth, connect

        try:
            if check_auth(settings):  # a cluster without token auth: refused, or (allowed) said loudly
                say(f"WARNING: the Ray cluster at {settings.cluster.address} lets in clients without a token "
                    "(cluster.allow_unauthenticated)")
            connect(settings)  # joins once here, so an unreachable cluster is one line, not a failed start-up
        except ClusterError as exc:
            if embedded is not None:
                embedded.stop()
            raise ServeError(str(exc)) from None
        say(f"Cameras run on the Ray cluster at {settings.cluster.address}")
    say(f"Redis: {redact(url)}" + (f" (embedded, data in {embedded.dir})" if embedded else ""))
    shown = f"[{d.host}]" if ":" in d.host else d.host
    scheme = "https" if d.tls_cert else "http"
    say(
        f"DeepFER dashboard on {scheme}://{shown}:{d.port}/ (live demo: /demo)"
        + (" (API token required)" if d.token else "")
    )
    tls: dict[str, Any] = {"ssl_certfile": d.tls_cert, "ssl_keyfile": d.tls_key} if d.tls_cert else {}
    try:
        uvicorn.run(
            create_app(settings, models, url),
            host=d.host,
            port=d.port,
            log_level="info",
            timeout_graceful_shutdown=5,
            proxy_headers=False,  # X-Forwarded-*: only from dashboard.trusted_proxies, validated (security.Gate)
            log_config=uvicorn_log_config(secret_values(settings)),
            **uvicorn_options(d),  # deadlines on slow and idle clients, a connection cap (dashboard.slow_clients)
            **tls,
        )
    finally:
        if embedded is not None:
            embedded.stop()


def check_port(host: str, port: int) -> None:
    """A ServeError when ``host:port`` cannot be bound (in use, or not an address of this machine), so that a busy
    port is one line before anything is printed, not uvicorn's error after the banner. Port 0 (any) always works."""
    if port == 0:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
            sock.bind(address)
    except OSError as exc:
        busy = exc.errno == errno.EADDRINUSE
        reason = "it is in use (another server is running there?)" if busy else (exc.strerror or str(exc))
        raise ServeError(f"cannot listen on {host}:{port}: {reason}; choose another with --port") from None


def uvicorn_log_config(secrets: list[str]) -> dict[str, Any]:
    """uvicorn's own logging set-up, with its handlers (which do not go through the root logger) redacted too."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact"] = {"()": RedactFilter, "secrets": secrets}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact")
    return config
