"""Temporal smoothing of one face's emotion probabilities, independent of the frame rate.

An exponential moving average in continuous time whose weight comes from the
time between observations (``alpha = 1 - 0.5 ** (dt / half_life)``), so the same
signal sampled at 10 or 30 fps gives the same curve. The signal is taken as
linear between two observations (the exact EMA of that line, not a jump at the
new sample), which removes most of the lag a low frame rate would otherwise add.
Hysteresis: the shown label changes only when another emotion beats it by
``switch_margin``; during a track's first half-life the label simply follows the
smoothed argmax, so one odd first frame cannot pin a wrong label.
"""

from __future__ import annotations

import numpy as np

from deepfer_core.settings import SmoothingSettings
from deepfer_core.types import EMOTIONS


class EmotionSmoother:
    """Smoothed probabilities and the shown label for one track. Feed it observations in time order."""

    def __init__(self, settings: SmoothingSettings):
        self.settings = settings
        self.smoothed: np.ndarray | None = None
        self.label: str | None = None
        self.last_t: float | None = None
        self.first_t: float | None = None
        self._last_p: np.ndarray | None = None

    def update(self, probabilities: np.ndarray, t: float) -> tuple[np.ndarray, str]:
        """Blend in one observation taken at unix time ``t``; returns (smoothed float32[7], shown label)."""
        p = np.asarray(probabilities, dtype=np.float64)
        if self.smoothed is None or self.last_t is None or self._last_p is None:
            self.smoothed, self._last_p, self.last_t, self.first_t = p.astype(np.float32), p, t, t
        else:
            dt = t - self.last_t  # an out-of-order or simultaneous sample gets no weight
            if dt > 1e-6:
                tau = self.settings.half_life_s / np.log(2.0)
                keep = 0.5 ** (dt / self.settings.half_life_s)  # 1 - alpha
                slope_lag = (p - self._last_p) * (tau / dt) * (1.0 - keep)
                s = keep * self.smoothed + (p - keep * self._last_p) - slope_lag
                self.smoothed = np.clip(s, 0.0, 1.0).astype(np.float32)
                self._last_p, self.last_t = p, t
        self.label = self._shown_label(self.smoothed)
        return self.smoothed.copy(), self.label

    def _shown_label(self, smoothed: np.ndarray) -> str:
        best = int(np.argmax(smoothed))
        warming_up = self.last_t is not None and self.first_t is not None and \
            self.last_t - self.first_t < self.settings.half_life_s
        if self.label is None or warming_up:
            return EMOTIONS[best]
        current = EMOTIONS.index(self.label)
        if smoothed[best] >= smoothed[current] + self.settings.switch_margin:
            return EMOTIONS[best]
        return self.label
