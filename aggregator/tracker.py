"""Per-camera face tracking: stable track ids and smoothed emotions for the faces of one camera.

Each frame, every live track predicts where its face is now (constant-velocity
Kalman filter, or its last box), detections are assigned to tracks by IoU with
scipy's Hungarian solver, and unmatched detections start tentative tracks.

* Birth: a tentative track becomes a person, with the next id of this camera
  (1, 2, ...), after ``min_hits`` consecutive detected frames. Its faces carry
  ``track_id=None`` until then (they are still in the result, so the video shows a
  box, but the Redis sink stores only born tracks). A tentative track that misses
  one frame is dropped: that filters one-frame false detections.
* Death: a born track unseen for ``max_age_s`` seconds ends; its id is never
  reused, so a person who comes back later gets a new id (re-entry).
* Boxes carried between detections (``detected=False``) keep a track alive but
  do not count as hits.
* Time comes from ``frame.captured_at``, so files give the same tracks at any
  processing speed and smoothing does not depend on the frame rate.

ByteTrack's second round for low-score detections is not used: the detector
already drops faces below ``detector.min_confidence``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from aggregator.kalman import BoxKalman, iou_matrix
from aggregator.smoothing import EmotionSmoother
from deepfer_core.confidence import is_confident
from deepfer_core.settings import ConfidenceSettings, SmoothingSettings, TrackerSettings
from deepfer_core.types import UNCERTAIN, FaceBox, FaceResult, FrameResult


@dataclass
class Track:
    """One face followed over time; ``track_id`` is None while the track is tentative."""

    track_id: int | None
    box: FaceBox  # last matched box
    first_seen: float
    last_seen: float
    smoother: EmotionSmoother
    kalman: BoxKalman | None
    hits: int = 1
    missed: bool = False  # unmatched in the latest frame

    def predicted(self, t: float) -> np.ndarray:
        return self.kalman.predict(t) if self.kalman is not None else np.array(self.box.xyxy, dtype=np.float64)


class FaceTracker:
    """Tracks the faces of one camera. Call ``update`` once per frame, in frame order."""

    def __init__(self, tracker: TrackerSettings, smoothing: SmoothingSettings,
                 confidence: ConfidenceSettings | None = None):
        self.settings = tracker
        self.smoothing = smoothing
        # None: every face keeps its emotion (benches of the smoothing); the pipeline passes settings.confidence
        self.confidence = confidence or ConfidenceSettings(enabled=False)
        self.tracks: list[Track] = []
        self._next_id = 1

    @property
    def track_count(self) -> int:
        """How many tracks were born on this camera so far (the number of people counted)."""
        return self._next_id - 1

    def update(self, result: FrameResult) -> FrameResult:
        """A copy of ``result`` whose faces carry ``track_id``, ``smoothed`` and the shown ``label``."""
        t = result.frame.captured_at
        faces = result.faces
        matches, unmatched_faces = self._associate(faces, t)
        out: list[FaceResult | None] = [None] * len(faces)
        matched_tracks = set()
        for ti, fi in matches:
            track, face = self.tracks[ti], faces[fi]
            matched_tracks.add(ti)
            track.box = face.box
            track.missed = False
            track.last_seen = max(track.last_seen, t)
            if track.kalman is not None:
                track.kalman.update(face.box)
            if face.detected:
                track.hits += 1
            if track.track_id is None and track.hits >= self.settings.min_hits:
                track.track_id = self._next_id
                self._next_id += 1
            out[fi] = self._tracked(face, track, t)
        for i, track in enumerate(self.tracks):
            if i not in matched_tracks:
                track.missed = True
        survivors = [tr for i, tr in enumerate(self.tracks) if i in matched_tracks or self._alive(tr, t)]
        for fi in unmatched_faces:
            track = self._start(faces[fi], t)
            survivors.append(track)
            out[fi] = self._tracked(faces[fi], track, t)
        self.tracks = survivors
        return dataclasses.replace(result, faces=[f for f in out if f is not None])

    def _alive(self, track: Track, t: float) -> bool:
        """An unmatched track survives only if born and seen within ``max_age_s``."""
        return track.track_id is not None and t - track.last_seen <= self.settings.max_age_s

    def _start(self, face: FaceResult, t: float) -> Track:
        kalman = None
        if self.settings.use_kalman:
            kalman = BoxKalman(face.box, t, self.settings.process_noise, self.settings.measurement_noise)
        track = Track(None, face.box, t, t, EmotionSmoother(self.smoothing), kalman, hits=1 if face.detected else 0)
        if track.hits >= self.settings.min_hits:
            track.track_id = self._next_id
            self._next_id += 1
        return track

    def _tracked(self, face: FaceResult, track: Track, t: float) -> FaceResult:
        smoothed, label = track.smoother.update(face.probabilities, t)
        if track.track_id is None:
            return face
        # a small or unsure face is still a person: tracked, counted, but its label stays out of the emotion mix
        confident = is_confident(face.box, smoothed, self.confidence)
        return dataclasses.replace(face, track_id=track.track_id, smoothed=smoothed,
                                   label=label if confident else UNCERTAIN, confident=confident)

    def _associate(self, faces: list[FaceResult], t: float) -> tuple[list[tuple[int, int]], list[int]]:
        """Hungarian assignment on 1 - IoU with the predicted boxes; pairs below ``iou_threshold`` do not match.

        A second round (OC-SORT's observation-centric recovery) offers the detections
        left over to tracks that missed the previous frame, by IoU with where they were
        last seen: a face that stopped while hidden is not where its old speed predicts.
        """
        if not self.tracks or not faces:
            return [], list(range(len(faces)))
        dets = np.array([f.box.xyxy for f in faces], dtype=np.float64)
        predicted = np.array([tr.predicted(t) for tr in self.tracks])
        matches = self._solve(iou_matrix(predicted, dets))
        if self.settings.use_kalman:
            taken_t = {r for r, _ in matches}
            taken_f = {c for _, c in matches}
            lost = [i for i, tr in enumerate(self.tracks) if tr.missed and i not in taken_t]
            left = [j for j in range(len(faces)) if j not in taken_f]
            if lost and left:
                last = np.array([self.tracks[i].box.xyxy for i in lost], dtype=np.float64)
                again = self._solve(iou_matrix(last, dets[left]))
                matches += [(lost[r], left[c]) for r, c in again]
        matched = {c for _, c in matches}
        return matches, [j for j in range(len(faces)) if j not in matched]

    def _solve(self, iou: np.ndarray) -> list[tuple[int, int]]:
        cost = np.where(iou >= self.settings.iou_threshold, 1.0 - iou, 1e6)
        rows, cols = linear_sum_assignment(cost)
        return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] < 1e6]
