"""The dashboard's HTTP layer under attack (issue 11), against the real server: a real uvicorn (``LiveServer``) or a
``deepfer serve`` subprocess, the machine's Redis, raw sockets for chunked bodies, psutil on the server process for
its memory, and headless Debian Chromium for the browser's side (cross-origin pages, DNS rebinding, the CSP)."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
from typer.testing import CliRunner

from deepfer.cli import app as cli
from tests.dashboard_helpers import (
    AUTH,
    CHROMIUM,
    CHROMIUM_ARGS,
    TOKEN,
    LiveServer,
    dashboard_settings,
    served_process,
)
from tests.redis_helpers import free_port, unique_prefix

pytestmark = pytest.mark.timeout(300)
MB = 2**20


# ----- servers -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tiny_checkpoint, redis_url, tmp_path_factory):
    """A token, a 1 MB upload limit, one upload worker with one waiting place, 3 sign-in failures per 4 s."""
    with unique_prefix(redis_url, "test-guard") as prefix:
        settings = dashboard_settings(tiny_checkpoint, redis_url, prefix, tmp_path_factory.mktemp("guard"), free_port(),
                                      max_upload_mb=1, predict_workers=1, predict_queue=1,
                                      login_max_failures=3, login_window_s=4)
        with LiveServer(settings) as live:
            yield live


@pytest.fixture(scope="module")
def open_server(tiny_checkpoint, redis_url, tmp_path_factory):
    """No token, on loopback (the default): only the Host and Origin checks stand between it and other web pages."""
    with unique_prefix(redis_url, "test-open") as prefix:
        settings = dashboard_settings(tiny_checkpoint, redis_url, prefix, tmp_path_factory.mktemp("open"), free_port(),
                                      token="", allowed_hosts=["dash.shop.lan", "*.cams.lan"])
        with LiveServer(settings) as live:
            yield live


@dataclass
class Served:
    url: str
    proc: subprocess.Popen
    tmpdir: Path
    log: Path


@pytest.fixture(scope="module")
def served(tiny_checkpoint, redis_url, tmp_path_factory):
    """``deepfer serve`` in its own process (its memory measurable alone), with a token and a private TMPDIR."""
    root = tmp_path_factory.mktemp("served")
    (root / "tmp").mkdir()
    with unique_prefix(redis_url, "test-served") as prefix:
        env = {"DEEPFER_DASHBOARD__TOKEN": TOKEN, "TMPDIR": str(root / "tmp"), "DEEPFER_REDIS__KEY_PREFIX": prefix,
               "DEEPFER_PATHS__DATA_DIR": str(root / "data"), "DEEPFER_CLASSIFIER__DEVICE": "cpu",
               "DEEPFER_DETECTOR__DEVICE": "cpu", "DEEPFER_DETECTOR__THREADS": "1"}
        with served_process(["--weights", str(tiny_checkpoint), "--redis", redis_url], env, free_port(),
                            root / "serve.log") as s:
            yield Served(s.url, s.proc, root / "tmp", s.log)


# ----- raw HTTP: chunked bodies of any size, the answer read whenever it comes -------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes written before the answer was seen (all of them when it came at the end)

    def detail(self) -> str:
        return json.loads(self.body)["detail"]


def post_chunked(url: str, path: str, total: int, *, first: bytes = b"", content_type: str = "application/json",
                 headers: dict[str, str] | None = None, chunk: int = 64 * 1024, wait_first_s: float = 0.0,
                 keep_sending: bool = False) -> Answer:
    """POST ``first`` and filler up to ``total`` bytes with ``Transfer-Encoding: chunked`` (no Content-Length).

    ``wait_first_s``: wait that long for an answer after the headers before sending any body. ``keep_sending``: send
    the whole body even when an answer came early (an attacker does); else stop at the first byte of the answer."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=120)
    try:
        head = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", "Transfer-Encoding: chunked",
                f"Content-Type: {content_type}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sent, filler = 0, b"x" * chunk
        answered = bool(wait_first_s) and bool(select.select([sock], [], [], wait_first_s)[0])
        try:
            while sent < total and not answered:
                piece = (first + filler)[:chunk] if sent == 0 else filler[: total - sent]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
                answered = not keep_sending and bool(select.select([sock], [], [], 0)[0])
            if not answered:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = http.client.HTTPResponse(sock, method="POST")
        response.begin()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read(), sent)
    finally:
        sock.close()


def multipart_head(name: str = "big.jpg") -> tuple[bytes, str]:
    return (b'--B0UNDARY\r\nContent-Disposition: form-data; name="file"; filename="' + name.encode() +
            b'"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\xff', "multipart/form-data; boundary=B0UNDARY")


class Watch(threading.Thread):
    """Samples a process's resident memory (peak over the baseline) and any file it opens under ``dir``."""

    def __init__(self, pid: int, dir: Path | None = None):
        super().__init__(daemon=True)
        self.process, self.dir = psutil.Process(pid), dir
        self.baseline = self.peak = self.process.memory_info().rss
        self.files: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            if self.dir is not None:  # O_TMPFILE spool files have no name: look at the open descriptors
                for fd in Path(f"/proc/{self.process.pid}/fd").iterdir():
                    try:
                        target = os.readlink(fd)
                    except OSError:
                        continue
                    if target.startswith(str(self.dir)):
                        self.files.add(target)
            time.sleep(0.01)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / MB

    def __enter__(self) -> Watch:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join(5)


# ----- 1. bodies: counted as received, the token checked before any is read ----------------------------------------


def test_a_chunked_body_without_the_token_is_refused_before_any_of_it_is_read(guarded):
    for path, (first, ctype) in (("/api/cameras", (b'{"id": "x", "url": "', "application/json")),
                                 ("/api/predict", multipart_head())):
        answer = post_chunked(guarded.url, path, 32 * MB, first=first, content_type=ctype, wait_first_s=3)
        assert answer.status == 401 and "missing API token" in answer.detail(), (path, answer)
        assert answer.sent == 0, f"{path}: answered only after {answer.sent} body bytes"
        assert answer.headers["www-authenticate"] == "Bearer"
    wrong = post_chunked(guarded.url, "/api/cameras", 32 * MB, headers={"Authorization": "Bearer wrong-token-of-20-ch"},
                         wait_first_s=3)
    assert wrong.status == 401 and "wrong API token" in wrong.detail() and wrong.sent == 0


def test_a_chunked_json_body_over_max_json_kb_is_413_as_soon_as_it_is_over(guarded):
    answer = post_chunked(guarded.url, "/api/cameras", 16 * MB, first=b'{"id": "big", "url": "', headers=AUTH)
    assert answer.status == 413 and "dashboard.max_json_kb" in answer.detail(), answer
    assert answer.sent < 16 * MB, "the whole body was read before the answer"
    # a declared Content-Length over the limit is refused without reading either
    declared = httpx.post(f"{guarded.url}/api/cameras", headers=AUTH, content=b"{" + b" " * 200_000 + b"}")
    assert declared.status_code == 413 and "dashboard.max_json_kb" in declared.json()["detail"]
    # the login form is held to the same small limit
    login = httpx.post(f"{guarded.url}/login", data={"token": "x" * 200_000})
    assert login.status_code == 413
    assert httpx.get(f"{guarded.url}/api/cameras", headers=AUTH).json() == []  # nothing was added meanwhile


def test_a_chunked_upload_over_max_upload_mb_is_413_before_the_rest_is_spooled(guarded):
    first, ctype = multipart_head()
    answer = post_chunked(guarded.url, "/api/predict", 64 * MB, first=first, content_type=ctype, headers=AUTH,
                          chunk=256 * 1024)
    assert answer.status == 413 and "dashboard.max_upload_mb" in answer.detail(), answer
    assert answer.sent < 64 * MB, "the whole upload was spooled before the answer"


def test_streaming_200_mb_without_the_token_does_not_grow_the_server(served):
    httpx.post(f"{served.url}/api/cameras", json={})  # warm: the first request imports lazily
    with Watch(served.proc.pid) as watch:
        answer = post_chunked(served.url, "/api/cameras", 200 * MB, first=b'{"id": "x", "url": "', chunk=MB,
                              keep_sending=True)
    print(f"server RSS growth while a 200 MB chunked JSON body streamed in without a token: {watch.growth_mb:.1f} MB")
    assert watch.growth_mb < 40
    assert answer.status == 401 and answer.sent == 200 * MB


def test_a_1_gb_chunked_upload_without_the_token_never_reaches_disk(served):
    first, ctype = multipart_head()
    with Watch(served.proc.pid, served.tmpdir) as watch:
        answer = post_chunked(served.url, "/api/predict", 1024 * MB, first=first, content_type=ctype, chunk=MB,
                              keep_sending=True)
    print(f"server RSS growth while a 1 GB chunked multipart body streamed in without a token: {watch.growth_mb:.1f} "
          "MB")
    assert not watch.files, f"spooled to disk: {watch.files}"
    assert not list(served.tmpdir.iterdir())
    assert watch.growth_mb < 40
    assert answer.status == 401 and answer.sent == 1024 * MB


# ----- 2. images: the pixel count from the header, decoding in a bounded pool --------------------------------------


def huge_png(width: int, height: int) -> bytes:
    """A valid grey PNG of ``width`` x ``height`` zero pixels: a few dozen KB that decode to width*height bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), b"\0" * (width + 1)  # filter byte + one byte per pixel
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_a_tiny_png_of_huge_dimensions_is_413_from_its_header(served):
    bomb = huge_png(6300, 6300)
    assert len(bomb) < 64 * 1024
    httpx.post(f"{served.url}/api/predict", headers=AUTH, files={"file": ("x.png", huge_png(64, 64), "image/png")})
    with Watch(served.proc.pid) as watch:
        res = httpx.post(f"{served.url}/api/predict", headers=AUTH, files={"file": ("bomb.png", bomb, "image/png")},
                         timeout=120)
    print(f"server RSS growth for a {len(bomb) // 1024} KB PNG of 6300x6300: {watch.growth_mb:.1f} MB")
    assert res.status_code == 413, res.text
    assert "6300x6300" in res.json()["detail"] and "dashboard.max_image_pixels" in res.json()["detail"]
    assert watch.growth_mb < 40


def test_parallel_uploads_beyond_the_pool_get_503_with_a_reason(guarded, media):
    jpeg = (media / "two_people.jpg").read_bytes()
    start = threading.Barrier(12)

    def upload(together: bool) -> httpx.Response:
        if together:
            start.wait()
        return httpx.post(f"{guarded.url}/api/predict", headers=AUTH, files={"file": ("t.jpg", jpeg, "image/jpeg")},
                          timeout=120)

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(upload, [True] * 12))
    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {200, 503} and 200 in codes and 503 in codes, codes
    busy = next(a for a in answers if a.status_code == 503)
    assert "dashboard.predict_queue" in busy.json()["detail"] and int(busy.headers["retry-after"]) >= 1
    assert all(len(a.json()["faces"]) == 2 for a in answers if a.status_code == 200)
    # once the pool drains, uploads are analysed again
    assert upload(False).status_code == 200


# ----- 3. DNS rebinding and cross-site requests (no token) ----------------------------------------------------------


def test_only_allowed_host_names_are_answered(open_server):
    port = urlsplit(open_server.url).port
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.nip.io", "shop.lan", "x.dash.shop.lan", ""):
        for path in ("/api/cameras", "/health", "/"):
            res = httpx.get(f"{open_server.url}{path}", headers={"Host": host})
            assert res.status_code == 400 and "dashboard.allowed_hosts" in res.json()["detail"], (host, path, res.text)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}", "dash.shop.lan",
                 "DASH.shop.lan:8443", "cam1.cams.lan", "a.b.cams.lan:80"):
        res = httpx.get(f"{open_server.url}/api/cameras", headers={"Host": host})
        assert res.status_code == 200, (host, res.text)


def test_state_changes_from_another_origin_are_403(open_server):
    own = open_server.url
    port = urlsplit(own).port
    api = httpx.Client(base_url=own, timeout=30)
    assert api.post("/api/cameras", json={"id": "front", "url": "rtsp://127.0.0.1:9/front"}).status_code == 201
    try:
        evil = {"id": "evil", "url": "rtsp://127.0.0.1:9/evil"}
        for headers in ({"Origin": "http://evil.example"}, {"Origin": f"http://127.0.0.1:{port + 1}"},
                        {"Origin": f"https://127.0.0.1:{port}"}, {"Origin": "null"},
                        {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                        {"Origin": own, "Sec-Fetch-Site": "same-site"}):
            for method, path, body in (("POST", "/api/cameras", evil), ("POST", "/api/cameras/front/pause", None),
                                       ("DELETE", "/api/cameras/front", None), ("POST", "/api/predict", None)):
                res = api.request(method, path, json=body, headers=headers)
                assert res.status_code == 403 and "cross-site" in res.json()["detail"], (headers, method, path)
        # reads stay possible (the browser's same-origin policy keeps their answers from the other page)
        assert api.get("/api/cameras", headers={"Origin": "http://evil.example"}).status_code == 200
        cams = {c["id"]: c for c in api.get("/api/cameras").json()}
        assert "evil" not in cams and cams["front"]["paused"] is False
        # the dashboard's own pages, and clients that send no Origin (curl, scripts), go through
        mine = api.post("/api/cameras/front/pause", headers={"Origin": own, "Sec-Fetch-Site": "same-origin"})
        assert mine.status_code == 200 and mine.json()["paused"] is True
        assert api.post("/api/cameras/front/resume").json()["paused"] is False
    finally:
        api.delete("/api/cameras/front")


EVIL_PAGE = """<!doctype html><html><body><h1>cute cats</h1>
<form id="pause" method="post" action="{target}/api/cameras/front/pause"></form>
<script>
const target = "{target}";
window.attempts = (async () => {{
  const out = {{}};
  const camera = (id) => JSON.stringify({{id, url: "rtsp://127.0.0.1:9/" + id}});
  // no Content-Type at all (a typeless Blob in no-cors mode): a JSON API that does not insist on it parses the body
  try {{ await fetch(target + "/api/cameras", {{method: "POST", mode: "no-cors", body: new Blob([camera("evil1")])}});
        out.blob = "sent"; }} catch (e) {{ out.blob = String(e); }}
  try {{ await fetch(target + "/api/cameras", {{method: "POST", mode: "no-cors", credentials: "include",
        headers: {{"Content-Type": "text/plain"}}, body: camera("evil2")}}); out.text = "sent"; }}
  catch (e) {{ out.text = String(e); }}
  try {{ await fetch(target + "/api/cameras", {{method: "POST", headers: {{"Content-Type": "application/json"}},
        body: camera("evil3")}}); out.cors = "sent"; }} catch (e) {{ out.cors = String(e); }}
  try {{ await fetch(target + "/api/cameras/front", {{method: "DELETE", mode: "no-cors"}}); out.del = "sent"; }}
  catch (e) {{ out.del = String(e); }}
  return out;
}})();
</script></body></html>"""


class EvilSite:
    """Another web site: a page on another port of 127.0.0.1 (same site, another origin) that attacks ``target``."""

    def __init__(self, target: str):
        page = EVIL_PAGE.format(target=target).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def chromium(p, *extra: str):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + list(extra), headless=True)


def test_a_page_of_another_origin_in_chromium_cannot_add_pause_or_remove_cameras(open_server):
    playwright = pytest.importorskip("playwright.sync_api")
    api = httpx.Client(base_url=open_server.url, timeout=30)
    assert api.post("/api/cameras", json={"id": "front", "url": "rtsp://127.0.0.1:9/front"}).status_code == 201
    evil = EvilSite(open_server.url)
    try:
        with playwright.sync_playwright() as p:
            browser = chromium(p)
            try:
                page = browser.new_page()
                page.goto(evil.url)
                outcome = page.evaluate("window.attempts")
                assert set(outcome) == {"blob", "text", "cors", "del"}, outcome
                # a plain form POST navigates the whole tab to the dashboard
                with page.expect_navigation() as nav:
                    page.evaluate("document.getElementById('pause').submit()")
                form_status = nav.value.status
            finally:
                browser.close()
        cams = {c["id"]: c for c in api.get("/api/cameras").json()}
        assert not {"evil1", "evil2", "evil3"} & set(cams), sorted(cams)
        assert "front" in cams and cams["front"]["paused"] is False
        assert form_status == 403
    finally:
        evil.close()
        api.delete("/api/cameras/front")


def test_dns_rebinding_in_chromium_gets_400(open_server):
    """A name the attacker controls, resolving to 127.0.0.1 (as after a DNS rebind): the page is refused."""
    playwright = pytest.importorskip("playwright.sync_api")
    port = urlsplit(open_server.url).port
    with playwright.sync_playwright() as p:
        browser = chromium(p, "--host-resolver-rules=MAP rebind.test 127.0.0.1")
        try:
            page = browser.new_page()
            res = page.goto(f"http://rebind.test:{port}/api/cameras")
            assert res.status == 400 and "dashboard.allowed_hosts" in page.content()
            assert page.goto(f"http://rebind.test:{port}/").status == 400
            assert page.goto(f"{open_server.url}/api/cameras").status == 200  # the real name still works
        finally:
            browser.close()


# ----- 4. security headers, and the pages under the CSP --------------------------------------------------------------


def assert_security_headers(res: httpx.Response, tls: bool = False) -> None:
    h = res.headers
    csp = {d.split()[0]: d.split()[1:] for d in h.get("content-security-policy", "").split(";") if d.strip()}
    assert csp.get("default-src") == ["'self'"], (res.url, h.get("content-security-policy"))
    assert "'unsafe-inline'" not in csp["script-src"] and "'unsafe-eval'" not in csp["script-src"]
    assert "'unsafe-inline'" not in csp["style-src"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"]
    assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "same-origin" and h["cross-origin-resource-policy"] == "same-origin"
    assert ("strict-transport-security" in h) == tls, res.url


def test_every_answer_carries_the_security_headers(guarded):
    url = guarded.url
    answers = [httpx.get(f"{url}/login"), httpx.get(f"{url}/"), httpx.get(f"{url}/health"),
               httpx.get(f"{url}/api/cameras"), httpx.get(f"{url}/api/cameras", headers=AUTH),
               httpx.get(f"{url}/docs", headers=AUTH), httpx.get(f"{url}/static/app.js", headers=AUTH),
               httpx.get(f"{url}/api/cameras/nope", headers=AUTH),
               httpx.get(f"{url}/api/cameras", headers={"Host": "evil.example"}),
               httpx.post(f"{url}/api/cameras", headers=AUTH, content=b" " * 200_000),
               httpx.post(f"{url}/api/cameras", headers={**AUTH, "Origin": "http://evil.example"}, json={})]
    assert [a.status_code for a in answers] == [200, 303, 200, 401, 200, 200, 200, 404, 400, 413, 403]
    for answer in answers:
        assert_security_headers(answer)


def test_hsts_only_over_tls(tiny_checkpoint, redis_url, tmp_path):
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    with unique_prefix(redis_url, "test-tls") as prefix:
        settings = dashboard_settings(tiny_checkpoint, redis_url, prefix, tmp_path / "data", free_port(),
                                      tls_cert=str(cert), tls_key=str(key))
        with LiveServer(settings) as live:
            assert live.url.startswith("https://")
            for path in ("/health", "/login", "/api/cameras"):
                res = httpx.get(f"{live.url}{path}", verify=False)
                assert_security_headers(res, tls=True)
                assert res.headers["strict-transport-security"] == f"max-age={settings.dashboard.hsts_max_age_s}"


CSP_LISTENER = """document.addEventListener("securitypolicyviolation", (e) => console.error(
  `Refused (securitypolicyviolation): ${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));"""


def test_pages_and_docs_work_under_the_csp_with_no_violation(guarded, media):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1200})
            refused: list[str] = []
            errors: list[str] = []
            page.on("console", lambda m: refused.append(m.text)
                    if "Refused" in m.text or "Content Security" in m.text else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.add_init_script(CSP_LISTENER)

            login = page.goto(f"{guarded.url}/login")
            assert "default-src 'self'" in login.headers["content-security-policy"]
            # the login page's own style block is allowed by its hash
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(17, 24, 39)"
            page.fill("#token", TOKEN)
            page.click("button[type=submit]")
            page.wait_for_url(f"{guarded.url}/")
            # the overall chart is drawn, or says "no data yet" (this server has no camera); either way plotly then
            # draws a chart under the page's CSP, adding its style rules through an empty <style> element
            page.wait_for_selector("#chart-overall .main-svg, #chart-overall .no-data", timeout=30_000)
            page.evaluate("""() => { const d = document.createElement("div"); d.id = "csp-probe";
                document.body.append(d); Plotly.newPlot(d, [{type: "bar", x: [1, 2], y: [3, 4]}], {}); }""")
            page.wait_for_selector("#csp-probe .main-svg", timeout=30_000)
            assert page.evaluate("document.querySelectorAll('style[id^=\"plotly.js-style\"]').length") >= 1
            page.set_input_files("#predict-file", str(media / "justin.jpg"))
            page.click("#predict-form button[type=submit]")
            page.wait_for_selector("#predict-result .face-emotion", timeout=60_000)
            # the probability bars get their width through the CSSOM (inline style attributes would be refused)
            widths = page.evaluate("[...document.querySelectorAll('#predict-result .bar div')].map(d => d.offsetWidth)")
            assert len(widths) == 7 and sum(widths) > 100, widths

            page.goto(f"{guarded.url}/demo")
            page.wait_for_selector("#start:enabled")

            docs = page.goto(f"{guarded.url}/docs")
            assert "script-src 'self' 'sha256-" in docs.headers["content-security-policy"]
            page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
            assert "DeepFER" in page.inner_text(".swagger-ui .info .title")
            page.click(".opblock-summary >> nth=0")  # expand an operation
            page.wait_for_selector(".opblock.is-open", timeout=10_000)
            page.wait_for_timeout(500)
        finally:
            browser.close()
    assert not refused, refused
    assert not errors, errors


# ----- 5. tokens: long enough, and /login throttled per client -------------------------------------------------------


def test_a_short_token_is_a_one_line_start_up_error(tmp_path):
    assert len(TOKEN) >= 16
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFER_")}
    for args, env in (([], {"DEEPFER_DASHBOARD__TOKEN": "fifteen-chars!!"}), (["--token", "sh0rt-secret"], {})):
        proc = subprocess.run([sys.executable, "-m", "deepfer", "serve", "--port", str(free_port()), *args],
                              env=environ | env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, out
        assert "at least 16 characters" in out and "Traceback" not in out and len(out.strip().splitlines()) == 1, out
        assert "fifteen-chars!!" not in out and "sh0rt-secret" not in out  # the secret itself is never echoed
    res = CliRunner().invoke(cli, ["serve", "--token", "x" * 15, "--weights", "/nonexistent/model.pt"])
    assert res.exit_code == 2 and "at least 16 characters" in res.output


def test_login_failures_are_throttled_per_client(guarded):
    me = httpx.Client(base_url=guarded.url, timeout=30)
    other = httpx.Client(base_url=guarded.url, timeout=30, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    with me, other:
        for _ in range(3):
            assert me.post("/login", data={"token": "guess-guess-guess-1"}).status_code == 401
        locked = me.post("/login", data={"token": TOKEN}, headers={"Accept": "application/json"})
        assert locked.status_code == 429, locked.text
        wait = int(locked.headers["retry-after"])
        assert 1 <= wait <= 4 and "too many failed sign-ins" in locked.json()["detail"]
        page = me.post("/login", data={"token": TOKEN}, headers={"Accept": "text/html"})
        assert page.status_code == 429 and "Too many failed sign-ins" in page.text and page.headers["retry-after"]
        # another client is not held back
        assert other.post("/login", data={"token": TOKEN}).status_code == 303
        time.sleep(wait + 0.3)
        assert me.post("/login", data={"token": TOKEN}).status_code == 303
        assert me.post("/login", data={"token": "guess-guess-guess-2"}).status_code == 401  # counting again from 0
