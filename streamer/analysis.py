"""Images -> faces -> emotions: the one way a picture is analysed, for a still image and inside the pipeline.

``analyse_images`` finds the faces of the images that have no boxes yet (one detector call), then crops every
face and classifies them all in one model call. The pipeline runs the two halves in its two cross-camera
batchers (``detector.detect`` and ``classify_faces``), so frames that carry boxes from an earlier detection
skip the detector; ``deepfer predict`` and ``/api/predict`` call ``analyse_images`` on one image.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifier.gradcam import ExplainError, GradCam, overlay
from classifier.inference import crop_faces, crop_patch
from deepfer_core.confidence import is_confident
from deepfer_core.protocols import EmotionModel, FaceDetector
from deepfer_core.settings import ConfidenceSettings, ExplainSettings
from deepfer_core.types import EMOTIONS, FaceBox, FaceResult
from streamer.media import check_image, load_image

NO_PROBS = np.zeros((0, len(EMOTIONS)), dtype=np.float32)


def classify_faces(images: Sequence[np.ndarray], boxes: Sequence[Sequence[FaceBox]], classifier: EmotionModel,
                   margin: float, batch_size: int = 256) -> list[np.ndarray]:
    """Emotion probabilities ``float32 [faces, 7]`` per image: every face of every image in one model call."""
    crops = [crop_faces(image, [b.xyxy for b in found], margin) for image, found in zip(images, boxes)]
    if not any(len(c) for c in crops):
        return [NO_PROBS for _ in crops]
    probs = classifier.predict_faces(np.concatenate(crops), batch_size=batch_size).astype(np.float32, copy=False)
    return np.split(probs, np.cumsum([len(c) for c in crops])[:-1])


def analyse_images(images: Sequence[np.ndarray], detector: FaceDetector, classifier: EmotionModel, margin: float,
                   carried: Sequence[Sequence[FaceBox] | None] | None = None,
                   batch_size: int = 256, confidence: ConfidenceSettings | None = None) -> list[list[FaceResult]]:
    """Every face of each RGB image with its emotion probabilities (largest face first for MTCNN).

    ``carried[i]``, when given, are boxes from an earlier frame used instead of detecting on image ``i``; those
    faces are marked ``detected=False``. ``confidence``: mark faces too small or unsure to read (``uncertain``); the
    pipeline leaves this to its tracker, which judges the smoothed probabilities.
    """
    carried = list(carried) if carried is not None else [None] * len(images)
    todo = [i for i, c in enumerate(carried) if c is None]
    found = dict(zip(todo, detector.detect([images[i] for i in todo]))) if todo else {}
    boxes = [found[i] if c is None else list(c) for i, c in enumerate(carried)]
    probs = classify_faces(images, boxes, classifier, margin, batch_size)
    gate = confidence or ConfidenceSettings(enabled=False)
    return [[FaceResult(b, p, detected=carried[i] is None, confident=is_confident(b, p, gate))
             for b, p in zip(boxes[i], probs[i])] for i in range(len(images))]


def analyse_files(paths: Sequence[Path], detector: FaceDetector, classifier: EmotionModel, margin: float,
                  confidence: ConfidenceSettings | None = None) -> Iterator[tuple[Path, list[FaceResult]]]:
    """``deepfer predict``: each image file's faces. Every file is checked before any work, so a typo in the last
    one costs nothing (``MediaError`` naming it)."""
    for path in paths:
        check_image(path)
    for path in paths:
        yield path, analyse_images([load_image(path)], detector, classifier, margin, confidence=confidence)[0]


@dataclass(frozen=True)
class ExplainedFace:
    """One face, the class its heat map explains, and the picture: the face with the map over it and a caption."""

    box: FaceBox
    probabilities: np.ndarray  # float32 [7]
    explained: str  # the emotion the heat map is for
    heat: np.ndarray  # float32 [48, 48] in [0, 1]
    picture: np.ndarray  # RGB uint8, settings.size wide

    @property
    def emotion(self) -> str:
        return EMOTIONS[int(np.argmax(self.probabilities))]

    @property
    def explained_probability(self) -> float:
        return float(self.probabilities[EMOTIONS.index(self.explained)])


def emotion_index(name: str | None) -> int | None:
    """``--class`` / ``class``: an emotion name (any case) or None for each face's predicted class."""
    if name is None or name == "":
        return None
    if name.lower() not in EMOTIONS:
        raise ExplainError(f"unknown emotion {name!r} (choose from: {', '.join(EMOTIONS)})")
    return EMOTIONS.index(name.lower())


def explain_image(image: np.ndarray, detector: FaceDetector, explainer: GradCam, margin: float,
                  settings: ExplainSettings, target: int | None = None) -> list[ExplainedFace]:
    """Every face of an RGB image (the detector's order) with the Grad-CAM map of ``target`` or of its prediction,
    cropped as the classifier sees it (same square, same margin)."""
    (boxes,) = detector.detect([image])
    faces = crop_faces(image, [b.xyxy for b in boxes], margin)
    found = explainer.explain(faces, target)
    out = []
    for box, probs, heat, t in zip(boxes, found.probabilities, found.maps, found.targets, strict=True):
        name = EMOTIONS[int(t)]
        caption = f"{name} {probs[int(t)]:.0%}"
        patch = crop_patch(image, box.xyxy, margin)
        picture = overlay(patch, heat, caption, settings.size, settings.alpha, settings.colourmap)
        out.append(ExplainedFace(box, probs, name, heat, picture))
    return out
