"""The dashboard's FastAPI application: ``create_app(settings)``.

Start-up (lifespan): find or start Redis (``connect_or_start``) and load the detector and classifier, unless
``deepfer serve`` did and passed them in; start the pipeline of ``streamer.assembly.build_stored_pipeline`` (a
``RedisSink`` and an in-memory ``PreviewSink``), restore the cameras saved in Redis.
Shut-down stops the pipeline (flushing Redis) and any embedded redis-server.
In front of the routes, ``security.Gate`` refuses bad hosts, cross-site changes, missing tokens and oversized bodies
before any body is read, and ``security.SecurityHeaders`` adds the CSP and its companions to every answer.
"""

from __future__ import annotations

import asyncio
import logging
import re
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from redis.exceptions import RedisError

from dashboard.auth import LoginThrottle, require_token
from dashboard.routes import (
    alerts,
    cameras,
    downloads,
    health,
    live,
    metrics,
    pages,
    people,
    predict,
    prometheus,
    visits,
    webrtc,
)
from dashboard.schemas import Problem
from dashboard.security import (
    Gate,
    SecurityHeaders,
    content_security_policy,
    inline_blocks,
)
from dashboard.service import Service
from dashboard.uploads import UploadPool
from deepfer_core.settings import Settings
from streamer.assembly import Models

log = logging.getLogger(__name__)

DESCRIPTION = """Real-time facial emotion analytics. Every route except `/health` and `/login` needs the API token
(`Authorization: Bearer <token>`, the login cookie, or `?token=`) when one is configured."""


class HideTokenInAccessLog(logging.Filter):
    """uvicorn's access log shows query strings: ``?token=...`` (EventSource, MJPEG) is written as ``token=***``."""

    PATTERN = re.compile(r"(?i)([?&]token=)[^&\s]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.PATTERN.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        return True


def create_app(
    settings: Settings | None = None, models: Models | None = None, redis_url: str | None = None
) -> FastAPI:
    """``models``/``redis_url``: loaded and found already (``deepfer serve``); else the start-up does it."""
    settings = settings or Settings()
    d = settings.dashboard
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, HideTokenInAccessLog) for f in access.filters):
        access.addFilter(HideTokenInAccessLog())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service = Service(settings, models, redis_url)
        app.state.service = service
        app.state.uploads = UploadPool(d.predict_workers, d.predict_queue)
        app.state.loop = asyncio.get_running_loop()  # lets tests and tools inspect the server's tasks from outside
        try:
            await service.start()
            yield
        finally:
            app.state.uploads.close()
            await service.stop()

    # the spec and the docs need the token too: FastAPI's own routes for them are replaced by protected ones
    app = FastAPI(title="DeepFER", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.login_throttle = LoginThrottle(d.login_max_failures, d.login_window_s)
    protected = [Depends(require_token)]
    # built once: the CSP allows exactly its inline start-up script by hash
    docs_body = get_swagger_ui_html(openapi_url="/openapi.json", title="DeepFER API",
                                    swagger_js_url="/vendor/swagger/swagger-ui-bundle.js",
                                    swagger_css_url="/vendor/swagger/swagger-ui.css",
                                    swagger_favicon_url="/vendor/swagger/favicon.png").body
    docs_page = bytes(docs_body).decode()

    @app.get("/openapi.json", include_in_schema=False, dependencies=protected)
    async def openapi_spec() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=protected)
    async def docs() -> HTMLResponse:
        return HTMLResponse(docs_page)
    app.include_router(health.router)
    app.include_router(pages.router)
    errors: dict[int | str, dict[str, Any]] = {
              400: {"model": Problem, "description": "A value that cannot be used (or a Host not in allowed_hosts)"},
              401: {"model": Problem, "description": "Missing or wrong API token"},
              403: {"model": Problem, "description": "A change asked by another site's page (Origin, Sec-Fetch-Site)"},
              404: {"model": Problem, "description": "Unknown camera or person"},
              413: {"model": Problem, "description": "Body over dashboard.max_json_kb (max_upload_mb for uploads)"},
              503: {"model": Problem, "description": "Redis is unavailable"}}
    for module in (predict, cameras, people, metrics, downloads, live, prometheus, webrtc, alerts, visits):
        app.include_router(module.router, dependencies=protected, responses=errors)
    # plain ASGI, outermost last: the headers go on every answer, Gate's refusals included
    app.add_middleware(Gate, settings=d)
    csp = content_security_policy(scripts=inline_blocks(docs_page, "script"),
                                  styles=[*inline_blocks(pages.login_page(), "style"), *pages.plotly_inline_styles()])
    app.add_middleware(SecurityHeaders, csp=csp, hsts_max_age_s=d.hsts_max_age_s)

    @app.exception_handler(RedisError)
    async def redis_down(request: Request, exc: RedisError) -> JSONResponse:
        """Redis unreachable mid-request: 503 with the reason (the pipeline keeps buffering points meanwhile)."""
        log.warning("%s %s: Redis error %s", request.method, request.url.path, exc.__class__.__name__)
        return JSONResponse(
            {"detail": f"Redis is unavailable ({exc.__class__.__name__}); try again shortly"}, status_code=503
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 with one readable reason first, then FastAPI's usual list."""
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        reason = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")
        return JSONResponse(
            {"detail": reason, "errors": [{k: e.get(k) for k in ("loc", "msg", "type")} for e in errors]},
            status_code=422,
        )

    return app
