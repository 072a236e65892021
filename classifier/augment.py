"""Batch augmentation on the training device (GPU tensors when training on GPU).

Everything works on a whole batch at once; no per-image Python, so a CPU data
loader is never the bottleneck.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    rotation_deg: float = 10.0
    shift: float = 0.1
    zoom: float = 0.1
    hflip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    erase_prob: float = 0.25


def random_affine(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator | None = None) -> torch.Tensor:
    """Rotate, shift, zoom and mirror a batch ``[B, C, H, W]`` with one ``grid_sample``."""
    b = x.shape[0]
    dev = x.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(b, device=dev, generator=gen) * (hi - lo) + lo

    angle = uniform(-cfg.rotation_deg, cfg.rotation_deg) * (math.pi / 180)
    scale = uniform(1 - cfg.zoom, 1 + cfg.zoom)
    tx, ty = uniform(-cfg.shift, cfg.shift) * 2, uniform(-cfg.shift, cfg.shift) * 2
    flip = (
        torch.where(torch.rand(b, device=dev, generator=gen) < 0.5, -1.0, 1.0)
        if cfg.hflip
        else torch.ones(b, device=dev)
    )
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_photometric(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator | None = None) -> torch.Tensor:
    """Brightness and contrast jitter on images in [0, 1]."""
    b = x.shape[0]
    shape = (b, 1, 1, 1)
    c = 1 + (torch.rand(shape, device=x.device, generator=gen) * 2 - 1) * cfg.contrast
    br = (torch.rand(shape, device=x.device, generator=gen) * 2 - 1) * cfg.brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * c + mean + br).clamp_(0, 1)


def random_erasing(x: torch.Tensor, prob: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """Erase one rectangle (2-20% of the area, aspect 0.3-3.3) per chosen image with noise."""
    if prob <= 0:
        return x
    b, _, h, w = x.shape
    dev = x.device
    area = (torch.rand(b, device=dev, generator=gen) * 0.18 + 0.02) * h * w
    log_r = torch.rand(b, device=dev, generator=gen) * (math.log(3.3) - math.log(0.3)) + math.log(0.3)
    ratio = torch.exp(log_r)
    eh = torch.sqrt(area * ratio).clamp(1, h)
    ew = torch.sqrt(area / ratio).clamp(1, w)
    y0 = torch.rand(b, device=dev, generator=gen) * (h - eh)
    x0 = torch.rand(b, device=dev, generator=gen) * (w - ew)
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    inside = (
        (ys >= y0.view(b, 1, 1))
        & (ys < (y0 + eh).view(b, 1, 1))
        & (xs >= x0.view(b, 1, 1))
        & (xs < (x0 + ew).view(b, 1, 1))
    )
    chosen = (torch.rand(b, device=dev, generator=gen) < prob).view(b, 1, 1)
    mask = (inside & chosen).unsqueeze(1)
    noise = torch.rand(x.shape, device=dev, generator=gen, dtype=x.dtype)
    return torch.where(mask, noise, x)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator | None = None) -> torch.Tensor:
    """Full training augmentation for a batch of images in [0, 1]."""
    x = random_affine(x, cfg, gen)
    x = random_photometric(x, cfg, gen)
    return random_erasing(x, cfg.erase_prob, gen)


def mixup(x: torch.Tensor, y_onehot: torch.Tensor, alpha: float, gen: torch.Generator | None = None):
    """Mixup of a batch with a shuffled copy of itself; returns mixed images and soft targets."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(x.shape[0], device=x.device, generator=gen)
    return lam * x + (1 - lam) * x[perm], lam * y_onehot + (1 - lam) * y_onehot[perm]
