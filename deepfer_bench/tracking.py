"""``deepfer bench tracking``: track count, and shown-label changes per minute raw vs smoothed, on one video.

The video goes once through the real pipeline (untracked); its results are then tracked again for each smoothing
setting compared, so a sweep costs one analysis.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aggregator.tracker import FaceTracker
from deepfer_bench.machine import machine_info
from deepfer_core.settings import Settings, SmoothingSettings, TrackerSettings
from deepfer_core.types import FrameResult, Pixels
from streamer.assembly import Models, build_pipeline, load_models
from streamer.sources import open_source

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
        self.timeline: list[tuple[float, str, str]] = []  # (t, raw, shown) of every tracked face, in frame order

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
            self.timeline.append((t, raw, shown))
            rec.shown_frames[shown] = rec.shown_frames.get(shown, 0) + 1

    def switch_delay(self, cut_s: float) -> dict:
        """How long a held change of expression at ``cut_s`` (seconds from the first frame) takes to show.

        The new expression is the raw label most often given after the cut; the delay runs from the cut to the
        moment the shown label becomes it for good (None if it never does).
        """
        start = self.first_t or 0.0
        after = [(t - start, raw, shown) for t, raw, shown in self.timeline if t - start >= cut_s]
        if not after:
            return {"cut_s": cut_s, "new_label": None, "shown_delay_s": None, "raw_delay_s": None}
        labels = [raw for _, raw, _ in after]
        new = max(set(labels), key=labels.count)
        last_other = max((i for i, (_, _, shown) in enumerate(after) if shown != new), default=-1)
        shown_at = after[last_other + 1][0] if last_other + 1 < len(after) else None
        raw_at = next(t for t, raw, _ in after if raw == new)
        return {"cut_s": cut_s, "new_label": new, "new_label_share": round(labels.count(new) / len(labels), 3),
                "shown_delay_s": None if shown_at is None else round(shown_at - cut_s, 3),
                "raw_delay_s": round(raw_at - cut_s, 3)}

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


class UntrackedResults:
    """A ``ResultSink`` keeping every frame's untracked faces (images dropped), to be tracked any number of times."""

    def __init__(self, max_frames: int | None, stop: Callable[[], None]):
        self.results: list[FrameResult] = []
        self.max_frames = max_frames
        self.stop = stop

    async def handle(self, result: FrameResult) -> None:
        if self.max_frames is not None and len(self.results) >= self.max_frames:
            return
        frame = dataclasses.replace(result.frame, pixels=Pixels.of(NO_IMAGE))
        self.results.append(dataclasses.replace(result, frame=frame))
        if self.max_frames is not None and len(self.results) >= self.max_frames:
            self.stop()

    async def close(self) -> None:
        pass


async def analyse_file(settings: Settings, models: Models, path: Path,
                       max_frames: int | None = None) -> list[FrameResult]:
    """Every frame of a video file through the pipeline (its detection schedule, carried boxes and classifier
    batches), untracked, in frame order, with times from the file's own timestamps."""
    pipeline = build_pipeline(settings, models, track=False)
    collected = UntrackedResults(max_frames, pipeline.request_stop)
    pipeline.add_sink(collected)
    pipeline.add_source(open_source(str(path), "video", settings.sources, settings.pipeline))
    await pipeline.run(until_idle=True)
    processed = sum(s.frames_processed for s in pipeline.stats().values())
    expected = processed if max_frames is None else min(processed, max_frames)
    if len(collected.results) < expected:  # a failing sink is only logged by the pipeline: the figures would lie
        raise ValueError(f"tracking benchmark: {expected - len(collected.results)} of {expected} analysed frames "
                         f"never reached the benchmark (see the log above)")
    return collected.results


def track_results(results: list[FrameResult], tracker: TrackerSettings, smoothing: SmoothingSettings,
                  cut_s: float | None = None) -> dict:
    """Run a fresh FaceTracker over untracked results; the TrackingStats report (and the switch delay at
    ``cut_s`` when given)."""
    face_tracker = FaceTracker(tracker, smoothing)
    stats = TrackingStats()
    for r in results:
        stats.add(face_tracker.update(dataclasses.replace(r)))
    report = stats.report()
    if cut_s is not None:
        report["switch"] = stats.switch_delay(cut_s)
    report["half_life_s"] = smoothing.half_life_s
    report["switch_margin"] = smoothing.switch_margin
    return report


def bench_tracking(settings: Settings, source: Path, sweep: Sequence[SmoothingSettings] = (),
                   max_frames: int | None = None, say: Callable[[str], None] = print,
                   cut_s: float | None = None) -> dict:
    """Tracks and label changes with the configured smoothing, plus each setting of ``sweep`` when given; with
    ``cut_s`` (a clip whose held expression changes then, e.g. ``deepfer_bench.clips.expression_change``) also how
    long the
    change takes to show."""
    models = load_models(settings)
    say(f"analysing {source} with {models.detector.name} (detect every {settings.detector.detect_every}) + "
        f"{models.classifier.name}")
    started = time.perf_counter()
    results = asyncio.run(analyse_file(settings, models, source, max_frames))
    analysis_s = time.perf_counter() - started
    main_run = track_results(results, settings.tracker, settings.smoothing, cut_s)
    runs = [track_results(results, settings.tracker, c, cut_s) for c in sweep]
    return {"benchmark": "tracking", "source": str(source), "weights": str(getattr(models.classifier, "path", "")),
            "model": models.classifier.name, "detector": models.detector.name,
            "detect_every": settings.detector.detect_every, "max_side": settings.detector.max_side,
            "analysis_s": round(analysis_s, 2), "tracker": settings.tracker.model_dump(), **main_run,
            "sweep": [{k: v for k, v in r.items() if k != "per_track"} for r in runs], "machine": machine_info()}
