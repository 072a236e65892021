"""Where the known faces are now: each face's last two detections give its velocity.

A camera short of CPU analyses frames far apart (0.2-1 s on a busy 1080p crowd): a walker has moved by then further
than R-Net/O-Net follow from its last box (about a third of its size), refinement loses it, and finding it again costs
a search around where it was. Moving each box on by its face's velocity since the detection before keeps refinement
on the face. Faces are paired between the two detections by the nearest centre among boxes of similar size."""

from __future__ import annotations

import math
from collections.abc import Sequence

from deepfer_core.types import FaceBox

SIMILAR_SIZE = 1.5  # two boxes whose sizes differ by more than this factor are not the same face
NEAR = 1.5  # nor two whose centres are further apart than this many box sizes
# Refinement follows a face that moved up to about a third of its size by itself: a box moves only when its face is
# expected further than this many box sizes away (below, the velocity of a small face is mostly its boxes' jitter)
FOLLOWS = 0.2


class FaceMotion:
    """One camera's known faces over time. ``max_shift``: a box moves at most this many box sizes (a wrong pairing,
    or a face that stopped, costs at most that; the search for a lost face covers a box size around the box)."""

    def __init__(self, max_shift: float):
        self.max_shift = max_shift
        self._before: tuple[float, list[FaceBox]] | None = None  # the detection before the last
        self._last: tuple[float, list[FaceBox]] | None = None

    def predict(self, boxes: Sequence[FaceBox], at: float, t: float) -> list[FaceBox]:
        """``boxes``, detected on the frame captured at ``at``, moved to where their faces should be at ``t``."""
        boxes = list(boxes)
        if self._last is None or at != self._last[0]:
            self._before, self._last = self._last, (at, boxes)
        before = self._before
        if before is None or not boxes or t <= at or at <= before[0]:
            return boxes
        ahead = (t - at) / (at - before[0])
        return [self._moved(b, before[1], ahead) for b in boxes]

    def _moved(self, box: FaceBox, before: list[FaceBox], ahead: float) -> FaceBox:
        size = max(box.width, box.height)
        was = _pair(box, before)
        if was is None or size <= 0:
            return box
        dx = (_cx(box) - _cx(was)) * ahead
        dy = (_cy(box) - _cy(was)) * ahead
        shift = math.hypot(dx, dy)
        if shift < FOLLOWS * size:
            return box
        if shift > self.max_shift * size:
            dx, dy = dx * self.max_shift * size / shift, dy * self.max_shift * size / shift
        return FaceBox(box.x1 + dx, box.y1 + dy, box.x2 + dx, box.y2 + dy, box.score)


def _pair(box: FaceBox, before: list[FaceBox]) -> FaceBox | None:
    size = max(box.width, box.height)
    best, best_d = None, NEAR * size
    for b in before:
        other = max(b.width, b.height)
        if other <= 0 or not 1 / SIMILAR_SIZE <= size / other <= SIMILAR_SIZE:
            continue
        d = math.hypot(_cx(box) - _cx(b), _cy(box) - _cy(b))
        if d <= best_d:
            best, best_d = b, d
    return best


def _cx(b: FaceBox) -> float:
    return (b.x1 + b.x2) / 2


def _cy(b: FaceBox) -> float:
    return (b.y1 + b.y2) / 2
