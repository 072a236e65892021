"""Pixel motion gating, as NVRs do it: cheap differencing on a small grey copy of each frame.

A ``MotionGate`` (one per camera) compares each frame it is shown with a reference: the last frame on which the
detector ran (``accept``). Differences build up, so a face that drifts slowly still wakes the gate once it has moved
enough, while sensor and codec noise (a few grey levels) never does. ``check`` answers where the picture changed:
nothing (the detector can skip the frame: boxes are carried), a few regions (detect there only), or most of the frame.
It costs a downscale, an absolute difference, a threshold, a dilation and a connected-components pass on a picture of
``gating.grey_width`` pixels across: about 0.15 ms a frame, 596x336 or 1080p alike. It reads the decoder's luma
plane where there is one, so a frame nobody needs in colour is never converted to RGB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from deepfer_core.settings import GatingSettings
from deepfer_core.types import FaceBox, Pixels


@dataclass(frozen=True)
class Motion:
    """What changed since the reference: ``regions`` in original-frame pixels, ``fraction`` of the frame they cover."""

    regions: list[FaceBox] = field(default_factory=list)
    fraction: float = 0.0
    small: np.ndarray | None = field(default=None, repr=False)  # the grey copy, to ``accept`` as the next reference

    @property
    def still(self) -> bool:
        return not self.regions


class MotionGate:
    """Where a camera's picture changed since the detector last looked; one per camera, frames in order."""

    def __init__(self, settings: GatingSettings):
        self.settings = settings
        self.reference: np.ndarray | None = None
        self._kernel = np.ones((3, 3), np.uint8)

    def small(self, pixels: Pixels | np.ndarray) -> np.ndarray:
        """The frame as a small grey picture ``grey_width`` pixels wide: sampled bilinearly to twice that, then 2x2
        averaged (a tenth of the cost of area-averaging the whole frame, 0.1 ms for 1080p). From the luma plane when
        the decoder gave one (video range stretched to 0-255, as RGB's grey would be), else from RGB."""
        pixels = Pixels.of(pixels)
        w, h = pixels.width, pixels.height
        width = min(self.settings.grey_width, w)
        height = max(1, round(h * width / w))
        grey = pixels.luma
        if grey is None:
            image = pixels.rgb()
            if 2 * width < w:
                image = cv2.resize(image, (2 * width, 2 * height), interpolation=cv2.INTER_LINEAR)
            grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        elif 2 * width < w:
            grey = cv2.resize(grey, (2 * width, 2 * height), interpolation=cv2.INTER_LINEAR)
        small = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA) if grey.shape[1] != width else grey
        if pixels.luma is not None and pixels.luma_limited:
            small = cv2.LUT(small, _VIDEO_TO_FULL)
        return np.ascontiguousarray(small)

    def check(self, pixels: Pixels | np.ndarray) -> Motion:
        """The changed regions of the frame against the reference (with no reference yet: the whole frame)."""
        pixels = Pixels.of(pixels)
        small = self.small(pixels)
        if self.reference is None or self.reference.shape != small.shape:
            return Motion([FaceBox(0.0, 0.0, float(pixels.width), float(pixels.height))], 1.0, small)
        return self.compare(small, self.reference, pixels.width, pixels.height)

    def compare(self, small: np.ndarray, reference: np.ndarray, width: int, height: int) -> Motion:
        """Where ``small`` differs from ``reference`` (grey copies of one camera), in a ``width`` x ``height`` frame."""
        s = self.settings
        changed = cv2.absdiff(small, reference)
        _, mask = cv2.threshold(changed, s.pixel_threshold, 255, cv2.THRESH_BINARY)
        if not cv2.countNonZero(mask):  # the usual still frame: no pixel changed enough, no regions to look for
            return Motion([], 0.0, small)
        if s.dilate > 0:
            mask = cv2.dilate(mask, self._kernel, iterations=s.dilate)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        sy, sx = height / small.shape[0], width / small.shape[1]
        regions, area = [], 0
        for x, y, bw, bh, px in stats[1:count]:
            if px < s.min_region_px:
                continue
            area += int(bw) * int(bh)
            regions.append(FaceBox(float(x * sx), float(y * sy), float((x + bw) * sx), float((y + bh) * sy)))
        return Motion(regions, min(1.0, area / float(small.size)), small)

    def accept(self, motion: Motion) -> None:
        """The detector ran on the frame ``motion`` was checked on: it is the reference from now on."""
        if motion.small is not None:
            self.reference = motion.small


# Luma in video range (16-235) to full range, as the grey of the RGB frame the decoder would make.
_VIDEO_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)


def grow(box: FaceBox, by: float, at_least: float, width: int, height: int) -> FaceBox:
    """``box`` grown on each side by ``by`` times its size (at least ``at_least`` pixels), clipped to the frame."""
    dx = max(by * box.width, at_least)
    dy = max(by * box.height, at_least)
    return FaceBox(max(0.0, box.x1 - dx), max(0.0, box.y1 - dy), min(float(width), box.x2 + dx),
                   min(float(height), box.y2 + dy), box.score)


def inside(box: FaceBox, outer: FaceBox) -> bool:
    return box.x1 >= outer.x1 and box.y1 >= outer.y1 and box.x2 <= outer.x2 and box.y2 <= outer.y2


def merge(boxes: list[FaceBox]) -> list[FaceBox]:
    """Overlapping boxes joined into their union, until none overlap (detection regions are detected once)."""
    out = list(boxes)
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if a.x1 < b.x2 and b.x1 < a.x2 and a.y1 < b.y2 and b.y1 < a.y2:
                    out[i] = FaceBox(min(a.x1, b.x1), min(a.y1, b.y1), max(a.x2, b.x2), max(a.y2, b.y2))
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return out


def in_frame(boxes: list[FaceBox], shape: tuple[int, ...]) -> list[FaceBox]:
    """The boxes that still overlap a frame of ``shape``."""
    h, w = shape[:2]
    return [b for b in boxes if b.x2 > 0 and b.y2 > 0 and b.x1 < w and b.y1 < h]
