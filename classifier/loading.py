"""The one place a classifier is loaded: a ``.onnx`` export runs in ONNX Runtime, a checkpoint in PyTorch."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from classifier.inference import EmotionClassifier, WeightsError, resolve_weights
from deepfer_core.device import pick_device
from deepfer_core.protocols import EmotionModel
from deepfer_core.settings import ClassifierSettings

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
                    crop_margin: float | None = None, pinned_upload: bool = True) -> LoadedClassifier:
    """The one place a classifier is loaded: a ``.onnx`` export runs in ONNX Runtime, an ensemble manifest
    (``.json``/``.toml``) loads each member this way, anything else runs in PyTorch.

    ``threads`` applies to ONNX Runtime (0: its default). ``crop_margin``, the configured one, is compared with
    the margin an ONNX file was exported with, and a difference is logged: the configured margin is used.
    ``pinned_upload`` (``classifier.pinned_upload``): a PyTorch model's crops go through a reused host buffer,
    pinned on CUDA (``deepfer_core.device.HostStaging``).
    """
    from classifier.ensemble import is_manifest

    path = resolve_weights(spec)
    if is_manifest(path):
        return load_ensemble(path, device, tta, threads, crop_margin, pinned_upload)
    if path.suffix.lower() != ".onnx":
        return EmotionClassifier.load(path, device, tta, pinned_upload)
    from classifier.onnx_runtime import OnnxClassifier

    clf = OnnxClassifier.load(path, device, tta, threads)
    if crop_margin is not None and abs(clf.crop_margin - crop_margin) > 1e-9:
        log.warning("%s was exported for crop margin %g but classifier.crop_margin is %g; using %g",
                    path, clf.crop_margin, crop_margin, crop_margin)
    return clf


def load_ensemble(path: Path, device: str = "auto", tta: bool = False, threads: int = 0,
                  crop_margin: float | None = None, pinned_upload: bool = True) -> LoadedClassifier:
    """The ensemble a manifest describes, each member loaded by ``load_classifier`` (members are never manifests)."""
    from classifier.ensemble import EnsembleClassifier, read_manifest

    manifest = read_manifest(path)
    members = []
    for m in manifest.members:
        try:
            members.append(load_classifier(m.path, device, tta, threads, crop_margin, pinned_upload))
        except WeightsError as exc:
            raise WeightsError(f"ensemble manifest {path}: {exc}") from None
    devices = {str(c.device) for c in members}
    if len(devices) > 1:
        raise WeightsError(f"ensemble manifest {path}: members run on different devices ({', '.join(devices)}); "
                           "set classifier.device")
    return EnsembleClassifier(members, [m.weight for m in manifest.members], manifest, tta,
                              [c.temperature for c in members])


def resolve_auto(settings: ClassifierSettings, device: str | None = None) -> Path:
    """``classifier.weights = "auto"``: the first of ``classifier.auto_cuda`` (on a CUDA device) or
    ``classifier.auto_cpu`` (otherwise) that ``resolve_weights`` finds; ``device`` (``cpu``/``cuda``) overrides
    the one ``classifier.device`` picks. Logs its choice in one line; ``WeightsError`` when none is found."""
    kind = device if device in ("cpu", "cuda") else pick_device(device or settings.device, "classifier.device").type
    candidates = settings.auto_cuda if kind == "cuda" else settings.auto_cpu
    for spec in candidates:
        try:
            path = resolve_weights(spec)
        except WeightsError:
            continue
        log.info("classifier.weights = auto on %s: %s (first found of classifier.auto_%s: %s)", kind, path, kind,
                 ", ".join(candidates))
        return path
    raise WeightsError(f"classifier.weights = auto on {kind}: none of classifier.auto_{kind} "
                       f"({', '.join(candidates) or 'empty'}) was found")


def configured_weights(settings: ClassifierSettings, device: str | None = None) -> str | Path:
    """``classifier.weights``, with ``auto`` resolved for ``device`` (default: ``classifier.device``)."""
    return resolve_auto(settings, device) if settings.weights == "auto" else settings.weights


def build_classifier(settings: ClassifierSettings, device: str | None = None) -> LoadedClassifier:
    """The classifier named by ``classifier.weights`` (a checkpoint, an ONNX export, an ensemble manifest or
    ``auto``) on ``classifier.device`` (or ``device``); ``WeightsError`` when unusable."""
    device = device or settings.device
    return load_classifier(configured_weights(settings, device), device, settings.tta, settings.onnx_threads,
                           settings.crop_margin, settings.pinned_upload)
