"""Emotion classifiers for 48x48 grayscale faces.

``baseline_cnn`` is the network described in the project's origin documents,
kept for comparison. ``deepfer_resnet`` is our default: a narrow residual net
that puts its depth at low resolution, where convolutions are cheap, so it
trains and runs in real time on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from core.types import EMOTIONS

NUM_CLASSES = len(EMOTIONS)


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class BaselineCNN(nn.Module):
    """conv 32-64 / 128-128 / 256-256 with BN, 2x2 max-pool and dropout 0.25 after each pair; dense 256."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for cin, c1, c2 in [(1, 32, 64), (64, 128, 128), (128, 256, 256)]:
            layers += _conv_bn_relu(cin, c1) + _conv_bn_relu(c1, c2) + [nn.MaxPool2d(2), nn.Dropout(0.25)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(256 * 6 * 6, 256, bias=False),
            nn.BatchNorm1d(256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn_relu(cin, cout, stride),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class FerResNet(nn.Module):
    """Stem at 48x48, then residual stages at 24, 12, 6 and 3 pixels."""

    def __init__(
        self, widths: tuple[int, ...] = (32, 64, 128, 256, 512), depths: tuple[int, ...] = (1, 1, 1, 1),
        dropout: float = 0.3, num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        stem, *stage_widths = widths
        layers: list[nn.Module] = _conv_bn_relu(1, stem)
        cin = stem
        for cout, depth in zip(stage_widths, depths, strict=True):
            layers.append(BasicBlock(cin, cout, stride=2))
            layers += [BasicBlock(cout, cout) for _ in range(depth - 1)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, num_classes)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


MODELS: dict[str, Callable[[], nn.Module]] = {
    "baseline_cnn": BaselineCNN,
    # 1.5M parameters, ~40M multiply-adds per face: sized for CPU training and real-time CPU inference.
    "deepfer_resnet": lambda: FerResNet(widths=(16, 32, 64, 128, 256), depths=(1, 1, 2, 1), dropout=0.2),
    # The same shape at twice the width, for a GPU budget.
    "deepfer_resnet_wide": lambda: FerResNet(widths=(32, 64, 128, 256, 512), depths=(1, 2, 2, 1)),
}


def build_model(name: str) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} (choose from: {', '.join(MODELS)})")
    return MODELS[name]()
