"""Detect only where and when it is needed: what the detector does on each frame of a camera.

A ``DetectionScheduler`` (one per camera) looks at each frame the detector would see and answers with a ``Plan``:

* nothing moved since the detector last ran (``MotionGate``): nothing, the boxes and emotions are carried;
* motion only on or around known faces: refine those faces (R-Net + O-Net on their last boxes); a face refinement
  loses is looked for again by the whole MTCNN in a region three times its size around where it was;
* motion elsewhere, in small regions: MTCNN on those regions only, and the known faces refined; with
  ``gating.discover_every_s``, at most that often: the frames between get their known faces refined, and the next
  search covers everything that changed since the last one (a face that walked in and stopped is not missed);
* motion over more than ``gating.full_above`` of the frame away from known faces: a full detection, at most every
  ``gating.full_min_interval_s`` (known faces are refined in between);
* ``gating.full_every_s`` since the last full detection: a full detection, so a face that stands still or was missed
  is found again; while nothing moved since that detection (the same pixels give the same faces), only every
  ``gating.still_full_every_s``.

On a live camera (``beside``) that knows faces, a full detection does not hold up the frame it was planned on: that
frame gets its known faces refined at once, the full pass runs beside the stream, and the faces it finds that nobody
knew (``found``) are refined on the next frame the detector sees. A camera that knows no face, and every file, waits
for it (files then give the same boxes at any speed).

``run_jobs`` carries out a batch of jobs with one detector call per kind. The known faces come from the caller (the
pipeline gives the camera's previous detection: fresher than a tracker that runs frames behind, and the same at any
speed); a detector that is no ``PartialDetector`` (Haar) gets full detections where MTCNN would get parts.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from deepfer_core.protocols import FaceDetector, PartialDetector
from deepfer_core.settings import DetectorSettings, GatingSettings
from deepfer_core.types import FaceBox, Pixels
from detectors.motion import Motion, MotionGate, grow, inside, merge
from detectors.prediction import FaceMotion
from detectors.scaling import dedupe

# A known face whose refined box overlaps it by less than this (IoU) was lost by refinement; a face a full detection
# found that overlaps no known face by more than this is a new one.
LOST_IOU = 0.3


@dataclass(frozen=True)
class DetectJob:
    """What the detector does on one frame: a full detection, or MTCNN on ``regions`` and/or R-Net/O-Net on
    ``known`` boxes (original pixels)."""

    pixels: Pixels
    full: bool = True
    regions: list[FaceBox] = field(default_factory=list)
    known: list[FaceBox] = field(default_factory=list)
    lost_min_face: float = 0.0  # a known face refinement loses is looked for at sizes from this fraction of its own

    def __post_init__(self) -> None:
        object.__setattr__(self, "pixels", Pixels.of(self.pixels))

    @property
    def image(self) -> np.ndarray:
        """The frame in RGB (converted on first use: ask in the worker that runs the detector)."""
        return self.pixels.rgb()

    @property
    def kind(self) -> str:
        return "full" if self.full else "regions" if self.regions else "refine"

    @property
    def idle(self) -> bool:
        """Nothing to run: no full pass, no region, no known face (its answer is no face)."""
        return not (self.full or self.regions or self.known)


@dataclass(frozen=True)
class Plan:
    """The detector's work for one frame: ``now``, what the frame waits for (None: nothing moved, carry the last
    boxes); ``beside``, a full detection that runs without holding the frame up (its faces: ``found``)."""

    now: DetectJob | None = None
    beside: DetectJob | None = None

    @property
    def kind(self) -> str:
        if self.beside is not None:
            return "full"
        return self.now.kind if self.now is not None else "still"


@dataclass
class ScheduleCounts:
    full: int = 0  # full detections, awaited or beside the stream
    beside: int = 0  # of those, beside the stream (the frame got its known faces refined)
    regions: int = 0
    refined: int = 0
    still: int = 0  # looked at, nothing to do (nothing moved, or no face known and a full detection ran just now)


class DetectionScheduler:
    """One camera's choice of detector work per frame (frames in order); ``gating.enabled = false``: always full.
    ``beside``: full detections run beside the stream (live cameras; needs a detector that refines). ``confirm``:
    after a detection that can find new faces (full, regions), the known faces are refined on this many more frames
    the detector sees even if nothing moved, so a face found on a still picture gets the detections a tracker
    needs to confirm it (the pipeline gives ``tracker.min_hits - 1``)."""

    def __init__(self, gating: GatingSettings, detector_settings: DetectorSettings, detector: FaceDetector,
                 phase_seed: str | None = None, beside: bool = False, confirm: int = 0):
        self.settings = gating
        self.min_face = detector_settings.min_face_size
        # full detections also look at the motion regions at native resolution (the small faces a downscaled pass
        # misses), while they cover at most gating.full_regions_above of the frame
        self.full_regions = gating.full_regions_above > 0 and detector_settings.region_native
        self.gate = MotionGate(gating) if gating.enabled else None
        self.can_regions = isinstance(detector, PartialDetector)
        self.can_refine = gating.refine and self.can_regions
        self.beside = beside and self.can_refine and self.gate is not None
        self.last_full_at: float | None = None
        self.counts = ScheduleCounts()
        self._full_reference: np.ndarray | None = None  # the grey copy the last full detection saw
        self._searching = False  # a full detection beside the stream has not answered yet
        self._found: list[FaceBox] = []  # the faces it found, for the next plan
        self.confirm = confirm
        self._confirming = 0  # frames left on which known faces are refined even if nothing moved
        self._last_known: list[FaceBox] = []  # the faces known at the last plan that asked
        self._lost: list[tuple[FaceBox, float]] = []  # faces lost since, and when: looked for where they were
        self._last_discovery: float | None = None  # when motion regions were last searched for new faces
        self._discovery_reference: np.ndarray | None = None  # the grey copy that search (or a full detection) saw
        self._deferred = False  # motion away from known faces waits for the next search
        self.face_motion = FaceMotion(gating.track_margin) if gating.follow_motion and self.can_refine else None
        self._last_job_at: float | None = None  # when the last frame the detector ran on was captured
        # Cameras started together would run their periodic full detections together, in one long batch; a phase
        # drawn from the camera id (the same on every run) spreads them over the period.
        self._phase = random.Random(phase_seed).uniform(0, gating.full_every_s) if phase_seed is not None else 0.0

    def found(self, boxes: list[FaceBox]) -> None:
        """The faces the full detection beside the stream found (none if it failed): known from the next plan on."""
        self._searching = False
        self._found = list(boxes)
        self._confirming = self.confirm

    def plan(self, pixels: Pixels | np.ndarray, t: float, known: Callable[[], list[FaceBox]],
             known_at: float | None = None) -> Plan:
        """The plan for the frame captured at ``t`` (stream seconds). ``known()``: the camera's faces as last
        detected, on the frame captured at ``known_at`` (default: the last frame this scheduler gave a job), asked
        only when something moved or a full detection found faces; with ``gating.follow_motion`` they are moved on
        by their velocity to where they should be at ``t``."""
        pixels = Pixels.of(pixels)
        at = known_at if known_at is not None else self._last_job_at
        plan = self._choose(pixels, t, known, at)
        if plan.now is not None:
            self._last_job_at = t
        c = self.counts
        if plan.kind == "full":
            c.full += 1
            c.beside += plan.beside is not None
            self.last_full_at = t - self._phase if self.last_full_at is None else t
        elif plan.now is None:
            c.still += 1
        elif plan.now.regions:
            c.regions += 1
        else:
            c.refined += 1
        return plan

    def _choose(self, pixels: Pixels, t: float, known_fn: Callable[[], list[FaceBox]], at: float | None) -> Plan:
        if self.gate is None:
            return Plan(DetectJob(pixels))
        s = self.settings
        motion = self.gate.check(pixels)
        found, self._found = self._found, []
        memo: list[list[FaceBox]] = []
        discover = self._discovery_due(t)  # new faces may be searched for on this frame

        def known_now() -> list[FaceBox]:  # asked at most once, and only when needed
            if not memo:
                known = known_fn() if self.can_refine else []
                # faces the full detection beside the stream found that nobody knew: refined from now on
                known = known + [f for f in found if not any(_overlap(f, k) > LOST_IOU for k in known)]
                lost = self._still_lost(known, t)  # looked for again where they were, at the searches' pace
                if self.face_motion is not None and at is not None:  # where their velocity puts them now
                    known = self.face_motion.predict(known, at, t)
                memo.append(known + (lost if discover else []))
            return memo[0]

        if self._full_due(pixels, t, motion):
            return self._full(pixels, t, motion, known_now)
        confirming, self._confirming = self._confirming > 0, max(0, self._confirming - 1)
        catch_up = discover and self._deferred  # the motion deferred since the last search is searched now
        look_again = (confirming or (self._lost and discover)) and self.can_refine
        if motion.still and not found and not catch_up and not look_again:
            return Plan()
        known = known_now()
        if motion.still and not known and not catch_up:  # confirming, but there is nothing to confirm
            return Plan()
        w, h = pixels.width, pixels.height
        zones = [grow(k, s.track_margin, 0.0, w, h) for k in known]
        changed = self._since_discovery(motion, w, h) if catch_up else motion
        outside = [r for r in changed.regions if not any(inside(r, z) for z in zones)]
        plan = Plan()
        if not outside:  # all of it on known faces (or only faces just found, on a still picture)
            plan = Plan(self._parts(pixels, known))
        else:
            regions = merge([grow(r, s.region_pad, self.min_face, w, h) for r in outside])
            since_full = float("inf") if self.last_full_at is None else t - self.last_full_at
            if self.can_regions and sum(r.width * r.height for r in regions) <= s.full_above * w * h:
                if discover:
                    plan = Plan(self._parts(pixels, known, regions))
                    self._confirming = self.confirm
                else:  # searched at the next search, with whatever else changed by then
                    self._deferred = True
                    plan = Plan(self._parts(pixels, known)) if known else Plan()
            elif since_full >= s.full_min_interval_s and not self._searching:
                return self._full(pixels, t, motion, known_now)
            elif known:
                plan = Plan(self._parts(pixels, known))
        if plan.now is not None:
            self.gate.accept(motion)
            if discover:
                self._discovered(t, motion)
        return plan

    def _parts(self, pixels: Pixels, known: list[FaceBox], regions: list[FaceBox] | None = None) -> DetectJob:
        """The known faces refined, and MTCNN on ``regions``."""
        return DetectJob(pixels, full=False, regions=regions or [], known=known,
                         lost_min_face=self.settings.lost_min_face)

    def _discovery_due(self, t: float) -> bool:
        every = self.settings.discover_every_s
        return every <= 0 or self._last_discovery is None or t - self._last_discovery >= every - 1e-3

    def _discovered(self, t: float, motion: Motion) -> None:
        self._last_discovery, self._deferred = t, False
        if self.settings.discover_every_s > 0:
            self._discovery_reference = motion.small

    def _since_discovery(self, motion: Motion, width: int, height: int) -> Motion:
        """What changed since the last search for new faces (the gate compares with the last frame the detector
        ran on, and the frames between were refined only)."""
        ref, small = self._discovery_reference, motion.small
        if ref is None or small is None or ref.shape != small.shape:
            return motion
        assert self.gate is not None  # only gated plans get here
        return self.gate.compare(small, ref, width, height)

    def _still_lost(self, known: list[FaceBox], t: float) -> list[FaceBox]:
        """The faces known before and gone now, for ``gating.lost_search_s``: a face missed on one frame (a blink,
        a turn) is looked for again where it was on the next frames, even if nothing moves, instead of waiting for
        the next full detection."""
        gone = [k for k in self._last_known if not any(_overlap(k, c) > LOST_IOU for c in known)]
        self._last_known = known
        keep = self.settings.lost_search_s
        self._lost = [(b, at) for b, at in self._lost + [(g, t) for g in gone]
                      if t - at <= keep and not any(_overlap(b, c) > LOST_IOU for c in known)]
        return [b for b, _ in self._lost]

    def _full_due(self, pixels: Pixels, t: float, motion: Motion) -> bool:
        """``full_every_s`` passed since the last full detection and the picture changed since it, or
        ``still_full_every_s`` passed (changes too faint for the gate: dusk, a slow drift of the picture)."""
        s = self.settings
        since = float("inf") if self.last_full_at is None else t - self.last_full_at
        if self._searching or since < s.full_every_s:
            return False
        ref, small = self._full_reference, motion.small
        if since >= s.still_full_every_s or ref is None or small is None or ref.shape != small.shape:
            return True
        assert self.gate is not None  # only gated plans get here
        return not self.gate.compare(small, ref, pixels.width, pixels.height).still

    def _full(self, pixels: Pixels, t: float, motion: Motion, known_now: Callable[[], list[FaceBox]]) -> Plan:
        """A full detection: awaited, or beside the stream while the known faces are refined for this frame."""
        assert self.gate is not None  # only gated plans get here
        self.gate.accept(motion)
        self._full_reference = motion.small
        self._confirming = self.confirm
        self._discovered(t, motion)
        job = DetectJob(pixels, regions=self._native_regions(pixels, motion))
        known = known_now() if self.beside else []
        if not known:  # awaited: a file, or a camera knowing no face (the frame has nothing better to wait for)
            return Plan(job)
        self._searching = True
        return Plan(self._parts(pixels, known), beside=job)

    def _native_regions(self, pixels: Pixels, motion: Motion) -> list[FaceBox]:
        if not self.full_regions or not self.can_regions:
            return []
        w, h = pixels.width, pixels.height
        regions = merge([grow(r, self.settings.region_pad, self.min_face, w, h) for r in motion.regions])
        if sum(r.width * r.height for r in regions) > self.settings.full_regions_above * w * h:
            return []
        return regions


def run_jobs(detector: FaceDetector, jobs: Sequence[DetectJob]) -> list[list[FaceBox]]:
    """Faces per job: full frames in one detector call, regions in another, refinements in a third; a face
    refinement lost is looked for where it was, at sizes from the job's ``lost_min_face`` of its own."""
    out: list[list[FaceBox]] = [[] for _ in jobs]
    full = [i for i, j in enumerate(jobs) if j.full]
    if full:
        for i, boxes in zip(full, detector.detect([jobs[i].image for i in full])):
            out[i] = boxes
        native = [i for i in full if jobs[i].regions]  # full detections that also look at motion regions natively
        if native and isinstance(detector, PartialDetector):
            found = detector.detect_regions([jobs[i].image for i in native], [jobs[i].regions for i in native])
            for i, boxes in zip(native, found):
                out[i] = dedupe(out[i] + boxes)
    parts = [i for i, j in enumerate(jobs) if not j.full]
    if not parts:
        return out
    if not isinstance(detector, PartialDetector):  # schedulers plan parts only for partial detectors
        raise TypeError(f"the {detector.name} detector looks at whole frames only, not at regions or known faces")
    regions = [i for i in parts if jobs[i].regions]
    if regions:
        found = detector.detect_regions([jobs[i].image for i in regions], [jobs[i].regions for i in regions])
        for i, boxes in zip(regions, found):
            out[i] += boxes
    known = [i for i in parts if jobs[i].known]
    if known:
        found = detector.refine([jobs[i].image for i in known], [jobs[i].known for i in known])
        lost: dict[int, list[tuple[FaceBox, float]]] = {}
        for i, boxes in zip(known, found):
            out[i] += boxes
            h, w = jobs[i].image.shape[:2]
            gone = [k for k in jobs[i].known if not any(_overlap(k, b) > LOST_IOU for b in boxes)]
            if gone:  # turned, blurred or moved too far for O-Net: the whole MTCNN around where it was
                around = [grow(k, 1.0, 0.0, w, h) for k in gone]
                # each merged region looks for faces from the smallest lost face's size in it
                lost[i] = [(r, min(jobs[i].lost_min_face * max(k.width, k.height)
                                   for k, a in zip(gone, around) if inside(a, r)))
                           for r in merge(around)]
        if lost:
            again = detector.detect_regions([jobs[i].image for i in lost], [[r for r, _ in v] for v in lost.values()],
                                            [[m for _, m in v] for v in lost.values()])
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
