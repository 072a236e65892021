"""What a training run writes each epoch (``EpochRecord``): ``log.csv``, ``log.json`` and ``curves.png``."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class EpochRecord:
    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float


def save_curves(history: list[EpochRecord], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r.epoch for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(ep, [r.train_loss for r in history], label="train")
    ax1.plot(ep, [r.val_loss for r in history], label="validation")
    ax1.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax2.plot(ep, [r.train_acc for r in history], label="train")
    ax2.plot(ep, [r.val_acc for r in history], label="validation")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_logs(history: list[EpochRecord], out_dir: Path) -> None:
    rows = [asdict(r) for r in history]
    with (out_dir / "log.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "log.json").write_text(json.dumps(rows, indent=1))
    save_curves(history, out_dir / "curves.png")
