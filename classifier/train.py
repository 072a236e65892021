"""Training recipe for the emotion classifier, in the spirit of torchvision's references.

Stages: seed and device -> data (decoded once, kept on the device as uint8) ->
model (fresh, or fine-tuned from one of our checkpoints) -> optimizer and
schedule -> epochs (on-device augmentation, mixed precision on GPU,
channels-last) -> validation, best/last checkpoints, log and curves -> early stop.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from classifier.augment import AugmentConfig, augment_batch, mixup
from classifier.data import FaceDataset, class_weights
from classifier.inference import load_checkpoint, predict_logits
from classifier.models import build_model
from core.device import pick_device
from core.settings import TrainSettings
from core.types import EMOTIONS


@dataclass
class EpochRecord:
    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float


@dataclass
class TrainResult:
    best_epoch: int
    best_val_acc: float
    epochs_run: int
    stopped_early: bool
    seconds: float
    out_dir: Path
    history: list[EpochRecord] = field(default_factory=list)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) with ``fraction`` of every class held out."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(idx) * fraction))
        val_idx.append(idx[:k])
        train_idx.append(idx[k:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and batch-norm parameters."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


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


def train(
    cfg: TrainSettings,
    train_set: FaceDataset,
    val_set: FaceDataset | None,
    out_dir: Path,
    init: Path | None = None,
    resume: Path | None = None,
    on_epoch: Callable[[EpochRecord, int], None] | None = None,
) -> TrainResult:
    """Train ``cfg.model`` and write ``best.pt``, ``last.pt``, ``log.csv``, ``log.json`` and ``curves.png``."""
    started = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)

    # 1. seed and device
    gen = seed_everything(cfg.seed)
    device = pick_device(cfg.device, "train.device")
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    use_amp = device.type == "cuda"

    # 2. data: one uint8 tensor on the device; batches are indexed, augmented and normalized there
    if val_set is None and cfg.val_fraction > 0:
        tr, va = stratified_split(train_set.labels, cfg.val_fraction, cfg.seed)
        train_set, val_set = train_set.subset(tr), train_set.subset(va)
    x_train = torch.from_numpy(train_set.images).to(device)
    y_train = torch.from_numpy(train_set.labels).to(device)
    x_val = torch.from_numpy(val_set.images).to(device) if val_set is not None else None
    y_val = torch.from_numpy(val_set.labels).to(device) if val_set is not None else None

    # 3. model: fresh, or fine-tuned from one of our checkpoints (its preprocessing is kept)
    if init is not None:
        model, meta = load_checkpoint(init)
        model_name, mean, std = meta["model"], float(meta["mean"]), float(meta["std"])
    else:
        model_name = cfg.model
        model = build_model(model_name)
        pixels = train_set.images.astype(np.float32) / 255
        mean, std = float(pixels.mean()), float(pixels.std())
    model.to(device).to(memory_format=torch.channels_last)
    # the compiled module shares the model's parameters; checkpoints and evaluation use the plain one
    forward = torch.compile(model) if cfg.compile else model

    # 4. loss, optimizer, schedule
    weights = torch.from_numpy(class_weights(train_set.labels)).to(device)
    criterion = nn.CrossEntropyLoss(
        weight=weights if cfg.class_balance == "weights" else None, label_smoothing=cfg.label_smoothing
    )
    groups = _param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    steps_per_epoch = max(1, len(train_set) // cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    plateau = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=0.5, patience=max(1, cfg.patience // 3)
        )
        if cfg.schedule == "plateau"
        else None
    )
    sample_weights = torch.from_numpy(class_weights(train_set.labels)[train_set.labels]).to(device)
    aug = AugmentConfig(erase_prob=cfg.random_erasing)

    history: list[EpochRecord] = []
    start_epoch, best_acc, best_epoch, step = 0, -1.0, 0, 0
    if resume is not None:
        state = torch.load(resume, map_location=device, weights_only=False)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        if plateau is not None and state.get("plateau"):
            plateau.load_state_dict(state["plateau"])
        start_epoch, best_acc, best_epoch = state["epoch"], state["best_val_acc"], state["best_epoch"]
        step = start_epoch * steps_per_epoch
        history = [EpochRecord(**r) for r in state["history"]]
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])

    meta = {"model": model_name, "classes": list(EMOTIONS), "image_size": 48, "mean": mean, "std": std}
    train_args = {k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.model_dump().items()}
    train_args.update(
        train_data=train_set.source, val_data=val_set.source if val_set else None, init=str(init) if init else None
    )

    def checkpoint(path: Path, epoch: int, full: bool) -> None:
        payload = {
            **meta,
            "state_dict": model.state_dict(),
            "epoch": epoch,
            "best_val_acc": best_acc,
            "best_epoch": best_epoch,
            "train_args": train_args,
        }
        if full:
            payload.update(
                optimizer=optimizer.state_dict(),
                plateau=plateau.state_dict() if plateau else None,
                history=[asdict(r) for r in history],
                generator=gen.get_state(),
                torch_rng=torch.get_rng_state(),
            )
        tmp = path.with_suffix(".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)

    # 5. epochs
    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        model.train()
        if cfg.class_balance == "sampler":
            order = torch.multinomial(sample_weights.cpu(), len(train_set), replacement=True, generator=gen).to(device)
        else:
            order = torch.randperm(len(train_set), generator=gen).to(device)
        loss_sum, correct, seen = 0.0, 0, 0
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            x = x_train[idx].float().div_(255).unsqueeze(1)
            y = y_train[idx]
            x = augment_batch(x, aug, gen if device.type == "cpu" else None)
            x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
            if plateau is None:
                for g in optimizer.param_groups:
                    g["lr"] = _lr_at(step, total_steps, cfg.warmup_epochs * steps_per_epoch, cfg.lr)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                if cfg.mixup_alpha > 0:
                    x, target = mixup(x, nn.functional.one_hot(y, len(EMOTIONS)).float(), cfg.mixup_alpha)
                    logits = forward(x)
                    loss = criterion(logits.float(), target)
                else:
                    logits = forward(x)
                    loss = criterion(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)

        val_loss, val_acc = float("nan"), float("nan")
        if x_val is not None:
            logits = predict_logits(model, x_val, mean, std)
            val_loss = float(nn.functional.cross_entropy(logits.float(), y_val))
            val_acc = float((logits.argmax(1) == y_val).float().mean())
        score = val_acc if x_val is not None else correct / max(1, seen)
        record = EpochRecord(
            epoch + 1,
            optimizer.param_groups[0]["lr"],
            loss_sum / max(1, seen),
            correct / max(1, seen),
            val_loss,
            val_acc,
            time.time() - t0,
        )
        history.append(record)
        if plateau is not None:
            plateau.step(score)
        if score > best_acc:
            best_acc, best_epoch = score, epoch + 1
            checkpoint(out_dir / "best.pt", epoch + 1, full=False)
        checkpoint(out_dir / "last.pt", epoch + 1, full=True)
        _write_logs(history, out_dir)
        if on_epoch is not None:
            on_epoch(record, cfg.epochs)
        if epoch + 1 - best_epoch >= cfg.patience:
            stopped_early = True
            break

    return TrainResult(best_epoch, best_acc, len(history), stopped_early, time.time() - started, out_dir, history)


def _write_logs(history: list[EpochRecord], out_dir: Path) -> None:
    rows = [asdict(r) for r in history]
    with (out_dir / "log.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "log.json").write_text(json.dumps(rows, indent=1))
    save_curves(history, out_dir / "curves.png")
