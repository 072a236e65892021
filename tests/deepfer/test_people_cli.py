"""``deepfer people``: the people a camera has seen, from a real Redis; bad input gives one line and exit 2."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from typer.testing import CliRunner

from aggregator.redis_sink import RedisSink
from deepfer.cli import app
from tests.redis_helpers import (
    free_port,
    redis_settings,
    tracked_frame,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def stored(redis_url, key_prefix, tmp_path, monkeypatch):
    """Camera 'hall': person 1 happy for 2 s (an hour ago), then person 2 sad for 1 s (now)."""
    monkeypatch.setenv("DEEPFER_REDIS__KEY_PREFIX", key_prefix)
    monkeypatch.chdir(tmp_path)

    async def write() -> str:
        sink = RedisSink(redis_settings(key_prefix, points_per_s=0), redis_url, tmp_path)
        now = time.time()
        for i in range(20):
            await sink.handle(tracked_frame("hall", i, now - 3600 + i / 10, [1], "happy"))
        for i in range(10):
            await sink.handle(tracked_frame("hall", 20 + i, now + i / 10, [2], "sad"))
        await sink.close()
        return sink.run_id

    return asyncio.run(write())


def test_people_json_and_table(stored, redis_url):
    res = CliRunner().invoke(app, ["people", "--camera", "hall", "--redis", redis_url, "--json"])
    assert res.exit_code == 0, res.output
    people = json.loads(res.stdout)
    assert [p["person_id"] for p in people] == [f"{stored}-2", f"{stored}-1"]  # most recently seen first
    assert people[1]["dominant"] == "happy" and people[1]["duration_s"] == pytest.approx(1.9, abs=0.01)
    assert people[0]["dominant"] == "sad" and people[0]["label"] == "sad"

    recent = CliRunner().invoke(app, ["people", "--camera", "hall", "--redis", redis_url, "--since", "10m", "--json"])
    assert [p["track_id"] for p in json.loads(recent.stdout)] == [2]

    table = CliRunner().invoke(app, ["people", "--camera", "hall", "--redis", redis_url])
    assert table.exit_code == 0 and "2 people" in table.stdout and "happy 100%" in table.stdout


def test_people_bad_input_is_one_line_and_exit_2(stored, redis_url):
    unknown = CliRunner().invoke(app, ["people", "--camera", "nowhere", "--redis", redis_url])
    assert unknown.exit_code == 2 and "no data for camera 'nowhere'" in unknown.output and "hall" in unknown.output
    bad_since = CliRunner().invoke(app, ["people", "--camera", "hall", "--redis", redis_url, "--since", "ten"])
    assert bad_since.exit_code == 2 and "--since must look like" in bad_since.output
    down = CliRunner().invoke(app, ["people", "--camera", "hall", "--redis", f"redis://127.0.0.1:{free_port()}"])
    assert down.exit_code == 2 and "cannot read Redis" in down.output
    for res in (unknown, bad_since, down):
        assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
