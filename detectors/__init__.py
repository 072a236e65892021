"""Face detectors: ``build_detector(settings.detector)`` gives the one chosen by ``detector.kind``."""

from __future__ import annotations

from deepfer_core.protocols import FaceDetector
from deepfer_core.settings import DetectorSettings

__all__ = ["build_detector"]


def build_detector(settings: DetectorSettings) -> FaceDetector:
    """A ready detector; imports are lazy so a Haar-only user never loads facenet."""
    if settings.kind == "mtcnn" and settings.proposals == "yunet":
        from detectors.proposals import YunetProposalDetector

        return YunetProposalDetector(settings)
    if settings.kind == "mtcnn":
        if settings.mtcnn_batched:
            from detectors.mtcnn_batched import BatchedMtcnnDetector

            return BatchedMtcnnDetector(settings)
        from detectors.mtcnn import MtcnnDetector

        return MtcnnDetector(settings)
    if settings.kind == "haar":
        from detectors.haar import HaarDetector

        return HaarDetector(settings)
    if settings.kind == "yunet":
        from detectors.yunet import YunetDetector

        return YunetDetector(settings)
    raise ValueError(f"unknown detector kind {settings.kind!r} (mtcnn, haar or yunet)")
