"""Progress bars on stderr for the long commands (``deepfer run`` on files, ``evaluate``): shown when stderr is a
terminal (``--progress`` forces, ``--no-progress`` or ``--json`` hides), so pipes and logs stay clean."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from deepfer.common import console


class RateColumn(ProgressColumn):
    """Items per second (``12.3 fps``), from rich's moving estimate."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.1f} {self.unit}" if task.speed else f"- {self.unit}")


def wanted(flag: bool | None, as_json: bool = False) -> bool:
    """``--progress/--no-progress`` when given, else only on a terminal; never with ``--json``."""
    if as_json:
        return False
    return console.is_terminal if flag is None else flag


def bar(unit: str, show: bool) -> Progress:
    """A bar on stderr (``done/total``, rate, elapsed, ETA); ``show=False``: one that draws nothing."""
    out = console if console.is_terminal else Console(stderr=True, force_terminal=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(unit),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=out, disable=not show,
                    redirect_stdout=False)  # stdout keeps the results (tables, JSON); logs pass above the bar


class RunProgress:
    """A pipeline sink: one bar per file source, frames done of its frame count (live sources get none)."""

    def __init__(self, sources: Sequence[Any], show: bool):
        self.progress = bar("fps", show)
        self.tasks = {s.camera_id: self.progress.add_task(s.camera_id, total=s.frames_total)
                      for s in sources if getattr(s, "frames_total", None)}
        if self.tasks:
            self.progress.start()

    async def handle(self, result: Any) -> None:
        task = self.tasks.get(result.camera_id)
        if task is not None:
            self.progress.advance(task)

    async def close(self) -> None:
        if self.tasks:
            for task in self.tasks.values():  # a file's frame count is the container's word: never under done
                t = self.progress.tasks[task]
                self.progress.update(task, total=max(t.total or 0, t.completed))
            self.progress.stop()
