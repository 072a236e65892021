"""Evaluation of a checkpoint on labelled faces: the figures a model card reports."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from classifier.data import FaceDataset, load_dataset
from classifier.degrade import Degradation
from classifier.loading import LoadedClassifier, build_classifier
from deepfer_core.settings import ClassifierSettings
from deepfer_core.types import EMOTIONS


@dataclass
class EvalReport:
    accuracy: float
    macro_f1: float
    weighted_f1: float
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]  # rows: true class, columns: predicted, EMOTIONS order
    confusion_normalized: list[list[float]]  # each row sums to 1 (recall on the diagonal)
    samples: int
    data: str
    weights: str
    model: str
    tta: bool
    seconds: float
    ece: float = 0.0  # expected calibration error of the top probability, ECE_BINS equal-width bins
    degradation: str = "clean"  # what was done to the faces first (classifier.degrade)
    temperature: float = 1.0  # the calibration the classifier applied to its logits

    def to_json(self) -> str:
        return json.dumps({"classes": list(EMOTIONS), **asdict(self)}, indent=1)


ECE_BINS = 15


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over equal-width confidence bins of (share of faces) x |accuracy - mean confidence|, on the top class."""
    if len(labels) == 0:
        return 0.0
    conf = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)  # (k/bins, (k+1)/bins]
    ece = 0.0
    for k in range(bins):
        inside = which == k
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return float(ece)


Progress = Callable[[int, int], None]  # (faces done, faces in all)


def predict_in_chunks(clf: LoadedClassifier, images: np.ndarray, batch_size: int,
                      on_progress: Progress | None = None, done: int = 0, total: int | None = None) -> np.ndarray:
    """``clf.predict_faces`` one batch at a time (the same batches it would make), saying how far it got."""
    total = len(images) if total is None else total
    if on_progress is None:
        return clf.predict_faces(images, batch_size=batch_size)
    parts = []
    for start in range(0, len(images), batch_size):
        parts.append(clf.predict_faces(images[start:start + batch_size], batch_size=batch_size))
        on_progress(done + min(start + batch_size, len(images)), total)
    return np.concatenate(parts) if parts else clf.predict_faces(images, batch_size=batch_size)


def evaluate(clf: LoadedClassifier, data: FaceDataset, batch_size: int = 512,
             degradation: Degradation | None = None, on_progress: Progress | None = None) -> EvalReport:
    """Works for any classifier loaded from a file (PyTorch or ONNX Runtime): it predicts with ``predict_faces``
    and names the file, model and test-time augmentation in the report. ``degradation`` is applied to the faces
    first; ``on_progress(done, total)`` after each batch."""
    started = time.time()
    degradation = degradation or Degradation()
    probs = predict_in_chunks(clf, degradation.apply(data.images), batch_size, on_progress)
    return report_of(clf, data, probs, degradation, started)


def report_of(clf: LoadedClassifier, data: FaceDataset, probs: np.ndarray, degradation: Degradation,
              started: float) -> EvalReport:
    """The report of probabilities ``probs`` that ``clf`` gave for ``data`` (degraded as said)."""
    pred = probs.argmax(1)
    true = data.labels
    labels = list(range(len(EMOTIONS)))
    p, r, f, s = precision_recall_fscore_support(true, pred, labels=labels, zero_division=0)
    cm = confusion_matrix(true, pred, labels=labels)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm, dtype=np.float64), where=rows > 0)
    support = s.astype(np.float64)
    return EvalReport(
        accuracy=float((pred == true).mean()),
        macro_f1=float(f.mean()),
        weighted_f1=float((f * support).sum() / max(1.0, support.sum())),
        per_class={e: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                   for i, e in enumerate(EMOTIONS)},
        confusion=cm.tolist(),
        confusion_normalized=norm.round(4).tolist(),
        samples=len(true),
        data=data.source,
        weights=str(clf.path),
        model=clf.name,
        tta=clf.tta,
        seconds=time.time() - started,
        ece=expected_calibration_error(probs, true),
        degradation=degradation.label,
        temperature=float(clf.temperature),
    )


SELECTIVE_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def selective(probs: np.ndarray, labels: np.ndarray, thresholds=SELECTIVE_THRESHOLDS) -> list[dict[str, float]]:
    """For each threshold on the top probability: the share of faces kept (coverage) and their accuracy; what
    ``confidence.min_probability`` trades."""
    conf, right = probs.max(1), probs.argmax(1) == labels
    out = []
    for t in thresholds:
        kept = conf >= t
        out.append({"threshold": t, "coverage": round(float(kept.mean()), 4) if len(kept) else 0.0,
                    "accuracy": round(float(right[kept].mean()), 4) if kept.any() else 0.0})
    return out


def robustness(clf: LoadedClassifier, data: FaceDataset, conditions: list[Degradation],
               on_progress: Progress | None = None) -> dict:
    """``deepfer evaluate --degrade``: accuracy, macro F1 and ECE of each condition (and the full reports);
    ``on_progress(done, total)`` counts faces over all conditions."""
    reports, kept = [], []
    for i, c in enumerate(conditions):
        started = time.time()
        probs = predict_in_chunks(clf, c.apply(data.images), 512, on_progress, i * len(data),
                                  len(conditions) * len(data))
        kept.append(selective(probs, data.labels))
        reports.append(report_of(clf, data, probs, c, started))
    return {
        "classes": list(EMOTIONS), "data": data.source, "samples": len(data), "weights": str(clf.path),
        "model": clf.name, "tta": clf.tta, "temperature": reports[0].temperature if reports else 1.0,
        "ece_bins": ECE_BINS,
        "conditions": [{"degradation": r.degradation, "accuracy": round(r.accuracy, 4),
                        "macro_f1": round(r.macro_f1, 4), "ece": round(r.ece, 4), "selective": k}
                       for r, k in zip(reports, kept)],
        "reports": [asdict(r) for r in reports],
    }


def save_confusion_png(report: EvalReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norm = np.array(report.confusion_normalized)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45, ha="right")
    ax.set_yticks(range(len(EMOTIONS)), EMOTIONS)
    ax.set(xlabel="predicted", ylabel="true", title=f"{report.model}: accuracy {report.accuracy:.1%} (rows normalized)")
    for i in range(len(EMOTIONS)):
        for j in range(len(EMOTIONS)):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate_to_files(settings: ClassifierSettings, data: str | Path, json_out: Path | None, png: Path | None = None,
                      cache_dir: Path | None = None,
                      on_progress: Progress | None = None) -> tuple[EvalReport, Path | None]:
    """``deepfer evaluate``: the report of the configured classifier on ``data``, as JSON (when ``json_out`` is
    given) and a confusion PNG (``png``, else next to ``json_out``, else none)."""
    report = evaluate(build_classifier(settings), load_dataset(data, cache_dir=cache_dir), on_progress=on_progress)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(report.to_json())
    png = png or (json_out.with_suffix(".png") if json_out is not None else None)
    if png is not None:
        png.parent.mkdir(parents=True, exist_ok=True)
        save_confusion_png(report, png)
    return report, png
