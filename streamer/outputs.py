"""Pipeline outputs written by ``deepfer run``: the annotated video and the summary JSON (both ``ResultSink``s)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from deepfer_core.settings import PipelineSettings
from deepfer_core.types import EMOTIONS, UNCERTAIN, FrameResult
from streamer.drawing import draw_faces

log = logging.getLogger(__name__)
MS = Fraction(1, 1000)

@dataclass
class _Writer:
    path: Path
    container: Any = None
    stream: Any = None
    first: float | None = None
    last_pts: int = -1
    frames: int = 0


class AnnotatedVideoSink:
    """Encodes each camera's annotated frames to an MP4 (PyAV, ``pipeline.video_codec``) in a writer thread.

    Frame times come from the stream (files) or the capture clock (live), so a
    video with dropped frames still plays at true speed. Frames are never
    dropped here: when ``pipeline.output_queue`` frames wait, the pipeline waits.
    """

    def __init__(self, outputs: dict[str, Path], settings: PipelineSettings):
        self.outputs = dict(outputs)
        self.settings = settings
        self._writers: dict[str, _Writer] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepfer-video")
        self._pending: deque[Future] = deque()
        for path in self.outputs.values():
            path.parent.mkdir(parents=True, exist_ok=True)

    async def handle(self, result: FrameResult) -> None:
        if result.camera_id not in self.outputs:
            return
        self._pending.append(self._pool.submit(self._write, result))
        while self._pending and (self._pending[0].done() or len(self._pending) >= self.settings.output_queue):
            await asyncio.wrap_future(self._pending.popleft())

    async def close(self) -> None:
        while self._pending:
            try:
                await asyncio.wrap_future(self._pending.popleft())
            except Exception:
                log.exception("annotated video: a frame failed to encode")
        await asyncio.wrap_future(self._pool.submit(self._close_all))
        self._pool.shutdown(wait=False)

    def _write(self, result: FrameResult) -> None:
        import av

        frame = result.frame
        writer = self._writers.get(frame.camera_id)
        if writer is None:
            writer = self._writers[frame.camera_id] = self._open(self.outputs[frame.camera_id], frame.image.shape)
        t = frame.pts if frame.pts is not None else frame.captured_at
        if writer.first is None:
            writer.first = t
        pts = max(int(round((t - writer.first) * 1000)), writer.last_pts + 1)
        writer.last_pts = pts
        h, w = writer.stream.height, writer.stream.width
        image = draw_faces(frame.image, result.faces)[:h, :w]
        video_frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        video_frame.pts, video_frame.time_base = pts, MS
        for packet in writer.stream.encode(video_frame):
            writer.container.mux(packet)
        writer.frames += 1

    def _open(self, path: Path, shape: tuple[int, ...]) -> _Writer:
        import av

        container = av.open(str(path), "w")
        stream = container.add_stream(self.settings.video_codec, rate=30)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height = shape[1] - shape[1] % 2, shape[0] - shape[0] % 2  # yuv420p needs even sizes
        stream.pix_fmt = "yuv420p"
        stream.time_base = MS
        stream.codec_context.time_base = MS
        if self.settings.video_codec == "libx264":
            stream.options = {"preset": self.settings.video_preset, "crf": str(self.settings.video_crf)}
        log.info("writing annotated video %s", path)
        return _Writer(path, container, stream)

    def _close_all(self) -> None:
        for cid, writer in self._writers.items():
            try:
                for packet in writer.stream.encode():
                    writer.container.mux(packet)
                writer.container.close()
                log.info("camera %s: %d annotated frames in %s", cid, writer.frames, writer.path)
            except Exception:
                log.exception("camera %s: finishing %s failed", cid, writer.path)


def dominant(labels: Counter) -> str:
    """The emotion a track showed most often; ``uncertain`` only when it never had a confident one."""
    confident = [(e, n) for e, n in labels.most_common() if e in EMOTIONS]
    return confident[0][0] if confident else UNCERTAIN


@dataclass
class _TrackTotals:
    frames: int = 0
    detected: int = 0
    first_seq: int = -1
    last_seq: int = -1
    first_pts: float | None = None
    last_pts: float | None = None
    probs: np.ndarray = field(default_factory=lambda: np.zeros(len(EMOTIONS), np.float64))
    labels: Counter = field(default_factory=Counter)


class SummarySink:
    """Collects per-camera results and, on close, writes the summary JSON (stats, per-face totals, per-frame faces).

    ``stats`` is called at close, after the pipeline drained, so the counters are final.
    """

    def __init__(self, path: Path, stats: Callable[[], dict[str, Any]], extra: Callable[[], dict] | None = None,
                 max_frames: int = 20000):
        self.path = path
        self.stats = stats
        self.extra = extra
        self.max_frames = max_frames
        self._frames: dict[str, list[dict]] = {}
        self._truncated: Counter = Counter()
        self._tracks: dict[str, dict[Any, _TrackTotals]] = {}
        self.written = False
        path.parent.mkdir(parents=True, exist_ok=True)

    async def handle(self, result: FrameResult) -> None:
        cid = result.camera_id
        frames = self._frames.setdefault(cid, [])
        tracks = self._tracks.setdefault(cid, {})
        frame = result.frame
        if len(frames) < self.max_frames:
            frames.append({"seq": frame.seq, "pts": None if frame.pts is None else round(frame.pts, 4),
                           "faces": [f.to_dict() for f in result.faces]})
        else:
            self._truncated[cid] += 1
        for face in result.faces:
            t = tracks.setdefault(face.track_id, _TrackTotals())
            if t.frames == 0:
                t.first_seq, t.first_pts = frame.seq, frame.pts
            t.frames += 1
            t.detected += face.detected
            t.last_seq, t.last_pts = frame.seq, frame.pts
            t.probs += face.smoothed if face.smoothed is not None else face.probabilities
            t.labels[face.emotion] += 1

    def summary(self) -> dict:
        cameras = {}
        for cid, st in self.stats().items():
            st = st.to_dict() if hasattr(st, "to_dict") else dict(st)
            tracks = self._tracks.get(cid, {})
            st["faces_detected"] = st.get("faces")
            st["tracks"] = [
                {"track_id": tid, "frames": t.frames, "frames_detected": t.detected, "first_seq": t.first_seq,
                 "last_seq": t.last_seq, "first_pts": t.first_pts, "last_pts": t.last_pts,
                 "dominant_emotion": dominant(t.labels),
                 "emotion_frames": dict(t.labels.most_common()),
                 "mean_probabilities": {e: round(float(p / t.frames), 4) for e, p in zip(EMOTIONS, t.probs)}}
                for tid, t in sorted(tracks.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
            ]
            st["results"] = self._frames.get(cid, [])
            st["results_truncated"] = self._truncated[cid]
            cameras[cid] = st
        out = {"emotions": list(EMOTIONS), "cameras": cameras}
        if self.extra is not None:
            out.update(self.extra())
        return out

    async def close(self) -> None:
        data = self.summary()
        tmp = self.path.with_name(self.path.name + ".tmp")
        await asyncio.to_thread(tmp.write_text, json.dumps(data, indent=1))
        os.replace(tmp, self.path)
        self.written = True
        log.info("summary written to %s", self.path)
