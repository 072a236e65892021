"""Where a model runs: ``auto`` takes the GPU when there is one."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def pick_device(name: str, setting: str = "device") -> torch.device:
    """A ``torch.device`` for ``auto``, ``cpu`` or ``cuda``; ``ValueError`` naming ``setting`` when CUDA is missing."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{setting} is 'cuda' but no CUDA GPU is available")
    return torch.device(name)
