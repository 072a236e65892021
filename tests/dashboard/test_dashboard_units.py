"""Dashboard parts without a server: the satisfaction indicator, bucket merging, the preview sink's privacy rule."""

from __future__ import annotations

import asyncio

import numpy as np

from aggregator import analytics
from aggregator.timeseries import RollupBucket
from deepfer_core.types import EMOTIONS
from streamer.preview import PreviewSink
from tests.redis_helpers import tracked_frame


def counts(**kw: int) -> dict[str, int]:
    return {e: kw.get(e, 0) for e in EMOTIONS}


def test_satisfaction_range_and_definition():
    assert analytics.satisfaction(counts()) is None
    assert analytics.satisfaction(counts(happy=3, surprise=1)) == 1.0
    assert analytics.satisfaction(counts(angry=1, disgust=1, fear=1, sad=1)) == -1.0
    assert analytics.satisfaction(counts(neutral=10)) == 0.0
    assert analytics.satisfaction(counts(happy=2, sad=1, neutral=1)) == 0.25


def test_combine_adds_cameras_bucket_by_bucket():
    a = [RollupBucket(0.0, 60, 2, counts(happy=2), 1, 10.0), RollupBucket(60.0, 60, 0, counts(), 0, 0.0)]
    b = [RollupBucket(0.0, 60, 1, counts(sad=1), 1, 5.0), RollupBucket(60.0, 60, 4, counts(neutral=4), 2, 8.0)]
    merged = analytics.combine([a, b])
    assert [m["points"] for m in merged] == [3, 4]
    assert (
        merged[0]["unique_people"] == 2
        and merged[0]["dwell_s"] == 15.0
        and merged[0]["satisfaction"] == round(1 / 3, 4)
    )
    total = analytics.totals(merged, unique_people=3)
    assert total["points"] == 7 and total["mean_dwell_s"] == round(23 / 3, 3)


def test_preview_keeps_face_images_only_with_snapshots_on():
    sink = PreviewSink(jpeg_quality=80, snapshot_max_people=1)
    frame = tracked_frame("hall", 0, 1.0, [1, 2])
    frame = type(frame)(type(frame.frame)("hall", 0, 1.0, np.full((120, 240, 3), 128, np.uint8)), frame.faces, 1.0)
    asyncio.run(sink.handle(frame))
    assert sink.jpeg("hall")[:3] == b"\xff\xd8\xff"
    assert sink.snapshot("hall", 1) is None  # off by default
    sink.set_snapshots("hall", True)
    asyncio.run(sink.handle(frame))
    assert sink.snapshot("hall", 2)[:3] == b"\xff\xd8\xff"
    assert sink.snapshot("hall", 1) is None  # at most snapshot_max_people kept, oldest forgotten
    sink.forget("hall")
    assert sink.jpeg("hall") is None and sink.snapshot("hall", 2) is None


def test_access_log_hides_the_token_query():
    import logging

    from dashboard.app import HideTokenInAccessLog

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/api/events?camera=a&token=s3cret", "1.1", 200),
        None,
    )
    HideTokenInAccessLog().filter(record)
    assert "s3cret" not in record.getMessage() and "token=***" in record.getMessage()
