"""Grad-CAM (Selvaraju et al., 2017): which part of a face made the model say what it said.

A short hook of our own rather than a library: `grad-cam` requires the GUI build of OpenCV, which clashes with the
headless one this project uses, and captum is a large dependency for one method. Grad-CAM is a forward hook
that keeps one layer's activations, their gradient for the chosen class, and a weighted sum; about thirty lines.

The layer is the last one of ``model.features`` whose maps are still at least ``min_map_size`` pixels wide: on
48x48 faces the last 3x3 stage is too coarse to point at an eye or a mouth, the 6x6 one is not. At 6x6 each
activation is weighted by its own positive gradient (LayerCAM, Jiang et al., 2021, the Grad-CAM weighting for
layers finer than the last): one gradient average per channel, Grad-CAM's, put the smile's evidence of the shipped
ResNet on the chin (issue 31). The map is then laid on the face where its cells look: a stride-2 convolution with
padding 1 centres cell ``i`` on pixel ``2i`` (a 2x2 pooling on ``2i + 0.5``), which ``interpolate``'s half-pixel
convention would put ``stride / 2`` pixels lower and further right (``feature_grid``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from classifier.data import IMAGE_SIZE
from classifier.inference import normalize
from deepfer_core.types import EMOTIONS

COLOURMAPS = {"jet": cv2.COLORMAP_JET, "turbo": cv2.COLORMAP_TURBO, "inferno": cv2.COLORMAP_INFERNO,
              "viridis": cv2.COLORMAP_VIRIDIS}


class ExplainError(ValueError):
    """Weights or a class that Grad-CAM cannot explain; the message says why."""


@dataclass(frozen=True)
class Explanation:
    """Heat maps ``float32 [N, 48, 48]`` in [0, 1] (1 = most responsible), the faces' probabilities ``[N, 7]`` and
    the class each map explains ``int [N]``."""

    maps: np.ndarray
    probabilities: np.ndarray
    targets: np.ndarray


def _probe(model: nn.Module, hooks: list) -> None:
    """One forward pass of a blank face, so the forward ``hooks`` see every layer's shapes; then they are removed."""
    try:
        with torch.no_grad():
            p = next(model.parameters())
            model(torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE, device=p.device, dtype=p.dtype))
    finally:
        for h in hooks:
            h.remove()


def target_layer(model: nn.Module, min_map_size: int) -> nn.Module:
    """The last child of ``model.features`` whose output is at least ``min_map_size`` pixels wide."""
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential):
        raise ExplainError(f"Grad-CAM needs a model with a 'features' stack; {type(model).__name__} has none")
    sizes: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out.shape[-1])) for m in features]
    _probe(model, hooks)
    wide = [i for i, s in enumerate(sizes) if s >= min_map_size]
    return features[wide[-1] if wide else 0]


def feature_grid(model: nn.Module, layer: nn.Module) -> tuple[float, float]:
    """Where ``layer``'s cells look on the 48x48 face: cell ``i`` is centred on pixel ``start + i * step`` (pixel
    centres at integers), from the kernels, strides and padding of the convolutions and poolings before it. Each is
    keyed by the size of its input, so the two branches of a residual block count once."""
    grid: dict[int, tuple[float, float]] = {IMAGE_SIZE: (0.0, 1.0)}
    out: list[int] = []

    def seen(m: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        size_in, size_out = inputs[0].shape[-1], output.shape[-1]
        if size_in not in grid or size_out in grid:
            return
        k, s, p = (v if isinstance(v, int) else v[-1] for v in (m.kernel_size, m.stride, m.padding))  # type: ignore
        if isinstance(p, str):  # padding="same" or "valid": not worth the arithmetic here
            return
        start, step = grid[size_in]
        grid[size_out] = (float(start + ((k - 1) / 2 - p) * step), float(step * s))

    kinds = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
    hooks = [m.register_forward_hook(seen) for m in model.modules() if isinstance(m, kinds)]
    hooks.append(layer.register_forward_hook(lambda _m, _i, o: out.append(o.shape[-1])))
    _probe(model, hooks)
    n = out[0]
    # a layer past something this does not know (an adaptive pooling): the half-pixel convention of interpolate
    return grid.get(n, ((IMAGE_SIZE / n - 1) / 2, IMAGE_SIZE / n))


def upsample(cam: torch.Tensor, start: float, step: float) -> torch.Tensor:
    """``[N, 1, n, n]`` maps to ``[N, 48, 48]``, bilinear, each cell's value on the pixel it is centred on (the
    face's edges beyond the outer cells get the outer cells' values)."""
    n = cam.shape[-1]
    pixels = torch.arange(IMAGE_SIZE, dtype=cam.dtype, device=cam.device)
    at = (pixels - start) / step  # in cells
    g = at * 2 / (n - 1) - 1 if n > 1 else torch.zeros_like(at)  # grid_sample's -1..1 spans the outer cells' centres
    grid = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1)  # [..., 0] is x (columns), [..., 1] is y (rows)
    grid = grid[None].expand(len(cam), -1, -1, -1)
    return nn.functional.grid_sample(cam, grid, mode="bilinear", padding_mode="border", align_corners=True)[:, 0]


class GradCam:
    """Grad-CAM maps for uint8 grayscale faces ``[N, 48, 48]``, on a PyTorch classifier (``EmotionClassifier``)."""

    def __init__(self, classifier: object, min_map_size: int = 6):
        model = getattr(classifier, "model", None)
        if hasattr(classifier, "members"):
            raise ExplainError(f"Grad-CAM explains one model: {getattr(classifier, 'name', 'this model')} is an "
                               "ensemble; explain with one of its members' .pt checkpoints")
        if not isinstance(model, nn.Module):
            raise ExplainError(f"Grad-CAM needs PyTorch weights (.pt): {getattr(classifier, 'name', 'this model')} "
                               "runs in ONNX Runtime, which has no gradients; explain with the .pt checkpoint")
        self.model = model
        self.mean = float(classifier.mean)  # type: ignore[attr-defined]
        self.std = float(classifier.std)  # type: ignore[attr-defined]
        self.layer = target_layer(model, min_map_size)
        self.grid = feature_grid(model, self.layer)
        self._lock = threading.Lock()  # one explanation at a time: the hook sits on the shared layer

    def explain(self, faces: np.ndarray, target: int | None = None) -> Explanation:
        """Maps of ``target`` (an index into ``EMOTIONS``), or of each face's predicted class when None."""
        if target is not None and not 0 <= target < len(EMOTIONS):
            raise ExplainError(f"no emotion number {target}")
        n = len(faces)
        if n == 0:
            return Explanation(np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32),
                               np.zeros((0, len(EMOTIONS)), np.float32), np.zeros(0, np.int64))
        kept: dict[str, torch.Tensor] = {}
        me = threading.get_ident()

        def keep(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
            if threading.get_ident() == me:  # the pipeline may run the same model in other threads meanwhile
                kept["acts"] = out

        device = next(self.model.parameters()).device
        with self._lock:
            hook = self.layer.register_forward_hook(keep)
            try:
                with torch.enable_grad():
                    x = normalize(torch.from_numpy(np.ascontiguousarray(faces)).to(device), self.mean, self.std)
                    logits = self.model(x).float()
                    targets = logits.argmax(1) if target is None else torch.full((n,), target, device=device)
                    score = logits.gather(1, targets[:, None]).sum()
                    # the gradient at the layer only: no .grad left on the shared model's weights
                    (grads,) = torch.autograd.grad(score, kept["acts"])
            finally:
                hook.remove()
        acts, grads = kept["acts"].detach().float(), grads.float()
        # each activation weighted by its own positive gradient for the class (LayerCAM; see the module's docstring)
        cam = torch.relu((torch.relu(grads) * acts).sum(1, keepdim=True))
        cam = upsample(cam, *self.grid)
        peak = cam.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]
        maps = (cam / peak).clamp(0, 1).cpu().numpy().astype(np.float32)
        probs = torch.softmax(logits.detach(), 1).cpu().numpy().astype(np.float32)
        return Explanation(maps, probs, targets.cpu().numpy().astype(np.int64))


def overlay(patch_rgb: np.ndarray, heat: np.ndarray, caption: str, size: int, alpha: float,
            colourmap: str = "jet") -> np.ndarray:
    """The face (RGB, square) at ``size`` px with the heat map blended in and ``caption`` on a strip below it."""
    face = cv2.resize(patch_rgb, (size, size), interpolation=cv2.INTER_AREA if patch_rgb.shape[0] > size
                      else cv2.INTER_LINEAR)
    heat_px = cv2.resize(heat, (size, size), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap((np.clip(heat_px, 0, 1) * 255).astype(np.uint8), COLOURMAPS[colourmap])
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    blended = cv2.addWeighted(face, 1 - alpha, colour, alpha, 0)
    strip_h = max(18, size // 8)
    strip = np.full((strip_h, size, 3), 255, np.uint8)
    scale = strip_h / 30
    cv2.putText(strip, caption, (4, int(strip_h * 0.72)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                max(1, int(scale * 2)), cv2.LINE_AA)
    return np.vstack([blended, strip])
