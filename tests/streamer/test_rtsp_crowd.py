"""A 1080p RTSP camera end to end: the walking-crowd clip served by the GStreamer RTSP server of the tests, through
the live pipeline with the default settings; the faces found are scored against the clip's ground truth on the
frames the pipeline analysed (a live camera drops the frames it cannot keep up with)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from deepfer_bench.crowd_clip import CrowdTruth, make_crowd_clip
from deepfer_bench.crowd_score import Found, score
from deepfer_core.settings import DetectorSettings, Settings, SourceSettings
from deepfer_core.types import FrameResult
from streamer.assembly import tracker_factory
from streamer.pipeline import Pipeline
from streamer.sources import RtspSource
from tests.rtsp_server import RtspServer, available

pytestmark = [pytest.mark.timeout(600), pytest.mark.e2e]

# Measured on the loaded 2-core VM (load average 9-11; see docs/performance.md, Crowds at 1080p): 36 of the 200 frames
# analysed
# (the rest dropped as the camera ran ahead), recall from 32 px 0.73 and 0.79 in two runs, precision 1.0; the floor
# leaves room for a slower or busier machine (fewer analysed frames, larger jumps between them)
MIN_RECALL_32_UP = 0.6
MIN_PRECISION = 0.7


class Keep:
    def __init__(self) -> None:
        self.frames: dict[int, list[Found]] = {}
        self.sizes: set[tuple[int, int]] = set()

    async def handle(self, result: FrameResult) -> None:
        self.frames[result.frame.seq] = [Found(*f.box.xyxy, f.track_id) for f in result.faces]
        self.sizes.add((result.frame.pixels.width, result.frame.pixels.height))

    async def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def crowd(tmp_path_factory: pytest.TempPathFactory, media: Path, fer_root: Path):
    return make_crowd_clip(tmp_path_factory.mktemp("crowd-rtsp"), media, fer_root / "test", seconds=8, fps=25,
                           seed=3, people=12)


async def test_a_1080p_rtsp_crowd_camera_finds_the_faces(crowd, free_port: int, tiny_checkpoint: Path) -> None:
    reason = available()
    if reason:
        pytest.skip(reason)
    server = RtspServer(free_port, crowd.video).start()
    s = Settings(detector=DetectorSettings(device="cpu"),
                 sources=SourceSettings(reconnect_initial_s=0.3, reconnect_max_s=1.0, connect_timeout_s=5,
                                        read_timeout_s=5))
    keep = Keep()
    pipeline = Pipeline(s, *_models(s, tiny_checkpoint), tracker_factory=tracker_factory(s), sinks=[keep])
    pipeline.add_source(RtspSource(server.url, "door", s.sources, s.pipeline.live_queue_size))
    last = len(crowd.truth.frames) - 1
    await pipeline.start()
    try:
        async with asyncio.timeout(120):
            while not keep.frames or max(keep.frames) < last - 10:  # the clip played through (once)
                await asyncio.sleep(0.2)
    finally:
        await pipeline.stop()
        server.kill()
    st = pipeline.stats()["door"]
    assert st.live and (st.width, st.height) == (1920, 1080) and keep.sizes == {(1920, 1080)}
    seqs = sorted(s for s in keep.frames if s <= last)
    assert len(seqs) >= 20, st
    analysed = CrowdTruth(crowd.truth.fps, 1920, 1080, crowd.truth.seed, crowd.truth.people,
                          [crowd.truth.frames[i] for i in seqs])
    r = score(analysed, [keep.frames[i] for i in seqs])
    print("rtsp crowd:", len(seqs), "frames analysed of", last + 1, st.frames_dropped, "dropped;", r)
    assert r["found"] >= 0.5 * r["faces"], r
    assert r["recall_32_up"] >= MIN_RECALL_32_UP, r
    assert r["precision"] >= MIN_PRECISION, r
    # tracks: with one analysed frame in 7-10, how many walkers a confirmed track follows depends on the load (2-6
    # of 12 seen on main), and where two walkers cross between two analysed frames 0.3 s apart a track can take the
    # other one (1 of 5 tracks once in a fresh-clone CI run; 0 in quiet runs): at most one track in five may
    ident = r["identity"]
    assert ident["people_tracked"] >= 2, r
    assert ident["tracks_on_several_people"] <= ident["people_tracked"] // 5, r


def _models(s: Settings, checkpoint: Path):
    from classifier.inference import EmotionClassifier
    from detectors import build_detector

    return build_detector(s.detector), EmotionClassifier.load(checkpoint, "cpu")
