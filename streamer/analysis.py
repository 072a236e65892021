"""Images -> faces -> emotions: the one way a picture is analysed, for a still image and inside the pipeline.

``analyse_images`` finds the faces of the images that have no boxes yet (one detector call), then crops every
face and classifies them all in one model call. The pipeline runs the two halves in its two cross-camera
batchers (``detector.detect`` and ``classify_faces``), so frames that carry boxes from an earlier detection
skip the detector; ``deepfer predict`` and ``/api/predict`` call ``analyse_images`` on one image.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from classifier.inference import crop_faces
from core.protocols import EmotionModel, FaceDetector
from core.types import EMOTIONS, FaceBox, FaceResult
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
                   batch_size: int = 256) -> list[list[FaceResult]]:
    """Every face of each RGB image with its emotion probabilities (largest face first for MTCNN).

    ``carried[i]``, when given, are boxes from an earlier frame used instead of detecting on image ``i``; those
    faces are marked ``detected=False``.
    """
    carried = list(carried) if carried is not None else [None] * len(images)
    todo = [i for i, c in enumerate(carried) if c is None]
    found = dict(zip(todo, detector.detect([images[i] for i in todo]))) if todo else {}
    boxes = [found[i] if c is None else list(c) for i, c in enumerate(carried)]
    probs = classify_faces(images, boxes, classifier, margin, batch_size)
    return [[FaceResult(b, p, detected=carried[i] is None) for b, p in zip(boxes[i], probs[i])]
            for i in range(len(images))]


def analyse_files(paths: Sequence[Path], detector: FaceDetector, classifier: EmotionModel,
                  margin: float) -> Iterator[tuple[Path, list[FaceResult]]]:
    """``deepfer predict``: each image file's faces. Every file is checked before any work, so a typo in the last
    one costs nothing (``MediaError`` naming it)."""
    for path in paths:
        check_image(path)
    for path in paths:
        yield path, analyse_images([load_image(path)], detector, classifier, margin)[0]
