"""Detections and tracks against a crowd clip's ground truth: recall and precision by face size at IoU 0.5, and
identity continuity (tracks per true person, identity switches).

Per frame, detections and true faces are paired one-to-one by the assignment that maximises the total IoU. A pair at
IoU >= ``min_iou`` with a required face is a hit; with an ignored face (mostly hidden, or mostly outside the frame) it
counts neither way. A detection left over is a false alarm unless it overlaps an ignored face. Sizes are the true
box's long side for hits and misses, the detection's for false alarms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from aggregator.kalman import iou_matrix
from deepfer_bench.crowd_clip import CrowdTruth

BUCKETS: tuple[tuple[str, float, float], ...] = (("<32", 0, 32), ("32-64", 32, 64), ("64-128", 64, 128),
                                                 (">=128", 128, float("inf")))


@dataclass(frozen=True)
class Found:
    """One detected face of one frame: its box and, when tracked, its track id."""

    x1: float
    y1: float
    x2: float
    y2: float
    track_id: int | None = None

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


def bucket_of(size: float) -> str:
    return next(name for name, lo, hi in BUCKETS if lo <= size < hi)


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def score(truth: CrowdTruth, found: Sequence[Sequence[Found]], min_iou: float = 0.5) -> dict:
    """Recall, precision and identity figures of ``found`` (one list per frame, frame 0 first; frames beyond the
    list are not scored)."""
    hits = {name: 0 for name, _, _ in BUCKETS}
    misses = dict(hits)
    alarms = dict(hits)
    tracks: dict[int, list[int]] = {}  # person -> track id of each frame it was hit with a tracked box
    for faces, dets in zip(truth.frames, found):
        matched_truth: set[int] = set()
        matched_det: set[int] = set()
        iou = np.zeros((len(faces), len(dets)))
        if faces and dets:
            iou = iou_matrix(np.array([f.xyxy for f in faces], float), np.array([d.xyxy for d in dets], float))
            for r, c in zip(*linear_sum_assignment(-iou)):
                if iou[r, c] >= min_iou:
                    matched_truth.add(int(r))
                    matched_det.add(int(c))
                    if not faces[r].ignore:
                        hits[bucket_of(faces[r].size)] += 1
                        if dets[c].track_id is not None:
                            tracks.setdefault(faces[r].person, []).append(dets[c].track_id)
        for r, f in enumerate(faces):
            if r not in matched_truth and not f.ignore:
                misses[bucket_of(f.size)] += 1
        ignored = [r for r, f in enumerate(faces) if f.ignore]
        for c, d in enumerate(dets):
            if c in matched_det or (ignored and iou[ignored, c].max() >= min_iou):
                continue
            alarms[bucket_of(max(d.x2 - d.x1, d.y2 - d.y1))] += 1
    by_size = {name: {"faces": hits[name] + misses[name], "found": hits[name], "false": alarms[name],
                      "recall": _ratio(hits[name], hits[name] + misses[name]),
                      "precision": _ratio(hits[name], hits[name] + alarms[name])} for name, _, _ in BUCKETS}
    h, m, a = sum(hits.values()), sum(misses.values()), sum(alarms.values())
    h32 = h - hits["<32"]
    m32 = m - misses["<32"]
    return {"min_iou": min_iou, "frames": min(len(truth.frames), len(found)), "faces": h + m, "found": h,
            "false": a, "recall": _ratio(h, h + m), "precision": _ratio(h, h + a),
            "recall_32_up": _ratio(h32, h32 + m32), "by_size": by_size, "identity": identity(tracks, truth)}


def identity(tracks: dict[int, list[int]], truth: CrowdTruth) -> dict:
    """Tracks per true person (1.0 is perfect) and identity switches (the track id on a person changing between two
    of its hit frames), over the people that were hit with a tracked box at least once."""
    people = {f.person for faces in truth.frames for f in faces if not f.ignore}
    per_person = {p: len(set(ids)) for p, ids in tracks.items()}
    switches = sum(sum(a != b for a, b in zip(ids, ids[1:])) for ids in tracks.values())
    owners: dict[int, set[int]] = {}
    for p, ids in tracks.items():
        for t in ids:
            owners.setdefault(t, set()).add(p)
    return {"people": len(people), "people_tracked": len(tracks),
            "tracks_per_person": round(sum(per_person.values()) / len(per_person), 3) if per_person else None,
            "max_tracks_per_person": max(per_person.values(), default=0),
            "identity_switches": int(switches),
            "tracks_on_several_people": sum(len(ps) > 1 for ps in owners.values())}
