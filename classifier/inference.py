"""Loading a trained checkpoint and turning face crops into emotion probabilities.

The crop (square box grown by a margin, grayscale, 48x48) is the one
preprocessing shared by ``deepfer predict``, the streaming pipeline and the
dashboard, and it matches the FER2013 training images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from classifier.data import IMAGE_SIZE
from classifier.models import build_model
from deepfer_core.device import HostStaging, pick_device
from deepfer_core.types import EMOTIONS

WEIGHTS_DIR = Path(__file__).parent / "weights"
# a checkpoint, an ONNX export, an ensemble manifest (classifier/ensemble.py)
WEIGHT_SUFFIXES = (".pt", ".onnx", ".json", ".toml")
SHIPPED_SUFFIXES = (".pt", ".ensemble.toml", ".ensemble.json")
log = logging.getLogger(__name__)


def shown_name(path: Path, architecture: str) -> str:
    """Shipped weights go by their name (``deepfer_resnet_robust`` and ``deepfer_resnet`` share one architecture, so
    the architecture alone would not say which runs); any other checkpoint (``runs/x/best.pt``) by its architecture."""
    return path.stem if path.resolve().parent == WEIGHTS_DIR.resolve() else architecture


class WeightsError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


def resolve_weights(spec: str | Path) -> Path:
    """A path to a ``.pt`` checkpoint, ``.onnx`` export or ensemble manifest (``.json``/``.toml``), or the name of a
    shipped model in ``classifier/weights``: ``<name>.pt``, else ``<name>.ensemble.toml`` or ``.ensemble.json``."""
    p = Path(spec)
    if p.suffix.lower() in WEIGHT_SUFFIXES or p.exists():
        if not p.is_file():
            raise WeightsError(f"weights file not found: {p}")
        return p
    for shipped in (WEIGHTS_DIR / f"{spec}{suffix}" for suffix in SHIPPED_SUFFIXES):
        if shipped.is_file():
            return shipped
    available = ", ".join(shipped_names()) or "none"
    raise WeightsError(f"no shipped weights named {spec!r} (available: {available})")


def shipped_names() -> list[str]:
    """The names ``resolve_weights`` finds in ``classifier/weights``."""
    return sorted({f.name[: -len(s)] for s in SHIPPED_SUFFIXES for f in WEIGHTS_DIR.glob(f"*{s}")})


def normalize(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 ``[N, H, W]`` (any device) -> float ``[N, 1, H, W]``, channels-last, standardized."""
    x = images.float().div_(255).unsqueeze(1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def predict_logits(
    model: nn.Module, images: torch.Tensor, mean: float, std: float, batch_size: int = 512, tta: bool = False
) -> torch.Tensor:
    """Logits for uint8 faces ``[N, 48, 48]`` already on the model's device; ``tta`` adds the mirror image."""
    model.eval()
    out = []
    device = next(model.parameters()).device
    use_amp = device.type == "cuda"
    for start in range(0, len(images), batch_size):
        x = normalize(images[start : start + batch_size], mean, std)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = model(x).float()
            if tta:
                logits = (logits + model(torch.flip(x, dims=[3])).float()) / 2
        out.append(logits)
    if not out:
        return torch.empty(0, len(EMOTIONS), device=device)
    return torch.cat(out)


@dataclass
class EmotionClassifier:
    """A trained model ready for inference, with the preprocessing it was trained with."""

    model: nn.Module
    name: str
    mean: float
    std: float
    device: torch.device
    path: Path | None = None
    tta: bool = False
    temperature: float = 1.0  # calibration: probabilities are softmax(logits / temperature) (deepfer calibrate)
    pinned_upload: bool = True  # classifier.pinned_upload: crops sent from a reused (on CUDA pinned) host buffer
    staging: HostStaging = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.staging = HostStaging(self.device, self.pinned_upload)

    @classmethod
    def load(cls, spec: str | Path, device: str = "auto", tta: bool = False,
             pinned_upload: bool = True) -> EmotionClassifier:
        """A PyTorch checkpoint only; ``load_classifier`` also takes ``.onnx`` exports."""
        path = resolve_weights(spec)
        dev = pick_device(device, "classifier.device")
        model, meta = load_checkpoint(path)
        model.to(dev).to(memory_format=torch.channels_last).eval()
        return cls(model, shown_name(path, meta["model"]), float(meta["mean"]), float(meta["std"]), dev, path, tta,
                   checkpoint_temperature(meta, path), pinned_upload)

    def predict_faces(self, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Probabilities ``[N, 7]`` for uint8 grayscale faces ``[N, 48, 48]``."""
        if len(faces) == 0:
            return np.zeros((0, len(EMOTIONS)), dtype=np.float32)
        return self.probs_of(self.upload(faces), batch_size)

    def upload(self, faces: np.ndarray) -> torch.Tensor:
        """The faces on the model's device, through the staging buffer (an ensemble sends them once for all)."""
        return self.staging.upload_concat([faces])

    def probs_of(self, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """Probabilities ``[N, 7]`` of uint8 faces ``[N, 48, 48]`` already on the model's device."""
        logits = predict_logits(self.model, x, self.mean, self.std, batch_size, self.tta)
        return torch.softmax(logits / self.temperature, dim=1).cpu().numpy()


def checkpoint_temperature(meta: dict, path: Path) -> float:
    """The calibration temperature a checkpoint stores (1.0: none, as in checkpoints made before issue 32)."""
    t = float(meta.get("temperature", 1.0))
    if not 0.01 <= t <= 100:
        raise WeightsError(f"{path}: calibration temperature {t} is not usable")
    return t


def load_checkpoint(path: Path) -> tuple[nn.Module, dict]:
    """Model and metadata from a DeepFER checkpoint (training ``best.pt``/``last.pt`` or a shipped file)."""
    if path.suffix.lower() in (".json", ".toml"):
        raise WeightsError(f"{path} is an ensemble manifest; this needs a single checkpoint (.pt), e.g. one member")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad file
        raise WeightsError(f"cannot read checkpoint {path}: {exc.__class__.__name__}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "model" not in ckpt:
        raise WeightsError(f"{path} is not a DeepFER checkpoint")
    if tuple(ckpt.get("classes", EMOTIONS)) != EMOTIONS:
        raise WeightsError(f"{path}: classes {ckpt.get('classes')} differ from {EMOTIONS}")
    if ckpt.get("image_size", IMAGE_SIZE) != IMAGE_SIZE:
        raise WeightsError(f"{path}: trained on {ckpt['image_size']} px faces, not the {IMAGE_SIZE}x{IMAGE_SIZE} crops")
    model = build_model(ckpt["model"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise WeightsError(f"{path}: weights do not fit model {ckpt['model']!r}: {str(exc).splitlines()[0]}") from None
    return model, ckpt


def crop_patch(image: np.ndarray, box: Sequence[float], margin: float) -> np.ndarray:
    """The square around ``box`` grown by ``margin`` per side, at the image's own resolution (grey or colour).

    Parts of a grown box outside the frame are filled by replicating the border, so a face at the edge keeps its
    scale.
    """
    x1, y1, x2, y2 = box
    h, w = image.shape[:2]
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    side = max(side, 2.0)
    ax1, ay1 = int(round(cx - side / 2)), int(round(cy - side / 2))
    ax2, ay2 = ax1 + int(round(side)), ay1 + int(round(side))
    pad = max(0, -ax1, -ay1, ax2 - w, ay2 - h)
    src = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else image
    return src[ay1 + pad : ay2 + pad, ax1 + pad : ax2 + pad]


def crop_faces(image_rgb: np.ndarray, boxes: Sequence[Sequence[float]], margin: float) -> np.ndarray:
    """Square crops around each box (``crop_patch``) as grayscale 48x48 uint8 ``[N, 48, 48]``."""
    if len(boxes) == 0:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    gray = image_rgb if image_rgb.ndim == 2 else cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    crops = np.empty((len(boxes), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for i, box in enumerate(boxes):
        patch = crop_patch(gray, box, margin)
        interp = cv2.INTER_AREA if patch.shape[0] > IMAGE_SIZE else cv2.INTER_LINEAR
        crops[i] = cv2.resize(patch, (IMAGE_SIZE, IMAGE_SIZE), interpolation=interp)
    return crops
