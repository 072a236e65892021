"""``train.time_budget_s``: the epochs that fit are planned from the measured epoch time, the cosine is planned for
them and reaches its end, and the run stops with a finished best.pt and a result.json saying why."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from classifier.budget import BUDGET, EpochPlan
from classifier.data import FaceDataset
from classifier.inference import load_checkpoint
from deepfer_core.settings import TrainSettings


def synthetic_faces(n_per_class: int = 20, seed: int = 0) -> FaceDataset:
    """Random faces with a class-dependent brightness, so that a tiny run has something to learn."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(7), n_per_class)
    images = rng.integers(0, 120, (len(labels), 48, 48)) + labels[:, None, None] * 18
    return FaceDataset(images.astype(np.uint8), labels.astype(np.int64), "synthetic")


def test_the_plan_is_counted_from_the_epoch_time_and_fixed_after_warm_up():
    plan = EpochPlan(epochs=100, most=100, budget_s=10.0, started=time.time() - 1.9)
    plan.after_epoch(1, 2.0, warmup_epochs=2)  # 8.1 s left: 4 more epochs of 2 s
    assert (plan.epochs, plan.fixed) == (5, False)
    plan.started -= 1.0  # the second (warm-up) epoch took 1 s: 7.1 s left, 7 more
    plan.after_epoch(2, 1.0, warmup_epochs=2)
    assert (plan.epochs, plan.fixed) == (9, True)
    plan.after_epoch(3, 5.0, warmup_epochs=2)  # fixed: a slower epoch does not move the cosine
    assert plan.epochs == 9 and not plan.another_fits(8.0) and plan.another_fits(1.0)
    assert EpochPlan(epochs=3, most=3, budget_s=1000.0, started=time.time()).epochs == 3
    never = EpochPlan(epochs=30, most=30, budget_s=0.0, started=time.time() - 1e6)  # no budget: train.epochs
    never.after_epoch(1, 1.0, 0)
    assert never.epochs == 30 and never.another_fits(1e9)
    resumed = EpochPlan(epochs=100, most=100, budget_s=50.0, started=time.time())
    resumed.restore(plan.state())
    assert (resumed.epochs, resumed.fixed) == (9, True)


class FakeClock:
    """time.time() for classifier.train and classifier.budget: only epochs take time, ``epoch_s`` each, so the
    budget's arithmetic is tested whatever the machine's load."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, epoch_s: list[float]) -> None:
        import classifier.budget
        import classifier.train as training

        self.now, self.epoch_s = 1000.0, epoch_s
        clock = SimpleNamespace(time=lambda: self.now)
        monkeypatch.setattr(training, "time", clock)
        monkeypatch.setattr(classifier.budget, "time", clock)
        real_epoch = training.train_one_epoch

        def timed_epoch(*args, **kwargs):
            self.now += self.epoch_s.pop(0) if len(self.epoch_s) > 1 else self.epoch_s[0]
            return real_epoch(*args, **kwargs)

        monkeypatch.setattr(training, "train_one_epoch", timed_epoch)


def test_a_budget_of_about_three_epochs_stops_there_with_a_finished_schedule_and_checkpoint(tmp_path, monkeypatch):
    import classifier.train as training

    FakeClock(monkeypatch, [1.0])
    cfg = TrainSettings(epochs=50, batch_size=8, lr=0.05, device="cpu", warmup_epochs=1, random_erasing=0,
                        time_budget_s=3.5, threads=1)
    data = synthetic_faces()
    result = training.train(cfg, data, synthetic_faces(5, seed=1), tmp_path / "run")

    # planned after the warm-up epoch: 2.5 s left, two more epochs of 1 s
    assert result.stop_reason == BUDGET and not result.stopped_early
    assert result.planned_epochs == result.epochs_run == 3, result
    assert result.seconds <= cfg.time_budget_s
    # the cosine was planned for the epochs that ran: the last step's learning rate is its end
    steps = len(data) // cfg.batch_size
    total = result.planned_epochs * steps
    assert result.history[-1].lr == pytest.approx(training._lr_at(total - 1, total, steps, cfg.lr))
    assert result.history[-1].lr < 0.05 * cfg.lr
    model, meta = load_checkpoint(tmp_path / "run" / "best.pt")
    assert meta["epoch"] == result.best_epoch and model(torch.zeros(2, 1, 48, 48)).shape == (2, 7)
    summary = json.loads((tmp_path / "run" / "result.json").read_text())
    assert summary["epochs_run"] == 3 and summary["stop_reason"] == "time_budget"
    assert summary["planned_epochs"] == 3 and summary["time_budget_s"] == 3.5
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert last["planned_epochs"] == 3 and last["plan_fixed"]

    # resumed with the same budget: the plan is kept, and the run is already at its end
    again = training.train(cfg, data, synthetic_faces(5, seed=1), tmp_path / "run", resume=tmp_path / "run" / "last.pt")
    assert again.planned_epochs == again.epochs_run == 3


def test_epochs_slower_than_planned_stop_before_the_budget_is_overrun(tmp_path, monkeypatch):
    from classifier.train import train

    FakeClock(monkeypatch, [1.0, 2.0])  # the plan (3 epochs) is made on 1 s; then each takes 2 s
    cfg = TrainSettings(epochs=50, batch_size=16, device="cpu", warmup_epochs=1, time_budget_s=3.5, threads=1)
    result = train(cfg, synthetic_faces(), None, tmp_path / "run")
    assert (result.epochs_run, result.planned_epochs, result.stop_reason) == (2, 3, BUDGET)
    assert (tmp_path / "run" / "best.pt").is_file()


def test_without_a_budget_the_run_plans_train_epochs(tmp_path):
    from classifier.train import train

    result = train(TrainSettings(epochs=2, batch_size=32, device="cpu", threads=1), synthetic_faces(6), None,
                   tmp_path / "run")
    assert (result.epochs_run, result.planned_epochs, result.stop_reason) == (2, 2, "epochs")
    assert json.loads((tmp_path / "run" / "result.json").read_text())["stop_reason"] == "epochs"
