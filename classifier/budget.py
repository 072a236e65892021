"""``train.time_budget_s``: how many epochs a run plans for, so that a cut slot still ends with a finished schedule.

The plan is ``cfg.epochs`` without a budget. With one, after each epoch the epochs that still fit are counted from
that epoch's wall time (training, validation, checkpoints and logs), and the run plans for no more. The plan may
change only while warm-up runs, because the warm-up's learning rate does not depend on it; it is fixed after the last
warm-up epoch (after the first epoch when there is none), so the cosine decay is planned once and reaches its end.
The first epoch's time is then not the only one used: on a GPU it carries the warm-up of kernels and caches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

EPOCHS, BUDGET, PATIENCE = "epochs", "time_budget", "early_stop"  # why a run stopped


@dataclass
class EpochPlan:
    epochs: int  # the epochs the run plans for (the schedule's length)
    most: int  # cfg.epochs: never more
    budget_s: float  # 0: no budget
    started: float  # time.time() the budget counts from
    fixed: bool = False

    def elapsed(self) -> float:
        return time.time() - self.started

    def after_epoch(self, done: int, epoch_s: float, warmup_epochs: int) -> None:
        """Re-plan after ``done`` epochs from the last one's time, until the warm-up is over."""
        if self.budget_s <= 0 or self.fixed:
            return
        left = self.budget_s - self.elapsed()
        self.epochs = max(done, min(self.most, done + int(left // max(epoch_s, 1e-6))))
        self.fixed = done >= warmup_epochs

    def another_fits(self, epoch_s: float) -> bool:
        """Whether one more epoch of ``epoch_s`` ends inside the budget (a slower epoch than planned stops early)."""
        return self.budget_s <= 0 or self.elapsed() + epoch_s <= self.budget_s

    def state(self) -> dict[str, int | bool]:
        return {"planned_epochs": self.epochs, "plan_fixed": self.fixed}

    def restore(self, state: dict) -> None:
        """A resumed run keeps a fixed plan (its cosine is under way); an unfixed one is planned again."""
        if self.budget_s > 0 and state.get("plan_fixed"):
            self.epochs, self.fixed = min(self.most, int(state["planned_epochs"])), True
