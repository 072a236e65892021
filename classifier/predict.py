"""One still image -> faces -> emotions: shared by ``deepfer predict`` and the dashboard's upload endpoint."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from classifier.inference import Classifier, crop_faces
from detectors.base import FaceDetector
from streamer.results import FaceResult


class ImageError(ValueError):
    """An input that is not a readable image; the message names it."""


def load_image(source: str | Path | bytes | BinaryIO, name: str | None = None) -> np.ndarray:
    """RGB uint8 H x W x 3 from a path, bytes or a file object, turned upright by its EXIF orientation."""
    label = name or (str(source) if isinstance(source, (str, Path)) else "upload")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise ImageError(f"image not found: {path}")
        if not path.is_file():
            raise ImageError(f"not a file: {path}")
    elif isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        with Image.open(source) as img:
            img = ImageOps.exif_transpose(img)
            return np.asarray(img.convert("RGB"))
    except UnidentifiedImageError:
        raise ImageError(f"{label} is not an image PIL can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{label}: cannot decode image ({exc})") from None


def analyze_image(image_rgb: np.ndarray, detector: FaceDetector, classifier: Classifier, margin: float) -> list[FaceResult]:
    """Every face the detector finds in one RGB image, with its emotion probabilities (largest face first for MTCNN)."""
    boxes = detector.detect([image_rgb])[0]
    if not boxes:
        return []
    crops = crop_faces(image_rgb, [b.xyxy for b in boxes], margin)
    probs = classifier.predict_faces(crops)
    return [FaceResult(box=b, probabilities=p.astype(np.float32)) for b, p in zip(boxes, probs)]
