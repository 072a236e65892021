"""A WebRTC visitor whose frames are over ``sources.max_frame_pixels`` (issue 27, item 1): a real aiortc visitor
against the real dashboard with a low limit; its session ends at the first such frame, with the reason logged."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest

from deepfer_bench.visitor import VisitorProcess
from tests.conftest import SHIPPED_WEIGHTS
from tests.dashboard_helpers import AUTH, LiveServer, dashboard_settings
from tests.redis_helpers import free_port, unique_prefix

pytestmark = pytest.mark.timeout(180)


def test_a_visitor_sending_frames_over_the_limit_is_ended(media, redis_url, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="streamer.webrtc.source")
    with unique_prefix(redis_url, "test-webrtc-big") as prefix:
        settings = dashboard_settings(SHIPPED_WEIGHTS, redis_url, prefix, tmp_path / "data", free_port(),
                                      sources={"max_frame_pixels": 100_000})  # woman2.mp4: 596x336, 200 k pixels
        with LiveServer(settings) as server:
            visitor = VisitorProcess(str(media / "woman2.mp4"), loop=True)

            async def signal(offer: dict) -> dict:
                async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=60) as client:
                    res = await client.post("/api/webrtc/offer", json=offer)
                    assert res.status_code == 200, res.text
                    return res.json()

            try:
                answer = asyncio.run(visitor.connect(signal))
                deadline = time.monotonic() + 60
                while httpx.get(f"{server.url}/api/webrtc/sessions", headers=AUTH, timeout=10).json():
                    assert time.monotonic() < deadline, "the session was not ended"
                    time.sleep(0.2)
                assert answer["camera_id"] not in server.call(lambda: server.app.state.service.pipeline.camera_ids)
            finally:
                visitor.process.kill()
                visitor.process.join(10)
    assert any(f"camera {answer['camera_id']}: frames of 596x336 pixels, over sources.max_frame_pixels (100000)"
               in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
