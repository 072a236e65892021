"""Settings of the faces over time: the tracker that gives them ids and the smoothing of their emotions."""

from __future__ import annotations

from pydantic import Field

from deepfer_core.settings.base import Section


class TrackerSettings(Section):
    iou_threshold: float = Field(
        0.3, gt=0, lt=1, description="Least IoU between a track's predicted box and a detection to match."
    )
    min_hits: int = Field(3, ge=1, description="Consecutive detections before a track is born and gets an id.")
    max_age_s: float = Field(1.5, gt=0, description="A track unseen this long dies; a face seen later gets a new id.")
    use_kalman: bool = Field(True, description="Predict boxes with a constant-velocity Kalman filter (else: last box).")
    process_noise: float = Field(
        2.0, gt=0, description="Kalman: face acceleration spread, in face heights per second squared."
    )
    measurement_noise: float = Field(
        0.05, gt=0, description="Kalman: detector box jitter, as a fraction of the face height."
    )


class SmoothingSettings(Section):
    half_life_s: float = Field(2.0, gt=0, description="EMA half-life of the emotion probabilities, in seconds. 2 s "
                                                      "with switch_margin 0.05: no label change on woman2.mp4 (0.5 s: "
                                                      "15.7 a minute), and a held change of expression shows after "
                                                      "2.3 s (deepfer bench tracking, docs/people.md).")
    switch_margin: float = Field(0.05, ge=0, lt=1, description="A new label must beat the shown one by this much.")
