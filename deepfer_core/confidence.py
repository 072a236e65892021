"""When a face's emotion can be trusted: big enough, and the calibrated model sure enough (issue 32).

A face below ``confidence.min_face_px`` (the longer side of its detector box, in frame pixels) or whose calibrated
top probability is below ``confidence.min_probability`` is shown as ``uncertain``: still tracked and counted as a
person, but kept out of the emotion mix and the satisfaction indicator. The thresholds come from the robustness
measurements in the model card (docs/model.md, "Small faces").
"""

from __future__ import annotations

import numpy as np

from deepfer_core.settings import ConfidenceSettings
from deepfer_core.types import FaceBox


def is_confident(box: FaceBox, probabilities: np.ndarray, settings: ConfidenceSettings) -> bool:
    """Whether the emotion of a face this size with these (calibrated, perhaps smoothed) probabilities is shown."""
    if not settings.enabled:
        return True
    if max(box.width, box.height) < settings.min_face_px:
        return False
    return float(np.max(probabilities)) >= settings.min_probability
