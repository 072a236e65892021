"""Detect only where and when it is needed: what the detector does on each frame of a camera.

A ``DetectionScheduler`` (one per camera) looks at each frame the detector would see and answers with a
``DetectJob`` or None:

* nothing moved since the detector last ran (``MotionGate``): None, the boxes and emotions are carried;
* motion only on or around known faces: refine those faces (R-Net + O-Net on their last boxes); a face refinement
  loses is looked for again by the whole MTCNN in a region three times its size around where it was;
* motion elsewhere, in small regions: MTCNN on those regions only, and the known faces refined;
* motion over more than ``gating.full_above`` of the frame away from known faces: a full detection, at most every
  ``gating.full_min_interval_s`` (known faces are refined in between);
* ``gating.full_every_s`` since the last full detection: a full detection whatever moved, so a face that stands still
  or was missed is found again.

``run_jobs`` carries out a batch of jobs with one detector call per kind. The known faces come from the caller (the
pipeline gives the camera's previous detection: fresher than a tracker that runs frames behind, and the same at any
speed); detectors without ``refine`` and
``detect_regions`` (Haar) get full detections where MTCNN would get parts.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from core.protocols import FaceDetector
from core.settings import DetectorSettings, GatingSettings
from core.types import FaceBox
from detectors.motion import MotionGate, grow, inside, merge
from detectors.scaling import dedupe

# A known face whose refined box overlaps it by less than this (IoU) was lost by refinement.
LOST_IOU = 0.3


@dataclass(frozen=True)
class DetectJob:
    """What the detector does on one frame: a full detection, or MTCNN on ``regions`` and/or R-Net/O-Net on
    ``known`` boxes (original pixels)."""

    image: np.ndarray
    full: bool = True
    regions: list[FaceBox] = field(default_factory=list)
    known: list[FaceBox] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "full" if self.full else "regions" if self.regions else "refine"


@dataclass
class ScheduleCounts:
    full: int = 0
    regions: int = 0
    refined: int = 0
    still: int = 0  # looked at, nothing to do (nothing moved, or no face known and a full detection ran just now)


class DetectionScheduler:
    """One camera's choice of detector work per frame (frames in order); ``gating.enabled = false``: always full."""

    def __init__(self, gating: GatingSettings, detector_settings: DetectorSettings, detector: FaceDetector,
                 phase_seed: str | None = None):
        self.settings = gating
        self.min_face = detector_settings.min_face_size
        self.gate = MotionGate(gating) if gating.enabled else None
        self.can_refine = gating.refine and hasattr(detector, "refine")
        self.can_regions = hasattr(detector, "detect_regions")
        self.last_full_at: float | None = None
        self.counts = ScheduleCounts()
        # Cameras started together would run their periodic full detections together, in one long batch; a phase
        # drawn from the camera id (the same on every run) spreads them over the period.
        self._phase = random.Random(phase_seed).uniform(0, gating.full_every_s) if phase_seed is not None else 0.0

    def plan(self, image: np.ndarray, t: float, known: Callable[[], list[FaceBox]]) -> DetectJob | None:
        """The job for the frame ``image`` captured at ``t`` (stream seconds), or None: carry the last boxes.
        ``known()``: where the camera's faces are expected now (asked only when something moved)."""
        job = self._choose(image, t, known)
        c = self.counts
        if job is None:
            c.still += 1
            return None
        if job.full:
            c.full += 1
            self.last_full_at = t - self._phase if self.last_full_at is None else t

        elif job.regions:
            c.regions += 1
        else:
            c.refined += 1
        return job

    def _choose(self, image: np.ndarray, t: float, known_fn: Callable[[], list[FaceBox]]) -> DetectJob | None:
        if self.gate is None:
            return DetectJob(image)
        s = self.settings
        since_full = float("inf") if self.last_full_at is None else t - self.last_full_at
        motion = self.gate.check(image)
        if since_full >= s.full_every_s:
            self.gate.accept(motion)
            return DetectJob(image)
        if motion.still:
            return None
        h, w = image.shape[:2]
        known = known_fn() if self.can_refine else []
        zones = [grow(k, s.track_margin, 0.0, w, h) for k in known]
        outside = [r for r in motion.regions if not any(inside(r, z) for z in zones)]
        job: DetectJob | None = None
        if not outside:
            job = DetectJob(image, full=False, known=known)
        else:
            regions = merge([grow(r, s.region_pad, self.min_face, w, h) for r in outside])
            if self.can_regions and sum(r.width * r.height for r in regions) <= s.full_above * w * h:
                job = DetectJob(image, full=False, regions=regions, known=known)
            elif since_full >= s.full_min_interval_s:
                job = DetectJob(image)
            elif known:
                job = DetectJob(image, full=False, known=known)
        if job is not None:
            self.gate.accept(motion)
        return job


def run_jobs(detector: FaceDetector, jobs: Sequence[DetectJob]) -> list[list[FaceBox]]:
    """Faces per job: full frames in one detector call, regions in another, refinements in a third."""
    out: list[list[FaceBox]] = [[] for _ in jobs]
    full = [i for i, j in enumerate(jobs) if j.full]
    if full:
        for i, boxes in zip(full, detector.detect([jobs[i].image for i in full])):
            out[i] = boxes
    parts = [i for i, j in enumerate(jobs) if not j.full]
    regions = [i for i in parts if jobs[i].regions]
    if regions:
        found = detector.detect_regions([jobs[i].image for i in regions], [jobs[i].regions for i in regions])
        for i, boxes in zip(regions, found):
            out[i] += boxes
    known = [i for i in parts if jobs[i].known]
    if known:
        found = detector.refine([jobs[i].image for i in known], [jobs[i].known for i in known])
        lost: dict[int, list[FaceBox]] = {}
        for i, boxes in zip(known, found):
            out[i] += boxes
            h, w = jobs[i].image.shape[:2]
            gone = [k for k in jobs[i].known if not any(_overlap(k, b) > LOST_IOU for b in boxes)]
            if gone:  # turned, blurred or moved too far for O-Net: the whole MTCNN around where it was
                lost[i] = merge([grow(k, 1.0, 0.0, w, h) for k in gone])
        if lost:
            again = detector.detect_regions([jobs[i].image for i in lost], list(lost.values()))
            for i, boxes in zip(lost, again):
                out[i] += boxes
    for i in parts:
        out[i] = dedupe(out[i])
    return out


def _overlap(a: FaceBox, b: FaceBox) -> float:
    iw = min(a.x2, b.x2) - max(a.x1, b.x1)
    ih = min(a.y2, b.y2) - max(a.y1, b.y1)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / (a.width * a.height + b.width * b.height - inter)
