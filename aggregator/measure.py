"""Measuring tracking and smoothing on a video: track count, and shown-label changes per minute raw vs smoothed.

``TrackingStats`` is a ``ResultSink``, so it can also sit at the end of the live
pipeline. ``analyse_video`` is the small offline loop behind ``deepfer bench
tracking``: detect every k-th frame (boxes carried between), classify every
frame, in frame order, with time taken from the video's own timestamps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from aggregator.tracker import FaceTracker
from classifier.inference import Classifier, crop_faces
from detectors.base import FaceDetector
from streamer.config import SmoothingSettings, TrackerSettings
from streamer.results import FaceResult, Frame, FrameResult

NO_IMAGE = np.zeros((1, 1, 3), np.uint8)


@dataclass
class TrackRecord:
    track_id: int
    first_t: float
    last_t: float
    frames: int = 0
    raw_changes: int = 0
    shown_changes: int = 0
    last_raw: str | None = None
    last_shown: str | None = None
    shown_frames: dict[str, int] = field(default_factory=dict)

    @property
    def minutes(self) -> float:
        return (self.last_t - self.first_t) / 60.0


class TrackingStats:
    """Counts tracks and, per track, how often the raw (per-frame argmax) and the shown label change."""

    def __init__(self) -> None:
        self.tracks: dict[tuple[str, int], TrackRecord] = {}
        self.frames = 0
        self.faces = 0
        self.tentative_faces = 0
        self.first_t: float | None = None
        self.last_t: float | None = None

    async def handle(self, result: FrameResult) -> None:
        self.add(result)

    async def close(self) -> None:
        pass

    def add(self, result: FrameResult) -> None:
        t = result.frame.captured_at
        self.frames += 1
        self.first_t = t if self.first_t is None else min(self.first_t, t)
        self.last_t = t if self.last_t is None else max(self.last_t, t)
        for face in result.faces:
            self.faces += 1
            if face.track_id is None:
                self.tentative_faces += 1
                continue
            rec = self.tracks.setdefault((result.camera_id, face.track_id), TrackRecord(face.track_id, t, t))
            rec.last_t = t
            rec.frames += 1
            raw, shown = face.raw_label, face.emotion
            rec.raw_changes += rec.last_raw is not None and raw != rec.last_raw
            rec.shown_changes += rec.last_shown is not None and shown != rec.last_shown
            rec.last_raw, rec.last_shown = raw, shown
            rec.shown_frames[shown] = rec.shown_frames.get(shown, 0) + 1

    def report(self) -> dict:
        minutes = sum(r.minutes for r in self.tracks.values())
        raw = sum(r.raw_changes for r in self.tracks.values())
        shown = sum(r.shown_changes for r in self.tracks.values())
        return {
            "frames": self.frames,
            "duration_s": round((self.last_t or 0) - (self.first_t or 0), 3),
            "faces": self.faces,
            "tentative_faces": self.tentative_faces,
            "tracks": len(self.tracks),
            "track_minutes": round(minutes, 4),
            "raw_label_changes": raw,
            "smoothed_label_changes": shown,
            "raw_changes_per_min": round(raw / minutes, 2) if minutes else None,
            "smoothed_changes_per_min": round(shown / minutes, 2) if minutes else None,
            "per_track": [{"camera_id": cam, "track_id": r.track_id, "first_t": round(r.first_t, 3),
                           "last_t": round(r.last_t, 3), "frames": r.frames, "raw_changes": r.raw_changes,
                           "smoothed_changes": r.shown_changes, "shown_frames": r.shown_frames}
                          for (cam, _), r in sorted(self.tracks.items())],
        }


def decode_video(path: Path, max_frames: int | None = None) -> Iterator[tuple[np.ndarray, float]]:
    """RGB frames and their time in seconds from the start of the file."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise ValueError(f"cannot open video {path}: {exc}") from None
    with container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 30)
        for i, frame in enumerate(container.decode(stream)):
            if max_frames is not None and i >= max_frames:
                return
            yield frame.to_ndarray(format="rgb24"), frame.time if frame.time is not None else i / rate


def analyse_video(path: Path, detector: FaceDetector, classifier: Classifier, detect_every: int = 1,
                  crop_margin: float = 0.2, classify_carried: bool = True, camera_id: str = "video",
                  start_at: float = 0.0, max_frames: int | None = None) -> list[FrameResult]:
    """Untracked results for every frame (images dropped to save memory), ready to be tracked any number of times.

    As in the pipeline, frames between detections carry the last boxes; their crops
    are classified again unless ``classify_carried`` is off (then the last probabilities are reused).
    """
    results: list[FrameResult] = []
    boxes: list = []
    probs: np.ndarray | list = []
    for i, (image, pts) in enumerate(decode_video(path, max_frames)):
        detected = i % detect_every == 0
        if detected:
            boxes = detector.detect([image])[0]
        if detected or classify_carried:
            probs = classifier.predict_faces(crop_faces(image, [b.xyxy for b in boxes], crop_margin)) if boxes else []
        faces = [FaceResult(b, np.asarray(p, np.float32), detected=detected) for b, p in zip(boxes, probs)]
        results.append(FrameResult(Frame(camera_id, i, start_at + pts, NO_IMAGE, pts), faces, processed_at=start_at + pts))
    return results


def track_results(results: list[FrameResult], tracker: TrackerSettings, smoothing: SmoothingSettings) -> dict:
    """Run a fresh FaceTracker over untracked results; the TrackingStats report."""
    face_tracker = FaceTracker(tracker, smoothing)
    stats = TrackingStats()
    for r in results:
        stats.add(face_tracker.update(dataclasses.replace(r)))
    report = stats.report()
    report["half_life_s"] = smoothing.half_life_s
    report["switch_margin"] = smoothing.switch_margin
    return report
