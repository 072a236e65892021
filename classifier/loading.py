"""The one place a classifier is loaded: a ``.onnx`` export runs in ONNX Runtime, a checkpoint in PyTorch."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from classifier.inference import EmotionClassifier, resolve_weights
from core.protocols import EmotionModel
from core.settings import ClassifierSettings

log = logging.getLogger(__name__)


class LoadedClassifier(EmotionModel, Protocol):
    """An ``EmotionModel`` loaded from a file (PyTorch or ONNX): what an evaluation report names."""

    @property
    def path(self) -> Path | None: ...

    @property
    def tta(self) -> bool: ...

    @property
    def temperature(self) -> float: ...


def load_classifier(spec: str | Path, device: str = "auto", tta: bool = False, threads: int = 0,
                    crop_margin: float | None = None) -> LoadedClassifier:
    """The one place a classifier is loaded: a ``.onnx`` export runs in ONNX Runtime, anything else in PyTorch.

    ``threads`` applies to ONNX Runtime (0: its default). ``crop_margin``, the configured one, is compared with
    the margin an ONNX file was exported with, and a difference is logged: the configured margin is used.
    """
    path = resolve_weights(spec)
    if path.suffix.lower() != ".onnx":
        return EmotionClassifier.load(path, device, tta)
    from classifier.onnx_runtime import OnnxClassifier

    clf = OnnxClassifier.load(path, device, tta, threads)
    if crop_margin is not None and abs(clf.crop_margin - crop_margin) > 1e-9:
        log.warning("%s was exported for crop margin %g but classifier.crop_margin is %g; using %g",
                    path, clf.crop_margin, crop_margin, crop_margin)
    return clf


def build_classifier(settings: ClassifierSettings, device: str | None = None) -> LoadedClassifier:
    """The classifier named by ``classifier.weights`` (a checkpoint or an ONNX export) on ``classifier.device`` (or
    ``device``); ``WeightsError`` when unusable."""
    return load_classifier(settings.weights, device or settings.device, settings.tta, settings.onnx_threads,
                           settings.crop_margin)
