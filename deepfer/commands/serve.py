"""The dashboard and its API."""

from __future__ import annotations

import typer

from deepfer.common import say, settings_from, user_errors
from deepfer.options import Weights

app = typer.Typer()


@app.command()
@user_errors
def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(
        None, help="Address to bind (default: dashboard.host, 127.0.0.1). Anything but loopback needs a token."
    ),
    port: int | None = typer.Option(None, min=0, max=65535, help="Port (default: dashboard.port, 8000)."),
    token: str | None = typer.Option(None, help="API token (default: dashboard.token or $DEEPFER_DASHBOARD__TOKEN)."),
    redis_url: str | None = typer.Option(
        None, "--redis", help="Redis URL (default: redis.url, else 127.0.0.1:6379, else an embedded one)."
    ),
    weights: Weights = None,
    tls_cert: str | None = typer.Option(
        None,
        help="PEM certificate: serve HTTPS (browsers give the live demo a camera only over HTTPS or on localhost).",
    ),
    tls_key: str | None = typer.Option(None, help="PEM private key of --tls-cert."),
    cluster: str | None = typer.Option(
        None,
        help="Run cameras on the Ray cluster at this address ('auto' or HEAD:PORT; default: cluster.address, "
        "empty: in this process).",
    ),
) -> None:
    """Start the dashboard and its API: cameras, live preview, people, metrics, image upload, the live WebRTC demo."""
    from dashboard.server import serve as run_server

    settings = settings_from(
        ctx,
        dashboard=dict(host=host, port=port, token=token, tls_cert=tls_cert, tls_key=tls_key),
        redis=dict(url=redis_url),
        classifier=dict(weights=weights),
        cluster=dict(address=cluster),
    )
    run_server(settings, say)
