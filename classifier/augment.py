"""Batch augmentation on the training device (GPU tensors when training on GPU).

Everything works on a whole batch at once; no per-image Python, so a CPU data
loader is never the bottleneck.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
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
    degrade_prob: float = 0.0  # share of faces made CCTV-like (random_degradation); 0: off
    degrade_min_size: int = 12
    degrade_blur: float = 1.5  # largest Gaussian sigma, px of the 48 px face
    degrade_jpeg: tuple[int, int] = (15, 70)  # JPEG quality range
    degrade_noise: float = 0.04  # largest noise std, images in [0, 1]


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


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))


def _jpeg(x: torch.Tensor, quality: list[int]) -> torch.Tensor:
    """JPEG re-encoding of ``[B, 1, h, w]`` in [0, 1], image i at ``quality[i]`` (0: left alone); OpenCV on the
    CPU, as no tensor codec exists."""
    arr = x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    for i, q in enumerate(quality):
        if q > 0:
            _, buf = cv2.imencode(".jpg", arr[i, 0], [cv2.IMWRITE_JPEG_QUALITY, q])
            arr[i, 0] = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return torch.from_numpy(arr).to(x.device, x.dtype).div_(255)


def random_degradation(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator | None = None) -> torch.Tensor:
    """A share ``cfg.degrade_prob`` of the batch as a distant camera sees it, like ``classifier.degrade``: blur
    (half of them), shrunk to ``degrade_min_size``-48 px by area averaging (steps of 4 px), JPEG (half), noise
    (half), and back to 48 px bilinear. Faces are grouped by blur and by size: about a dozen calls a batch."""
    if cfg.degrade_prob <= 0:
        return x
    b, _, h, w = x.shape
    dev = x.device

    def draw(n: int) -> torch.Tensor:
        return torch.rand(n, generator=gen)  # on the CPU: the group keys are read there

    chosen = (draw(b) < cfg.degrade_prob).nonzero().flatten()
    n = len(chosen)
    if n == 0:
        return x
    steps = (h - cfg.degrade_min_size) // 4
    sizes = cfg.degrade_min_size + 4 * (draw(n) * (steps + 1)).long().clamp(max=steps)
    sigmas = torch.where(draw(n) < 0.5, (draw(n) * cfg.degrade_blur * 2).ceil() / 2, torch.zeros(n))
    lo, hi = cfg.degrade_jpeg
    quality = torch.where(draw(n) < 0.5, (lo + draw(n) * (hi - lo)).round().long(), torch.zeros(n, dtype=torch.long))
    noise = torch.where(draw(n) < 0.5, draw(n) * cfg.degrade_noise, torch.zeros(n))
    noise_field = torch.randn((n, 1, h, w), generator=gen)
    out = x.clone()
    for sigma in torch.unique(sigmas[sigmas > 0]).tolist():
        idx = chosen[sigmas == sigma].to(dev)
        out[idx] = _gaussian_blur(out[idx], sigma)
    for s in torch.unique(sizes).tolist():
        pick = (sizes == s).nonzero().flatten()
        idx = chosen[pick].to(dev)
        g = F.interpolate(out[idx], size=(s, s), mode="area") if s < h else out[idx]
        g = _jpeg(g, quality[pick].tolist())
        g = g + noise[pick].view(-1, 1, 1, 1).to(dev, x.dtype) * noise_field[pick, :, :s, :s].to(dev, x.dtype)
        if s < h:
            g = F.interpolate(g, size=(h, w), mode="bilinear", align_corners=False)
        out[idx] = g.clamp(0, 1)
    return out


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator | None = None) -> torch.Tensor:
    """Full training augmentation for a batch of images in [0, 1]."""
    x = random_affine(x, cfg, gen)
    x = random_photometric(x, cfg, gen)
    x = random_degradation(x, cfg, gen)  # last but erasing: the camera sees the posed, lit face
    return random_erasing(x, cfg.erase_prob, gen)


def mixup(x: torch.Tensor, y_onehot: torch.Tensor, alpha: float, gen: torch.Generator | None = None):
    """Mixup of a batch with a shuffled copy of itself; returns mixed images and soft targets."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(x.shape[0], device=x.device, generator=gen)
    return lam * x + (1 - lam) * x[perm], lam * y_onehot + (1 - lam) * y_onehot[perm]
