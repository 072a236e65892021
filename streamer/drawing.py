"""Annotated frames: each face's box, track id, shown emotion and probability bar, drawn the same way for the
annotated video, the dashboard preview and the WebRTC demo's returned video."""

from __future__ import annotations

import cv2
import numpy as np

from deepfer_core.types import EMOTIONS, FaceResult

# One colour per emotion (RGB), in EMOTIONS order.
COLOURS: dict[str, tuple[int, int, int]] = dict(zip(EMOTIONS, [
    (230, 57, 70), (106, 153, 78), (155, 93, 229), (255, 200, 40), (200, 200, 200), (58, 134, 255), (255, 120, 0)]))


def draw_faces(image: np.ndarray, faces: list[FaceResult]) -> np.ndarray:
    """A copy of the RGB frame with each face's box, label (``#track emotion 87%``) and probability bar.

    The bar's filled part is the shown emotion's probability. Label and bar sit
    above the box, or below it when the face touches the top of the frame.
    Boxes carried from an earlier detection are drawn thinner.
    """
    out = np.ascontiguousarray(image).copy()
    h, w = out.shape[:2]
    scale = max(0.5, min(1.0, h / 720))
    thick = max(1, round(2 * scale))
    font = cv2.FONT_HERSHEY_SIMPLEX
    for face in faces:
        colour = COLOURS.get(face.emotion, (255, 255, 255))
        x1, y1, x2, y2 = (int(round(v)) for v in face.box.xyxy)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick + 1 if face.detected else thick, cv2.LINE_AA)
        track = f"#{face.track_id} " if face.track_id is not None else ""
        label = f"{track}{face.emotion} {face.confidence:.0%}"
        (tw, th), base = cv2.getTextSize(label, font, 0.6 * scale, thick)
        bw, bh = max(x2 - x1, tw + 4), max(5, round(10 * scale))
        block = th + base + 4 + bh + 2
        top = y1 - block - 2 if y1 - block - 2 >= 0 else min(h - block, y2 + 2)
        lx = max(0, min(x1, w - bw))
        cv2.rectangle(out, (lx, top), (lx + tw + 4, top + th + base + 4), colour, -1)
        cv2.putText(out, label, (lx + 2, top + th + 2), font, 0.6 * scale, (0, 0, 0), thick, cv2.LINE_AA)
        by = top + th + base + 4 + 1
        cv2.rectangle(out, (lx, by), (lx + bw, by + bh), (40, 40, 40), -1)
        cv2.rectangle(out, (lx, by), (lx + int(round(bw * face.confidence)), by + bh), colour, -1)
    return out
