"""Temperature scaling: one number that makes the classifier's probabilities mean what they say.

Fitted on a held-out slice of the training split (never on ``test/``: every figure is measured there), by
minimising the negative log-likelihood of ``softmax(logits / T)``; stored in the checkpoint as ``temperature``,
which ``EmotionClassifier`` and the ONNX export (``deepfer.temperature``) apply. The slice may be measured clean
and degraded (``classifier.degrade``), so the temperature also fits the small faces a camera sends.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from classifier.data import FaceDataset
from classifier.degrade import Degradation
from classifier.evaluate import expected_calibration_error
from classifier.inference import EmotionClassifier, WeightsError, predict_logits, resolve_weights
from classifier.onnx_export import check_calibration_source
from classifier.train import stratified_split


@dataclass(frozen=True)
class CalibrationResult:
    temperature: float
    faces: int  # slice faces x conditions
    data: str
    fraction: float
    seed: int
    conditions: list[str]
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    source: str
    out: str


def nll(logits: np.ndarray, labels: np.ndarray, t: float) -> float:
    z = logits / t
    z = z - z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = 0.05, hi: float = 20.0) -> float:
    """The T in [lo, hi] minimising the NLL (golden-section search on log T: the NLL is convex in 1/T)."""
    a, b = np.log(lo), np.log(hi)
    g = (np.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(logits, labels, np.exp(c)), nll(logits, labels, np.exp(d))
    for _ in range(80):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(logits, labels, np.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(logits, labels, np.exp(d))
    return float(np.exp((a + b) / 2))


def softmax(logits: np.ndarray, t: float = 1.0) -> np.ndarray:
    z = logits / t
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def calibration_slice(data: FaceDataset, fraction: float, seed: int) -> FaceDataset:
    """The faces ``stratified_split`` holds out of ``data`` (what ``train.val_fraction`` holds out, same seed)."""
    _, held = stratified_split(data.labels, fraction, seed)
    return data.subset(held)


def calibrate(weights: str | Path, data: FaceDataset, out: Path, fraction: float = 0.1, seed: int = 0,
              conditions: list[Degradation] | None = None, device: str = "cpu") -> CalibrationResult:
    """Fit T on the held-out slice of ``data`` (training faces) under ``conditions``; write the checkpoint with it."""
    check_calibration_source(data.source)
    source = resolve_weights(weights)
    if source.suffix.lower() == ".onnx":
        raise WeightsError(f"{source}: calibrate a PyTorch checkpoint, then export it")
    conditions = conditions or [Degradation()]
    clf = EmotionClassifier.load(source, device)
    part = calibration_slice(data, fraction, seed)
    logits, labels = [], []
    for cond in conditions:
        x = torch.from_numpy(np.ascontiguousarray(cond.apply(part.images))).to(clf.device)
        logits.append(predict_logits(clf.model, x, clf.mean, clf.std, tta=clf.tta).float().cpu().numpy())
        labels.append(part.labels)
    z, y = np.concatenate(logits).astype(np.float64), np.concatenate(labels)
    t = fit_temperature(z, y)
    ckpt = torch.load(source, map_location="cpu", weights_only=True)
    ckpt["temperature"] = t
    result = CalibrationResult(
        t, len(y), data.source, fraction, seed, [c.label for c in conditions], nll(z, y, 1.0), nll(z, y, t),
        expected_calibration_error(softmax(z), y), expected_calibration_error(softmax(z, t), y), str(source),
        str(out))
    ckpt["calibration"] = {k: v for k, v in asdict(result).items() if k not in ("source", "out")}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, out)
    return result
