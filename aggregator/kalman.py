"""The tracker's box model: IoU for matching boxes and a constant-velocity Kalman filter driven by real time, not
frame counts. (Motion gating, skipping the detector when nothing moved, is ``detectors/motion.py``.)"""

from __future__ import annotations

import numpy as np

from deepfer_core.types import FaceBox


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of boxes ``a [N, 4]`` and ``b [M, 4]`` in (x1, y1, x2, y2)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    a = a[:, None, :]
    b = b[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def box_to_cxcywh(box: FaceBox) -> np.ndarray:
    return np.array([(box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2, box.width, box.height], dtype=np.float64)


def cxcywh_to_xyxy(z: np.ndarray) -> np.ndarray:
    cx, cy, w, h = z[:4]
    w, h = max(w, 1.0), max(h, 1.0)
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dtype=np.float64)


class BoxKalman:
    """Constant-velocity Kalman filter on (cx, cy, w, h) with their velocities, in pixels and seconds.

    Noise scales with the face height, so a near (large) face may move more pixels
    than a far one. ``process_noise`` is the acceleration spread in face heights per
    second squared; ``measurement_noise`` the detector's jitter as a fraction of the height.
    """

    def __init__(self, box: FaceBox, t: float, process_noise: float, measurement_noise: float):
        z = box_to_cxcywh(box)
        self.q = process_noise
        self.r = measurement_noise
        self.x = np.concatenate([z, np.zeros(4)])
        h = max(z[3], 1.0)
        self.P = np.diag(
            [(self.r * h) ** 2] * 4 + [h**2] * 4
        )  # velocity unknown at birth: about one face height per second
        self.t = t

    def predict(self, t: float) -> np.ndarray:
        """Advance the state to time ``t`` and return the predicted box (x1, y1, x2, y2)."""
        dt = max(0.0, t - self.t)
        if dt > 0:
            F = np.eye(8)
            F[:4, 4:] = np.eye(4) * dt
            h = max(self.x[3], 1.0)
            q = (self.q * h) ** 2
            block = np.array([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]]) * q  # white-noise acceleration
            Q = np.zeros((8, 8))
            for i in range(4):
                Q[np.ix_([i, i + 4], [i, i + 4])] = block
            self.x = F @ self.x
            self.P = F @ self.P @ F.T + Q
            self.t = t
        return cxcywh_to_xyxy(self.x)

    def update(self, box: FaceBox) -> None:
        z = box_to_cxcywh(box)
        h = max(z[3], 1.0)
        R = np.eye(4) * (self.r * h) ** 2
        S = self.P[:4, :4] + R
        K = self.P[:, :4] @ np.linalg.inv(S)
        self.x = self.x + K @ (z - self.x[:4])
        self.P = self.P - K @ self.P[:4, :]  # (I - K H) P with H = [I 0]
