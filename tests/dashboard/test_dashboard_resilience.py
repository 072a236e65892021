"""The dashboard through a Redis outage, with real parts: a real uvicorn, a redis-server of the test's own that is
stopped and started again, and a real Server-Sent Events client."""

from __future__ import annotations

import json
import queue
import threading
import time

import httpx
import pytest
import redis as redis_sync

from tests.dashboard_helpers import AUTH, TOKEN, LiveServer, dashboard_settings
from tests.redis_helpers import RedisServer, free_port


class SseClient:
    """Reads ``/api/events`` in a thread; ``next(event)`` waits for the next event of that name."""

    def __init__(self, url: str):
        self.events: queue.Queue[tuple[str, object]] = queue.Queue()
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(url,), daemon=True)
        self._thread.start()

    def _read(self, url: str) -> None:
        try:
            with httpx.stream("GET", f"{url}/api/events", params={"token": TOKEN}, timeout=30) as res:
                name = None
                for line in res.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: ") and name:
                        self.events.put((name, json.loads(line[6:])))
                        name = None
        except Exception as exc:  # the stream broke: the test says so
            self.error = exc
        finally:
            self.events.put(("end", None))

    def next(self, event: str, timeout: float = 15, where=lambda data: True):
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                name, data = self.events.get(timeout=left)
            except queue.Empty:
                break
            if name == "end":
                raise AssertionError(f"the event stream ended while waiting for {event!r}: {self.error!r}")
            if name == event and where(data):
                return data
        raise AssertionError(f"no {event!r} event within {timeout} s")

    def close(self) -> None:
        self._stop.set()


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def test_live_events_keep_coming_through_a_redis_outage_and_resubscribe(tiny_checkpoint, own_redis, tmp_path):
    prefix = "deepfer-test-sse-outage"
    settings = dashboard_settings(tiny_checkpoint, own_redis.url, prefix, tmp_path / "data", free_port(),
                                  sse_stats_every_s=0.5)
    settings = settings.model_copy(update={"redis": settings.redis.model_copy(update={"retry_max_s": 1.0})})
    with LiveServer(settings) as live:
        sse = SseClient(live.url)
        try:
            sse.next("redis", where=lambda d: d["connected"] is True)
            sse.next("cameras")
            own_redis.stop()
            sse.next("redis", where=lambda d: d["connected"] is False)
            for _ in range(3):  # camera status goes on while Redis is down
                sse.next("cameras", timeout=5)
            own_redis.start()
            sse.next("redis", timeout=20, where=lambda d: d["connected"] is True)
            client = redis_sync.Redis.from_url(own_redis.url)
            deadline = time.monotonic() + 10
            got = None
            while got is None and time.monotonic() < deadline:  # re-subscribed: a published frame reaches the client
                client.publish(f"{prefix}:events:door", json.dumps({"camera_id": "door", "seq": 1, "faces": []}))
                try:
                    got = sse.next("faces", timeout=1, where=lambda d: d["camera_id"] == "door")
                except AssertionError:
                    pass
            assert got is not None, "no faces event after Redis came back: the stream did not re-subscribe"
            # what others publish on the channel is not trusted: garbage is skipped, the stream goes on
            client.publish(f"{prefix}:events:door", b"\xff not json")
            client.publish(f"{prefix}:events:door", json.dumps([1, 2]))
            sse.next("cameras", timeout=5)
            deadline = time.monotonic() + 10  # a pooled connection from before the outage fails once, then reconnects
            while httpx.get(f"{live.url}/health").json()["redis"] is not True:
                assert time.monotonic() < deadline, "/health still says Redis is down"
                time.sleep(0.2)
        finally:
            sse.close()


def test_saved_cameras_start_as_soon_as_redis_answers(tiny_checkpoint, own_redis, tmp_path):
    prefix = "deepfer-test-restore"
    url = "rtsp://cam:restoresecret@127.0.0.1:9/live"
    first = dashboard_settings(tiny_checkpoint, own_redis.url, prefix, tmp_path / "data1", free_port())
    with LiveServer(first) as live, httpx.Client(base_url=live.url, headers=AUTH, timeout=30) as api:
        assert api.post("/api/cameras", json={"id": "lobby", "url": url}).status_code == 201
        assert api.post("/api/cameras/lobby/pause").status_code == 200
    own_redis.stop()
    second = dashboard_settings(tiny_checkpoint, own_redis.url, prefix, tmp_path / "data2", free_port())
    with LiveServer(second) as live, httpx.Client(base_url=live.url, headers=AUTH, timeout=30) as api:
        assert api.get("/api/cameras").json() == []  # Redis is down: nothing is known yet
        own_redis.start()
        deadline = time.monotonic() + 20
        while not (cams := api.get("/api/cameras").json()):
            assert time.monotonic() < deadline, "the saved camera did not come back within 20 s of Redis answering"
            time.sleep(0.3)
        assert [c["id"] for c in cams] == ["lobby"]
        assert cams[0]["paused"] is True and "restoresecret" not in json.dumps(cams)
