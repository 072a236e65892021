"""The outage journal of the Redis writer: points Redis could not take yet, in numbered segment files on disk.

Each run writes into a folder of its own (``{data_dir}/journal/{run}/``) that it holds locked while it runs; a new
run adopts the segments of earlier runs whose lock is free (a crash, or an exit before Redis came back), so they are
written on the next start.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections import deque
from pathlib import Path

from aggregator.timeseries import EmotionPoint

log = logging.getLogger(__name__)


class Journal:
    """Numbered segment files of points, oldest first, in a run's own locked folder."""

    def __init__(self, root: Path, run_id: str):
        self.dir = root / run_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.dir / "lock", "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._next = 0
        self.segments: deque[tuple[Path, int]] = deque()  # (file, points)
        self._adopt(root)

    def _adopt(self, root: Path) -> None:
        """Take over the segments of earlier runs that ended with points unwritten (their lock is free)."""
        for other in sorted(p for p in root.iterdir() if p.is_dir() and p != self.dir):
            files = sorted(other.glob("*.jsonl"))
            if not files:
                if time.time() - other.stat().st_mtime > 60:
                    self._remove_if_unlocked(other)
                continue
            with open(other / "lock", "a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a running DeepFER owns it
                for f in files:
                    n = self._count(f)
                    self.segments.append((self._claim(f), n))
                (other / "lock").unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    other.rmdir()
        if self.segments:
            log.info("replaying %d journaled points of earlier runs", sum(n for _, n in self.segments))

    def _remove_if_unlocked(self, other: Path) -> None:
        with contextlib.suppress(OSError), open(other / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            (other / "lock").unlink(missing_ok=True)
            other.rmdir()

    @staticmethod
    def _count(path: Path) -> int:
        with path.open("rb") as f:
            return sum(1 for _ in f)

    def _claim(self, path: Path) -> Path:
        target = self.dir / f"{self._next:08d}.jsonl"
        self._next += 1
        path.rename(target)
        return target

    @property
    def points(self) -> int:
        return sum(n for _, n in self.segments)

    def spill(self, points: list[EmotionPoint]) -> Path:
        path = self.dir / f"{self._next:08d}.jsonl"
        self._next += 1
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as f:
            f.write("".join(p.to_json() + "\n" for p in points))
            f.flush()
            os.fsync(f.fileno())
        tmp.rename(path)
        self._sync_dir()
        self.segments.append((path, len(points)))
        return path

    def _sync_dir(self) -> None:
        """Make the rename itself durable (a power cut, not only a killed process, keeps the segment)."""
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def read(path: Path) -> list[EmotionPoint]:
        with path.open() as f:
            return [EmotionPoint.from_json(line) for line in f if line.strip()]

    def close(self) -> None:
        """Release the folder; remove it when nothing is left in it."""
        leftover = any(self.dir.glob("*.jsonl"))
        if not leftover:
            (self.dir / "lock").unlink(missing_ok=True)
        self._lock.close()
        if not leftover:
            with contextlib.suppress(OSError):
                self.dir.rmdir()
