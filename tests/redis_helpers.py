"""Real Redis for tests: the machine's server on 6379 (or a private one when none runs), unique key prefixes,
and a redis-server of a test's own that it may stop and start."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import redis

from deepfer_core.settings import RedisSettings
from deepfer_core.types import EMOTIONS, FaceBox, FaceResult, Frame, FrameResult

DEFAULT_URL = "redis://127.0.0.1:6379"


def answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server of our own on a fixed port, persisting to ``dir`` so a restart keeps the data; with
    ``password``, clients must authenticate (``requirepass``) and ``url`` carries it."""

    def __init__(self, dir: Path, port: int | None = None, password: str | None = None):
        if shutil.which("redis-server") is None:
            pytest.skip("needs the redis-server binary (apt-get install redis-server)")
        self.dir, self.port, self.password = dir, port or free_port(), password
        self.url = f"redis://{':' + password + '@' if password else ''}127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile", str(self.dir / "redis.log")]
            + (["--requirepass", self.password] if self.password else []),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not answers(self.url):
            assert self.process.poll() is None, (self.dir / "redis.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory):
    """The machine's Redis on 6379, or a private redis-server when none answers there."""
    if answers(DEFAULT_URL):
        yield DEFAULT_URL
        return
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@contextmanager
def unique_prefix(redis_url: str, name: str = "test"):
    """A key prefix no other test uses; every key under it is deleted afterwards."""
    prefix = f"deepfer-{name}-{uuid.uuid4().hex[:10]}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
def key_prefix(redis_url: str):
    with unique_prefix(redis_url) as prefix:
        yield prefix


def redis_settings(prefix: str, **kw) -> RedisSettings:
    return RedisSettings(key_prefix=prefix, **kw)


def tracked_frame(camera: str, seq: int, t: float, track_ids: list[int], label: str = "happy") -> FrameResult:
    """A FrameResult as the tracker returns it: faces with ids, smoothed probabilities and a label."""
    probs = np.full(7, 0.05, np.float32)
    probs[EMOTIONS.index(label)] = 0.7
    faces = [FaceResult(FaceBox(10.0 + 100 * i, 10, 90.0 + 100 * i, 90, 0.99), probs, track_id=tid, smoothed=probs,
                        label=label) for i, tid in enumerate(track_ids)]
    return FrameResult(Frame(camera, seq, t, np.zeros((2, 2, 3), np.uint8)), faces, processed_at=t)


# What the writer reports while Redis is full: the server's words, not the refused command
FULL_MESSAGE = "OutOfMemoryError: command not allowed when used memory > 'maxmemory'."


def fill_up(url: str, full: bool) -> None:
    """Redis's own memory limit: 1 byte with noeviction refuses every write; 0 lifts it."""
    import redis

    client = redis.Redis.from_url(url)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1 if full else 0)
    client.close()
