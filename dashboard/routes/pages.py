"""The pages (``/``, ``/demo``, ``/login``), their static files, and plotly.js and Swagger UI served from installed
packages."""

from __future__ import annotations

import html
import re
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)

from dashboard.auth import (
    COOKIE,
    LoginThrottle,
    require_token,
    sessions_of,
    signed_in,
    token_ok,
)

STATIC = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(include_in_schema=False)

LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>DeepFER sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;background:#111827;color:#e5e7eb;display:grid;place-items:center;height:100vh;margin:0}}
form{{background:#1f2937;padding:2rem;border-radius:8px;min-width:18rem}}
input{{width:100%;padding:.5rem;margin:.5rem 0 1rem;box-sizing:border-box}}
button{{padding:.5rem 1rem}}.err{{color:#f87171}}</style></head><body>
<form method="post" action="/login"><h1>DeepFER</h1><label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus>
<p class="err">{error}</p><button type="submit">Sign in</button></form></body></html>"""


def plotly_js() -> Path:
    """plotly.min.js as shipped in the installed ``plotly`` package's data (never copied into the repository)."""
    path = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    if not path.is_file():
        raise HTTPException(500, "plotly.min.js missing from the installed plotly package")
    return path


PLOTLY_STYLE_LITERAL = re.compile(r"""createElement\("style"\).{0,400}?\.textContent='([^'\\]*)'""", re.S)


def plotly_inline_styles() -> list[str]:
    """The style texts plotly.js puts into ``<style>`` elements, for the CSP to allow by hash: the empty string (its
    style rules go into an empty element through the CSSOM, which CSP does not govern) and the sheets it writes as
    literals (maplibre's, at load). A literal with escapes is not found; the page tests then report a violation."""
    path = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    return ["", *PLOTLY_STYLE_LITERAL.findall(path.read_text(encoding="utf-8"))] if path.is_file() else [""]


@router.get("/", response_class=HTMLResponse)
async def index(request: Request) -> Response:
    if not signed_in(request):
        return RedirectResponse("/login", status_code=303)
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    if not request.app.state.settings.dashboard.token:  # no token: nobody signs in, so nobody signs out
        page = page.replace(SIGN_OUT, "")
    if not request.app.state.settings.dashboard.snapshots:  # the server refuses them: not offered
        page = page.replace(SNAPSHOTS_OPTION, "")
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


SNAPSHOTS_OPTION = ('<label class="check"><input type="checkbox" name="snapshots"> Keep face snapshots (in memory)'
                    '</label>')
SIGN_OUT = '<form method="post" action="/logout"><button type="submit" class="link">Sign out</button></form>'


@router.get("/favicon.svg")
@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    """The page's icon (a small SVG), public like the login page, so no browser logs a 404 for it."""
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})


@router.get("/demo", response_class=HTMLResponse)
async def demo(request: Request) -> Response:
    """The live WebRTC demo: the visitor's webcam through the pipeline and back."""
    if not signed_in(request):
        return RedirectResponse("/login", status_code=303)
    return FileResponse(STATIC / "demo.html", media_type="text/html", headers={"Cache-Control": "no-store"})


def login_page(error: str = "") -> str:
    return LOGIN_PAGE.format(error=html.escape(error))


@router.get("/login", response_class=HTMLResponse)
async def get_login() -> HTMLResponse:
    return HTMLResponse(login_page())


@router.post("/login")
async def login(request: Request, token: str = Form("")) -> Response:
    """Sign in: a signed session in an HttpOnly cookie (never the token). Failures are counted per client address
    (``LoginThrottle``)."""
    settings = request.app.state.settings.dashboard
    throttle: LoginThrottle = request.app.state.login_throttle
    client = request.client.host if request.client else "unknown"
    if wait := throttle.retry_after(client):
        headers = {"Retry-After": str(wait)}
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(login_page(f"Too many failed sign-ins: try again in {wait} s."), 429, headers)
        return JSONResponse(
            {
                "detail": f"too many failed sign-ins from this address (dashboard.login_max_failures): "
                f"try again in {wait} s"
            },
            429,
            headers,
        )
    if not token_ok(settings.token, token):
        throttle.failed(client)
        return HTMLResponse(login_page("Wrong token." if token else "Enter the API token."), status_code=401)
    throttle.succeeded(client)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE,
        sessions_of(request.app).issue(),
        max_age=settings.cookie_max_age_s,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Sign out: the session is revoked on the server too, so a copy of the cookie stops working."""
    sessions_of(request.app).revoke(request.cookies.get(COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


@router.get("/vendor/plotly.min.js", dependencies=[Depends(require_token)])
async def vendor_plotly() -> FileResponse:
    return FileResponse(plotly_js(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})


SWAGGER_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon.png": "image/png"}


@router.get("/vendor/swagger/{name}", dependencies=[Depends(require_token)])
async def vendor_swagger(name: str) -> FileResponse:
    """Swagger UI 5 for /docs, from the installed ``fastapi-offline`` package's static files (no CDN: works offline)."""
    if name not in SWAGGER_FILES:
        raise HTTPException(404, f"no Swagger UI file {name!r}")
    path = Path(str(resources.files("fastapi_offline") / "static" / name))
    if not path.is_file():
        raise HTTPException(500, f"{name} missing from the installed fastapi-offline package")
    return FileResponse(path, media_type=SWAGGER_FILES[name], headers={"Cache-Control": "public, max-age=86400"})


@router.get("/static/{name}", dependencies=[Depends(require_token)])
async def static_file(name: str) -> FileResponse:
    path = STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise HTTPException(404, f"no static file {name!r}")
    types = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
    return FileResponse(path, media_type=types.get(path.suffix, "application/octet-stream"))
