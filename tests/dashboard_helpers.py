"""The dashboard under a real uvicorn, ``deepfer serve`` in a process of its own, and the headless Chromium the page
tests drive (shared by the page and server tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn

from dashboard.slow_clients import uvicorn_options
from deepfer_core.settings import Settings
from tests.conftest import MEDIA

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page

TOKEN = "test-token-5f2c-9a7e1d"  # dashboard.token needs at least 16 characters
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CAMERA = "woman2"


def dashboard_settings(weights: Path, redis_url: str, prefix: str, data_dir: Path, port: int,
                       sources: dict | None = None, **dashboard) -> Settings:
    """Test settings; the shared media folder is the API's media folder (``sources.media_dirs``) unless ``sources``
    says otherwise."""
    # detect every 4th frame: woman2's 464 frames cost ~116 detector calls (about 10 s on 2 cores)
    return Settings(classifier={"weights": str(weights), "device": "cpu"},
                    detector={"device": "cpu", "detect_every": 4, "threads": 1},
                    redis={"url": redis_url, "key_prefix": prefix, "points_per_s": 5.0},
                    sources={"media_dirs": [str(MEDIA)], **(sources or {})},
                    paths={"data_dir": data_dir}, dashboard={"port": port, "token": TOKEN, **dashboard})


class LiveServer:
    """``create_app(settings)`` under a real uvicorn in a thread (lifespan included), over TLS when configured."""

    def __init__(self, settings: Settings):
        from dashboard.app import create_app

        d = settings.dashboard
        self.url = f"{'https' if d.tls_cert else 'http'}://127.0.0.1:{d.port}"
        self.app = create_app(settings)
        tls = {"ssl_certfile": d.tls_cert, "ssl_keyfile": d.tls_key} if d.tls_cert else {}
        config = uvicorn.Config(self.app, host="127.0.0.1", port=d.port, log_level="warning",
                                timeout_graceful_shutdown=3, proxy_headers=False, **uvicorn_options(d),
                                **tls)  # as dashboard.server
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            assert self.thread.is_alive(), "the dashboard did not start (see the log above)"
            assert time.monotonic() < deadline, "the dashboard did not start within 120 s"
            time.sleep(0.1)
        return self

    def call(self, fn, timeout: float = 30):
        """Run ``fn()`` on the server's event loop (to look at its tasks and service from the test's thread)."""
        import asyncio

        async def run():
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.app.state.loop).result(timeout)

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        assert not self.thread.is_alive(), "the dashboard did not stop within 60 s"


@dataclass
class ServedProcess:
    url: str  # http(s)://127.0.0.1:<port>, no trailing slash
    port: int
    proc: subprocess.Popen
    log: Path  # its stdout and stderr together

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def served_process(args: Sequence[str], env: dict[str, str], port: int, log: Path, cwd: Path | None = None,
                   tls: bool = False, start_timeout_s: float = 120, stop_timeout_s: float = 60,
                   ) -> Iterator[ServedProcess]:
    """``deepfer serve --port PORT *args`` in its own process, in an environment without the caller's
    ``DEEPFER_*`` (plus ``env``), its output in ``log``; yields once ``/health`` answers 200. A process that exits
    or does not answer within ``start_timeout_s`` fails the test with the tail of its output. At the end: SIGINT
    (Ctrl-C, a clean stop: ``proc.returncode`` is then the exit status), killed if still running after
    ``stop_timeout_s``, always reaped."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFER_")} | {"PYTHONUNBUFFERED": "1"} | env
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "deepfer", "serve", "--port", str(port), *args], cwd=cwd,
                                env=environ, stdout=out, stderr=subprocess.STDOUT)
    served = ServedProcess(f"{'https' if tls else 'http'}://127.0.0.1:{port}", port, proc, log)
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                if httpx.get(f"{served.url}/health", timeout=2, verify=not tls).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise AssertionError(f"deepfer serve exited ({proc.returncode}) before answering:\n"
                                     f"{served.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"deepfer serve did not answer /health within {start_timeout_s:g} s:\n"
                                     f"{served.output()[-3000:]}")
            time.sleep(0.3)
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(stop_timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def require_chromium() -> ModuleType:
    """``playwright.sync_api``, or skip the test: without Playwright, or without Debian's chromium at ``CHROMIUM``.
    (The browser helpers below check too; a test with costly set-up first calls this before it.)"""
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    return playwright


@contextmanager
def chromium_page(*, console: Callable[[ConsoleMessage], str | None] | None = None,
                  **context: Any) -> Iterator[tuple[Page, list[str]]]:
    """A page in a fresh headless Chromium (``CHROMIUM_ARGS``), in a context made with ``context`` (Playwright's
    ``new_context`` options: ``viewport``, ``timezone_id``, ``locale``, ``accept_downloads``; ``page.context`` is
    that context), and the list its errors go to: every uncaught page error, and the console messages ``console``
    turns into text (``None``: not one). The browser is closed at the end. Skips as ``require_chromium``."""
    playwright = require_chromium()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_context(**context).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            if console is not None:
                describe = console

                def record(message: ConsoleMessage) -> None:
                    if (text := describe(message)) is not None:
                        errors.append(text)

                page.on("console", record)
            yield page, errors
        finally:
            browser.close()


def sign_in(page: Page, url: str) -> None:
    """Sign in through ``url``/login with ``TOKEN`` and wait for the dashboard page at ``url``/."""
    page.goto(f"{url}/login")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")


@contextmanager
def signed_in_page(url: str, *, before: Callable[[Page], object] | None = None,
                   console: Callable[[ConsoleMessage], str | None] | None = None,
                   **context: Any) -> Iterator[tuple[Page, list[str]]]:
    """``chromium_page(console=console, **context)`` signed in to the dashboard at ``url`` (``url`` without a
    trailing slash) with ``TOKEN``, on the dashboard page; ``before(page)`` runs first, before the page's first
    request (to listen from the start)."""
    with chromium_page(console=console, **context) as (page, errors):
        if before is not None:
            before(page)
        sign_in(page, url)
        yield page, errors


def wait_for_js(page, expression: str, timeout: float = 30_000) -> None:
    """``page.wait_for_function(expression)`` under the dashboard's Content-Security-Policy: Playwright evaluates a
    string predicate with ``eval`` inside the page, which the CSP refuses (no 'unsafe-eval'); ``page.evaluate`` goes
    through the DevTools protocol, outside the page's CSP. Polls every 100 ms; ``timeout`` in milliseconds."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"not true within {timeout / 1000:g} s: {expression}"
        time.sleep(0.1)
