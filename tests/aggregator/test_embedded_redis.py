"""connect_or_start: configured URL, the default server, or a real embedded redis-server under the data dir."""

from __future__ import annotations

import shutil

import pytest
import redis

from aggregator.embedded_redis import RedisUnavailable, answers, connect_or_start
from deepfer_core.settings import PathsSettings, RedisSettings, Settings
from tests.redis_helpers import free_port

pytestmark = pytest.mark.timeout(60)


def settings(data_dir, **redis_kw) -> Settings:
    return Settings(paths=PathsSettings(data_dir=data_dir), redis=RedisSettings(**redis_kw))


def test_configured_url_is_used_even_when_down(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}"
    assert connect_or_start(settings(tmp_path, url=url)) == (url, None)
    assert not (tmp_path / "redis").exists()


def test_default_server_is_used_when_it_answers(tmp_path, redis_url):
    assert connect_or_start(settings(tmp_path, default_url=redis_url)) == (redis_url, None)


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")
def test_embedded_server_starts_is_shared_and_keeps_its_data(tmp_path):
    nobody = f"redis://127.0.0.1:{free_port()}"
    cfg = settings(tmp_path / "data", default_url=nobody)
    url, server = connect_or_start(cfg)
    try:
        assert server is not None and url.startswith("unix://") and answers(url)
        assert (tmp_path / "data" / "redis" / "redis.sock").exists()
        assert connect_or_start(cfg) == (url, None)  # a second DeepFER process on the same data dir shares it
        redis.Redis.from_url(url).set("kept", "yes")
    finally:
        server.stop()
    assert not answers(url) and not (tmp_path / "data" / "redis" / "url").exists()

    url2, server2 = connect_or_start(cfg)  # a new start reads the append-only file back
    try:
        assert redis.Redis.from_url(url2).get("kept") == b"yes"
    finally:
        server2.stop()


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")
def test_long_data_dir_uses_a_loopback_port(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    url, server = connect_or_start(settings(deep, default_url=f"redis://127.0.0.1:{free_port()}"))
    try:
        assert url.startswith("redis://127.0.0.1:") and answers(url)
    finally:
        server.stop()


def test_clear_errors_when_no_redis_can_be_had(tmp_path, monkeypatch):
    nobody = f"redis://127.0.0.1:{free_port()}"
    with pytest.raises(RedisUnavailable, match="redis.embedded is off"):
        connect_or_start(settings(tmp_path, default_url=nobody, embedded=False))
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on PATH
    with pytest.raises(RedisUnavailable, match="apt-get install redis-server"):
        connect_or_start(settings(tmp_path, default_url=nobody))
