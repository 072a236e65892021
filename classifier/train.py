"""Training recipe for the emotion classifier, laid out like torchvision's references/classification/train.py.

``train`` reads as its stages: seed and device -> data (``load_data``: decoded once, kept on the device as uint8)
-> model (``build_training_model``: fresh, or fine-tuned from one of our checkpoints) -> optimizer and schedule
(``build_optimisation``) -> epochs (``train_one_epoch``: on-device augmentation, mixed precision on GPU,
channels-last, a teacher's soft labels with ``teacher``; ``evaluate`` on the validation faces; best/last checkpoints,
log and curves) -> early stop, or the end of ``time_budget_s`` (``classifier.budget``) -> the final metrics
(``TrainResult``, also in ``result.json``).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from classifier.augment import AugmentConfig, augment_batch, mixup
from classifier.budget import BUDGET, EPOCHS, PATIENCE, EpochPlan
from classifier.data import FaceDataset, class_weights
from classifier.distill import Teacher
from classifier.inference import load_checkpoint, predict_logits
from classifier.models import build_model
from classifier.train_log import EpochRecord, write_logs
from deepfer_core.device import pick_device
from deepfer_core.settings import TrainSettings
from deepfer_core.types import EMOTIONS


@dataclass
class TrainResult:
    best_epoch: int
    best_val_acc: float
    epochs_run: int
    stopped_early: bool
    seconds: float
    out_dir: Path
    history: list[EpochRecord] = field(default_factory=list)
    planned_epochs: int = 0  # the schedule's length: train.epochs, or fewer where train.time_budget_s is shorter
    stop_reason: str = EPOCHS  # "epochs" (the plan ran), "time_budget" (the budget planned or cut it), "early_stop"


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


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and batch-norm parameters."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class _Data:
    """The training (and validation) faces as uint8 tensors on the device; batches are indexed there."""

    train_set: FaceDataset
    val_set: FaceDataset | None
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor | None
    y_val: torch.Tensor | None


@dataclass
class _Model:
    """The model, the module the steps call (compiled or the model itself), and the preprocessing it keeps."""

    model: nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]
    name: str
    mean: float
    std: float


@dataclass
class _Optimisation:
    optimizer: torch.optim.Optimizer
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None  # None: warm-up and cosine, set per step
    steps_per_epoch: int
    total_steps: int


@dataclass
class _Progress:
    """Where a run stands: what a resumed run continues from, and what ``last.pt`` saves."""

    history: list[EpochRecord] = field(default_factory=list)
    start_epoch: int = 0
    best_acc: float = -1.0
    best_epoch: int = 0
    step: int = 0


def load_data(cfg: TrainSettings, train_set: FaceDataset, val_set: FaceDataset | None, device: torch.device) -> _Data:
    """Hold out ``cfg.val_fraction`` when no validation set is given, and put both sets on the device."""
    if val_set is None and cfg.val_fraction > 0:
        tr, va = stratified_split(train_set.labels, cfg.val_fraction, cfg.seed)
        train_set, val_set = train_set.subset(tr), train_set.subset(va)
    return _Data(
        train_set,
        val_set,
        torch.from_numpy(train_set.images).to(device),
        torch.from_numpy(train_set.labels).to(device),
        torch.from_numpy(val_set.images).to(device) if val_set is not None else None,
        torch.from_numpy(val_set.labels).to(device) if val_set is not None else None,
    )


def build_training_model(cfg: TrainSettings, train_set: FaceDataset, init: Path | None, device: torch.device) -> _Model:
    """Fresh, or fine-tuned from one of our checkpoints (its preprocessing is kept); channels-last on the device."""
    if init is not None:
        model, meta = load_checkpoint(init)
        name, mean, std = meta["model"], float(meta["mean"]), float(meta["std"])
    else:
        name = cfg.model
        model = build_model(name)
        pixels = train_set.images.astype(np.float32) / 255
        mean, std = float(pixels.mean()), float(pixels.std())
    model.to(device).to(memory_format=torch.channels_last)
    # the compiled module shares the model's parameters; checkpoints and evaluation use the plain one
    forward = torch.compile(model) if cfg.compile else model
    return _Model(model, forward, name, mean, std)


def build_optimisation(cfg: TrainSettings, model: nn.Module, train_size: int) -> _Optimisation:
    """SGD (Nesterov) or AdamW, no decay on biases and norms; a plateau schedule or per-step warm-up and cosine."""
    groups = _param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    steps_per_epoch = max(1, train_size // cfg.batch_size)
    plateau = None
    if cfg.schedule == "plateau":
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5,
                                                             patience=max(1, cfg.patience // 3))
    return _Optimisation(optimizer, plateau, steps_per_epoch, cfg.epochs * steps_per_epoch)


def train_one_epoch(
    cfg: TrainSettings,
    net: _Model,
    criterion: nn.Module,
    opt: _Optimisation,
    data: _Data,
    order: torch.Tensor,
    gen: torch.Generator,
    step: int,
    teacher: Teacher | None = None,
) -> tuple[float, float, int]:
    """One pass over the batches in ``order``: on-device augmentation, mixup, mixed precision on GPU, and the
    teacher's soft labels beside the hard ones when there is one. Returns (mean loss, accuracy, the step after)."""
    device = data.x_train.device
    use_amp = device.type == "cuda"
    aug = AugmentConfig(erase_prob=cfg.random_erasing, degrade_prob=cfg.degrade)
    net.model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for i in range(opt.steps_per_epoch):
        idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
        x = data.x_train[idx].float().div_(255).unsqueeze(1)
        y = data.y_train[idx]
        x = augment_batch(x, aug, gen if device.type == "cpu" else None)
        x = ((x - net.mean) / net.std).contiguous(memory_format=torch.channels_last)
        if opt.plateau is None:
            for g in opt.optimizer.param_groups:
                g["lr"] = _lr_at(step, opt.total_steps, cfg.warmup_epochs * opt.steps_per_epoch, cfg.lr)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            target: torch.Tensor = y
            if cfg.mixup_alpha > 0:
                x, target = mixup(x, nn.functional.one_hot(y, len(EMOTIONS)).float(), cfg.mixup_alpha)
            logits = net.forward(x)
            loss = criterion(logits.float(), target)
            if teacher is not None:
                loss = teacher.loss(logits.float(), loss, x, net.mean, net.std)
        opt.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        opt.optimizer.step()
        step += 1
        loss_sum += float(loss.detach()) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
    return loss_sum / max(1, seen), correct / max(1, seen), step


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean: float, std: float
             ) -> tuple[float, float]:
    """(loss, accuracy) of the plain model on validation faces already on its device."""
    logits = predict_logits(model, images, mean, std)
    loss = float(nn.functional.cross_entropy(logits.float(), labels))
    return loss, float((logits.argmax(1) == labels).float().mean())


class _Checkpoints:
    """``best.pt`` (weights and metadata) and ``last.pt`` (everything a resumed run needs), written atomically."""

    def __init__(self, out_dir: Path, net: _Model, opt: _Optimisation, gen: torch.Generator,
                 train_args: dict[str, Any]):
        self.out_dir, self.net, self.opt, self.gen, self.train_args = out_dir, net, opt, gen, train_args
        self.meta = {"model": net.name, "classes": list(EMOTIONS), "image_size": 48, "mean": net.mean, "std": net.std}

    def resume(self, path: Path, device: torch.device, plan: EpochPlan) -> _Progress:
        """Model, optimizer, schedule (and its planned length), history and random state of an interrupted run."""
        state = torch.load(path, map_location=device, weights_only=False)
        plan.restore(state)
        self.net.model.load_state_dict(state["state_dict"])
        self.opt.optimizer.load_state_dict(state["optimizer"])
        if self.opt.plateau is not None and state.get("plateau"):
            self.opt.plateau.load_state_dict(state["plateau"])
        epoch = state["epoch"]
        progress = _Progress([EpochRecord(**r) for r in state["history"]], epoch, state["best_val_acc"],
                             state["best_epoch"], epoch * self.opt.steps_per_epoch)
        self.gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        return progress

    def save(self, name: str, epoch: int, progress: _Progress, full: bool, plan: EpochPlan) -> None:
        payload = {
            **self.meta,
            "state_dict": self.net.model.state_dict(),
            "epoch": epoch,
            "best_val_acc": progress.best_acc,
            "best_epoch": progress.best_epoch,
            "train_args": self.train_args,
        }
        if full:
            plateau = self.opt.plateau
            payload.update(
                optimizer=self.opt.optimizer.state_dict(),
                plateau=plateau.state_dict() if plateau else None,
                history=[asdict(r) for r in progress.history],
                generator=self.gen.get_state(),
                torch_rng=torch.get_rng_state(),
                **plan.state(),
            )
        path = self.out_dir / name
        tmp = path.with_suffix(".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)


def _train_args(cfg: TrainSettings, data: _Data, init: Path | None, teacher: Teacher | None) -> dict[str, Any]:
    """The settings and data of the run (and its teachers), as the checkpoints record them."""
    args: dict[str, Any] = {k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.model_dump().items()}
    args.update(train_data=data.train_set.source, val_data=data.val_set.source if data.val_set else None,
                init=str(init) if init else None, teacher=[str(p) for p in teacher.paths] if teacher else None)
    return args


def _epoch_order(cfg: TrainSettings, data: _Data, sample_weights: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The epoch's batches: class-balanced draws (``class_balance = "sampler"``) or a shuffle."""
    n, device = len(data.train_set), data.x_train.device
    if cfg.class_balance == "sampler":
        return torch.multinomial(sample_weights.cpu(), n, replacement=True, generator=gen).to(device)
    return torch.randperm(n, generator=gen).to(device)


def train(
    cfg: TrainSettings,
    train_set: FaceDataset,
    val_set: FaceDataset | None,
    out_dir: Path,
    init: Path | None = None,
    resume: Path | None = None,
    on_epoch: Callable[[EpochRecord, int], None] | None = None,
    teachers: list[Path] | None = None,
    started: float | None = None,
) -> TrainResult:
    """Train ``cfg.model`` and write ``best.pt``, ``last.pt``, ``log.csv``, ``log.json``, ``curves.png`` and
    ``result.json``. ``teachers``: checkpoints to distil from; ``started``: the time.time() ``cfg.time_budget_s``
    counts from (default: now; the CLI passes its own start, so data loading counts too)."""
    started = time.time() if started is None else started
    out_dir.mkdir(parents=True, exist_ok=True)

    # 1. seed and device
    gen = seed_everything(cfg.seed)
    device = pick_device(cfg.device, "train.device")
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads or os.cpu_count() or 1)

    # 2. data, 3. model, 4. loss, optimizer, schedule
    data = load_data(cfg, train_set, val_set, device)
    net = build_training_model(cfg, data.train_set, init, device)
    labels = data.train_set.labels
    weights = torch.from_numpy(class_weights(labels)).to(device)
    criterion = nn.CrossEntropyLoss(
        weight=weights if cfg.class_balance == "weights" else None, label_smoothing=cfg.label_smoothing
    )
    opt = build_optimisation(cfg, net.model, len(data.train_set))
    teacher = Teacher(teachers, device, cfg.distill_alpha, cfg.distill_temperature) if teachers else None
    sample_weights = torch.from_numpy(class_weights(labels)[labels]).to(device)
    checkpoints = _Checkpoints(out_dir, net, opt, gen, _train_args(cfg, data, init, teacher))
    plan = EpochPlan(cfg.epochs, cfg.epochs, cfg.time_budget_s, started)
    progress = checkpoints.resume(resume, device, plan) if resume is not None else _Progress()

    # 5. epochs: train, validate, checkpoint, log; stop early, or when the budget's plan is done or cut
    reason, epoch, epoch_s = EPOCHS, progress.start_epoch, 0.0
    while epoch < plan.epochs:
        if epoch_s and not plan.another_fits(epoch_s):
            reason = BUDGET
            break
        t0 = time.time()
        opt.total_steps = plan.epochs * opt.steps_per_epoch
        order = _epoch_order(cfg, data, sample_weights, gen)
        train_loss, train_acc, progress.step = train_one_epoch(cfg, net, criterion, opt, data, order, gen,
                                                               progress.step, teacher)
        val_loss, val_acc = float("nan"), float("nan")
        if data.x_val is not None and data.y_val is not None:
            val_loss, val_acc = evaluate(net.model, data.x_val, data.y_val, net.mean, net.std)
        score = val_acc if data.x_val is not None else train_acc
        record = EpochRecord(epoch + 1, opt.optimizer.param_groups[0]["lr"], train_loss, train_acc, val_loss,
                             val_acc, time.time() - t0)
        progress.history.append(record)
        if opt.plateau is not None:
            opt.plateau.step(score)
        if score > progress.best_acc:
            progress.best_acc, progress.best_epoch = score, epoch + 1
            checkpoints.save("best.pt", epoch + 1, progress, full=False, plan=plan)
        write_logs(progress.history, out_dir)
        epoch += 1
        epoch_s = time.time() - t0
        plan.after_epoch(epoch, epoch_s, cfg.warmup_epochs)
        checkpoints.save("last.pt", epoch, progress, full=True, plan=plan)
        if on_epoch is not None:
            on_epoch(record, plan.epochs)
        if epoch - progress.best_epoch >= cfg.patience:
            reason = PATIENCE
            break
    if reason == EPOCHS and plan.epochs < cfg.epochs:
        reason = BUDGET  # the budget planned fewer epochs than train.epochs

    # 6. final metrics
    history = progress.history
    result = TrainResult(progress.best_epoch, progress.best_acc, len(history), reason == PATIENCE,
                         time.time() - started, out_dir, history, plan.epochs, reason)
    summary = {k: v for k, v in asdict(result).items() if k != "history"}
    (out_dir / "result.json").write_text(json.dumps({**summary, "out_dir": str(out_dir),
                                                     "time_budget_s": cfg.time_budget_s}, indent=1))
    return result
