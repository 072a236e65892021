"""Find a Redis to use, or start DeepFER's own one, so a fresh machine needs no set-up beyond ``redis-server``.

Order: ``redis.url`` when set (used even if down: the sink buffers); else
``redis.default_url`` when it answers; else an embedded ``redis-server`` already
started under ``{data_dir}/redis`` by another DeepFER process; else (when
``redis.embedded``) a new ``redis-server`` with its data, append-only file, log
and unix socket in ``{data_dir}/redis``. Its data persist there between runs; it
stops when the process that started it exits.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from deepfer_core.redact import redact
from deepfer_core.settings import Settings

log = logging.getLogger(__name__)
SOCKET_PATH_MAX = 100  # unix socket paths are limited to 107 bytes; longer data dirs use a loopback port
START_TIMEOUT_S = 15.0


class RedisUnavailable(ValueError):
    """No Redis can be used; the message says what to do."""


def answers(url: str, timeout_s: float = 1.0) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


class EmbeddedRedis:
    """A redis-server child process under ``data_dir/redis``; ``stop()`` (or process exit) ends it."""

    def __init__(self, data_dir: Path, timeout_s: float = 1.0):
        self.dir = (Path(data_dir) / "redis").resolve()
        self.timeout_s = timeout_s
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisUnavailable("no Redis answers and redis-server is not installed: install it "
                                   "(apt-get install redis-server) or set redis.url / --redis")
        self.dir.mkdir(parents=True, exist_ok=True)
        sock = self.dir / "redis.sock"
        args = [
            binary,
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "300 1",
            "--logfile",
            str(self.dir / "redis.log"),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ]
        if len(str(sock)) <= SOCKET_PATH_MAX:
            sock.unlink(missing_ok=True)
            args += ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
            self.url = f"unix://{sock}"
        else:
            port = _free_port()
            args += ["--port", str(port), "--bind", "127.0.0.1"]
            self.url = f"redis://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers(self.url, self.timeout_s):
            if self.process.poll() is not None:
                err = (self.process.stderr.read() if self.process.stderr else b"").decode(errors="replace").strip()
                raise RedisUnavailable(
                    f"embedded redis-server exited at start (see {self.dir / 'redis.log'})"
                    + (f": {err.splitlines()[-1]}" if err else "")
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RedisUnavailable(
                    f"embedded redis-server did not answer within {START_TIMEOUT_S:.0f} s "
                    f"(see {self.dir / 'redis.log'})"
                )
            time.sleep(0.05)
        (self.dir / "url").write_text(self.url + "\n")
        atexit.register(self.stop)
        return self.url

    def stop(self) -> None:
        """SIGTERM: redis-server writes its data and exits."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        (self.dir / "url").unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect_or_start(settings: Settings) -> tuple[str, EmbeddedRedis | None]:
    """The Redis URL to use, and the embedded server this call started (stop it on exit), if any."""
    cfg = settings.redis
    if cfg.url:
        if not answers(cfg.url, cfg.connect_timeout_s):
            log.warning("Redis at %s does not answer yet; points are buffered until it does", redact(cfg.url))
        return cfg.url, None
    if answers(cfg.default_url, cfg.connect_timeout_s):
        log.info("using Redis at %s", redact(cfg.default_url))
        return cfg.default_url, None
    url_file = (Path(settings.paths.data_dir) / "redis" / "url").resolve()
    if url_file.is_file():
        shared = url_file.read_text().strip()
        if shared and answers(shared, cfg.connect_timeout_s):
            log.info("using the embedded Redis at %s", redact(shared))
            return shared, None
    if not cfg.embedded:
        raise RedisUnavailable(
            f"no Redis answers at {redact(cfg.default_url)} and redis.embedded is off: "
            "start one or set redis.url / --redis"
        )
    server = EmbeddedRedis(settings.paths.data_dir, cfg.connect_timeout_s)
    url = server.start()
    log.info(
        "no Redis at %s: started an embedded redis-server at %s (data in %s)",
        redact(cfg.default_url),
        redact(url),
        server.dir,
    )
    return url, server


@contextmanager
def redis_for(settings: Settings) -> Iterator[str]:
    """The URL of the Redis to use for one command; an embedded server started for it stops afterwards."""
    url, embedded = (settings.redis.url, None) if settings.redis.url else connect_or_start(settings)
    try:
        yield url
    finally:
        if embedded is not None:
            embedded.stop()
