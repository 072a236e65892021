"""Emotion classifiers for 48x48 grayscale faces.

``baseline_cnn`` is the network described in the project's origin documents,
kept for comparison. ``deepfer_resnet`` is our default: a narrow residual net
that puts its depth at low resolution, where convolutions are cheap, so it
trains and runs in real time on a CPU. The large ones are for a GPU budget:
``deepfer_resnet_wide`` (the default's shape, twice as wide), ``deepfer_resnet18``
and ``deepfer_vgg`` (the two families the from-scratch FER2013 records train).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from deepfer_core.types import EMOTIONS

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
    """Stem at 48x48, then residual stages at 24, 12, 6 and 3 pixels (``strides`` 2 each, by default)."""

    def __init__(
        self, widths: tuple[int, ...] = (32, 64, 128, 256, 512), depths: tuple[int, ...] = (1, 1, 1, 1),
        dropout: float = 0.3, num_classes: int = NUM_CLASSES, strides: tuple[int, ...] = (2, 2, 2, 2),
    ) -> None:
        super().__init__()
        stem, *stage_widths = widths
        layers: list[nn.Module] = _conv_bn_relu(1, stem)
        cin = stem
        for cout, depth, stride in zip(stage_widths, depths, strides, strict=True):
            layers.append(BasicBlock(cin, cout, stride=stride))
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


class VGGNet(nn.Module):
    """VGG-style, as the from-scratch FER2013 records train it (e.g. Khaireddin & Chen 2021, 73.3% reported): four
    stages of two 3x3 conv-BN-ReLU and a 2x2 max-pool (64, 128, 256, 512 channels: 48 -> 3 px), then two dense
    layers of 1024 with dropout. Dense layers of 4096 would add 30M parameters for 48 px faces."""

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512), dense: int = 1024, dropout: float = 0.5,
                 num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for cout in widths:
            layers += _conv_bn_relu(cin, cout) + _conv_bn_relu(cout, cout) + [nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        side = 48 // 2 ** len(widths)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(cin * side * side, dense), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(dense, dense), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(dense, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


MODELS: dict[str, Callable[[], nn.Module]] = {
    "baseline_cnn": BaselineCNN,
    # 1.5M parameters, ~40M multiply-adds per face: sized for CPU training and real-time CPU inference.
    "deepfer_resnet": lambda: FerResNet(widths=(16, 32, 64, 128, 256), depths=(1, 1, 2, 1), dropout=0.2),
    # The same shape at twice the width, for a GPU budget.
    "deepfer_resnet_wide": lambda: FerResNet(widths=(32, 64, 128, 256, 512), depths=(1, 2, 2, 1)),
    # ResNet18 for 48 px: 3x3 stem, no max-pool, two blocks per stage at 48, 24, 12 and 6 px (11.2M parameters).
    "deepfer_resnet18": lambda: FerResNet(widths=(64, 64, 128, 256, 512), depths=(2, 2, 2, 2), strides=(1, 2, 2, 2)),
    # VGG-style (VGGNet above).
    "deepfer_vgg": VGGNet,
}


def build_model(name: str) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} (choose from: {', '.join(MODELS)})")
    return MODELS[name]()
