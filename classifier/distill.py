"""Knowledge distillation (``deepfer train --teacher W``): the student learns from a teacher's soft labels as well
as from the hard ones (Hinton et al. 2015).

loss = alpha * KL(softmax(teacher / T) || softmax(student / T)) * T^2 + (1 - alpha) * (the usual loss on the labels)

T^2 keeps the soft term's gradients at the hard term's scale. Several teachers are an ensemble: their softened
probabilities are averaged; an ensemble manifest is one teacher whose members weigh as the manifest says. Each
teacher sees the student's augmented batch with its own preprocessing, in eval mode and without gradients, on the
training device.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from classifier.ensemble import is_manifest, read_manifest
from classifier.inference import load_checkpoint


class Teacher:
    def __init__(self, paths: Sequence[Path], device: torch.device, alpha: float, temperature: float) -> None:
        self.paths = [Path(p) for p in paths]
        self.alpha, self.temperature = alpha, temperature
        self.models: list[tuple[nn.Module, float, float]] = []
        self.weights: list[float] = []  # each model's share of the soft labels
        for path in self.paths:
            # an ensemble manifest counts as one teacher: its members with their manifest weights
            members = [(m.path, m.weight) for m in read_manifest(path).members] if is_manifest(path) else [(path, 1.0)]
            for member, share in members:
                model, meta = load_checkpoint(member)
                model.to(device).to(memory_format=torch.channels_last).eval().requires_grad_(False)
                self.models.append((model, float(meta["mean"]), float(meta["std"])))
                self.weights.append(share / len(self.paths))

    @torch.no_grad()
    def soft_labels(self, x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
        """The teachers' mean probabilities at temperature T for a batch normalised with the student's (mean, std)."""
        pixels = x * std + mean
        probs = [w * F.softmax(m((pixels - m_mean) / m_std).float() / self.temperature, dim=1)
                 for (m, m_mean, m_std), w in zip(self.models, self.weights)]
        return torch.stack(probs).sum(0)

    def loss(self, logits: torch.Tensor, hard_loss: torch.Tensor, x: torch.Tensor, mean: float, std: float
             ) -> torch.Tensor:
        """The distillation loss of the student's ``logits`` on batch ``x``, given the hard labels' loss."""
        t = self.temperature
        soft = F.kl_div(F.log_softmax(logits / t, dim=1), self.soft_labels(x, mean, std), reduction="batchmean")
        return self.alpha * soft * t * t + (1 - self.alpha) * hard_loss
