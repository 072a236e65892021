"""Secrets never reach a log: a real password-protected redis-server goes down and comes back under a real
``deepfer serve`` and a real ``deepfer run`` (subprocesses, debug logging on), and everything they print is read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.dashboard_helpers import AUTH, TOKEN
from tests.redis_helpers import RedisServer, free_port

pytestmark = pytest.mark.timeout(300)
PASSWORD = "s3cret-pass-7Qz"
TURN_USER, TURN_PASSWORD = "turn-user-K4p", "turn-pass-R8w"


class Process:
    """A ``deepfer`` command whose stdout and stderr are collected line by line."""

    def __init__(self, *args: str, cwd: Path, **env: str):
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFER_")} | env
        self.proc = subprocess.Popen([sys.executable, "-m", "deepfer", "-v", *args], cwd=cwd, env=environ,
                                     text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")),
                                        daemon=True)
        self._reader.start()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, timeout: float, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.text.count(needle) < count:
            assert self.proc.poll() is None, self.text[-3000:]
            assert time.monotonic() < deadline, f"{needle!r} not printed within {timeout} s:\n{self.text[-3000:]}"
            time.sleep(0.1)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)
        return self.text


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, next(line for line in text.splitlines() if secret in line)


def test_redis_outage_under_deepfer_serve_never_logs_the_password(tiny_checkpoint, media, tmp_path):
    redis = RedisServer(tmp_path / "redis", password=PASSWORD)  # down at start: serve must wait for it
    port = free_port()
    serve = Process("serve", "--port", str(port), "--weights", str(tiny_checkpoint), cwd=tmp_path,
                    DEEPFER_REDIS__URL=redis.url, DEEPFER_DASHBOARD__TOKEN=TOKEN,
                    DEEPFER_REDIS__KEY_PREFIX="deepfer-test-secrets", DEEPFER_REDIS__RETRY_MAX_S="0.5",
                    DEEPFER_SOURCES__MEDIA_DIRS=f'["{media}"]', DEEPFER_DETECTOR__DEVICE="cpu",
                    DEEPFER_DETECTOR__DETECT_EVERY="4", DEEPFER_CLASSIFIER__DEVICE="cpu",
                    DEEPFER_WEBRTC__ICE_SERVERS='["turn:127.0.0.1:3478"]', DEEPFER_WEBRTC__ICE_USERNAME=TURN_USER,
                    DEEPFER_WEBRTC__ICE_CREDENTIAL=TURN_PASSWORD)
    try:
        serve.wait_for("Uvicorn running", 120)
        redis.start()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=30) as api:
            deadline = time.monotonic() + 30
            while api.get("/health").json()["redis"] is not True:
                assert time.monotonic() < deadline, serve.text[-3000:]
                time.sleep(0.3)
            ice = api.get("/api/webrtc/config").json()["ice_servers"][0]
            assert ice["credential"] == TURN_PASSWORD  # sent to the browser by design, and configured for real
            res = api.post("/api/cameras", json={"id": "hall", "url": str(media / "woman2.mp4"),
                                                 "options": {"realtime": True}})
            assert res.status_code == 201, res.text
            serve.wait_for("is up", 30)  # the writer has points to store
            redis.stop()
            serve.wait_for("is down", 30)
            api.get("/health")
            redis.start()
            serve.wait_for("is up", 30, count=2)
    finally:
        text = serve.stop()
        redis.stop()
    assert text.count("is up") >= 2 and "is down" in text, text[-3000:]  # the outage is in the log...
    assert f"redis://***@127.0.0.1:{redis.port}" in text, text[-3000:]
    assert_no_secret(text, PASSWORD, TURN_USER, TURN_PASSWORD)  # ...and no secret is
    assert "Traceback" not in text


def test_redis_outage_under_deepfer_run_never_logs_the_password(tiny_checkpoint, media, tmp_path):
    redis = RedisServer(tmp_path / "redis", password=PASSWORD)  # down at start: the run buffers
    run = Process("run", "--source", str(media / "woman2.mp4"), "--file-rate", "realtime", "--redis", redis.url,
                  "--weights", str(tiny_checkpoint), "--device", "cpu", "--detect-every", "4", cwd=tmp_path,
                  DEEPFER_REDIS__KEY_PREFIX="deepfer-test-secrets-run", DEEPFER_REDIS__RETRY_MAX_S="0.5",
                  DEEPFER_PIPELINE__LOG_EVERY_S="1")
    try:
        run.wait_for("does not answer yet", 60)
        run.wait_for("camera woman2:", 120)  # frames are flowing
        redis.start()
        run.wait_for("is up", 30)
        redis.stop()
        run.wait_for("is down", 30)
        redis.start()
        assert run.proc.wait(120) == 0, run.text[-3000:]
    finally:
        text = run.stop()
        redis.stop()
    assert "is down" in text and text.count("is up") >= 2, text[-3000:]
    assert f"redis://***@127.0.0.1:{redis.port}" in text, text[-3000:]
    assert_no_secret(text, PASSWORD)
    assert "Traceback" not in text
