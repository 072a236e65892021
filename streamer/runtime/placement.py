"""Which worker of the cluster runs which camera: the state ``ClusterRunner`` keeps and the decisions it makes on it.

- one worker per node, or per GPU (``max_workers_per_node``, and what the node's CPUs/GPUs allow);
- a camera goes to the ready worker with the most room (``cameras_per_worker``); when none has room it waits;
- a worker given up (dead, gone with its node, silent) has its cameras placed on the others at once, each move kept
  in ``moves``.

Nothing here calls Ray: ``ClusterRunner`` (``ray_runner``) supplies ``_place`` and ``_kill``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from deepfer_core.settings import Settings
from streamer.pipeline import CameraStats
from streamer.runtime.camera_store import StoredCamera
from streamer.runtime.runner import CameraState

log = logging.getLogger(__name__)


@dataclass
class Worker:
    name: str
    handle: Any  # ray.actor.ActorHandle of a CameraWorker
    node_id: str
    node_ip: str
    state: str = "starting"  # starting, ready, failed
    created: float = field(default_factory=time.monotonic)
    last_ok: float = field(default_factory=time.monotonic)
    error: str | None = None
    pid: int | None = None
    run_id: str | None = None
    stats: dict = field(default_factory=dict)
    task: asyncio.Task | None = None


@dataclass(frozen=True)
class Move:
    """A camera placed again after its worker was lost: from where, to where, and how long it had no worker."""

    camera_id: str
    from_worker: str
    to_worker: str
    seconds: float
    at: float  # unix time


class Placement:
    """Cameras, workers and where each camera runs; ``state``/``workers`` are the ``CameraRunner`` views of them."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.workers_by_name: dict[str, Worker] = {}
        self.moves: list[Move] = []
        self._cams: dict[str, StoredCamera] = {}
        self._where: dict[str, str] = {}  # camera -> worker name
        self._waiting: dict[str, tuple[float, str | None]] = {}  # camera -> (since, worker it was lost from)
        self._errors: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    async def _place(self, cam: StoredCamera, worker: Worker) -> tuple[str, str | None]:
        raise NotImplementedError

    @staticmethod
    def _kill(worker: Worker) -> None:
        raise NotImplementedError

    def state(self, camera_id: str) -> CameraState:
        worker = self.workers_by_name.get(self._where.get(camera_id, ""))
        if worker is None:
            if camera_id in self._waiting:
                reason = self._errors.get(camera_id) or self._no_room_reason()
                return CameraState(None, status="failed" if camera_id in self._errors else "waiting", error=reason)
            return CameraState(None)
        entry = worker.stats.get("cameras", {}).get(camera_id)
        stats = CameraStats(**entry["stats"]) if entry else None
        return CameraState(
            stats,
            entry["faces_now"] if entry else None,
            worker.name,
            worker.node_id,
            worker.node_ip,
            status=None if entry else "starting",
        )

    def workers(self) -> list[dict]:
        now = time.monotonic()
        out = []
        for w in self.workers_by_name.values():
            cams = sorted(c for c, name in self._where.items() if name == w.name)
            out.append(
                {
                    "name": w.name,
                    "node": w.node_id,
                    "node_ip": w.node_ip,
                    "state": w.state,
                    "pid": w.pid,
                    "cameras": cams,
                    "room": max(0, self.settings.cluster.cameras_per_worker - len(cams)),
                    "last_answer_s": round(now - w.last_ok, 1),
                    "error": w.error,
                    "redis": w.stats.get("redis"),
                }
            )
        return out

    def _load(self, worker: Worker) -> int:
        return sum(1 for name in self._where.values() if name == worker.name)

    def _pick(self) -> Worker | None:
        """The ready worker with the most room (ties: the oldest), or None."""
        per = self.settings.cluster.cameras_per_worker
        ready = [(per - self._load(w), -w.created, w) for w in self.workers_by_name.values() if w.state == "ready"]
        ready = [r for r in ready if r[0] > 0]
        return max(ready, key=lambda r: r[:2])[2] if ready else None

    def _no_room_reason(self) -> str:
        ready = [w for w in self.workers_by_name.values() if w.state == "ready"]
        if not ready:
            starting = sum(w.state == "starting" for w in self.workers_by_name.values())
            return f"waiting for a worker ({starting} starting)" if starting else "no worker on the cluster"
        return (
            f"waiting for room: {len(ready)} worker(s) x cluster.cameras_per_worker "
            f"{self.settings.cluster.cameras_per_worker} are all taken"
        )

    async def _place_waiting(self) -> None:
        async with self._lock:
            for cid, (since, lost_from) in sorted(self._waiting.items(), key=lambda kv: kv[1][0]):
                cam = self._cams.get(cid)
                if cam is None:
                    self._waiting.pop(cid, None)
                    continue
                worker = self._pick()
                if worker is None:
                    return
                outcome, reason = await self._place(cam, worker)
                if outcome == "source":
                    reason = reason or ""  # always given with "source"
                    if self._errors.get(cid) != reason:
                        log.warning("camera %s cannot start on worker %s: %s", cid, worker.name, reason)
                    self._errors[cid] = reason
                    continue
                if outcome == "ok":
                    del self._waiting[cid]
                    if lost_from is not None:
                        move = Move(cid, lost_from, worker.name, round(time.monotonic() - since, 2), time.time())
                        self.moves.append(move)
                        log.warning(
                            "camera %s moved from lost worker %s to %s (node %s) after %.1f s",
                            cid,
                            lost_from,
                            worker.name,
                            worker.node_ip,
                            move.seconds,
                        )

    def _lost(self, worker: Worker, why: str) -> None:
        """Give a worker up: its cameras wait for another one (placed within the same check)."""
        if self.workers_by_name.pop(worker.name, None) is None:
            return
        now = time.monotonic()
        cams = [c for c, name in self._where.items() if name == worker.name]
        for c in cams:
            del self._where[c]
            self._waiting[c] = (now, worker.name)
        log.warning(
            "worker %s on node %s %s; its %d camera(s) go to other workers", worker.name, worker.node_ip, why, len(cams)
        )
        self._kill(worker)
        self._wake.set()

    def _slots(self, resources: dict) -> int:
        c = self.settings.cluster
        fits = []
        if c.num_cpus > 0:
            fits.append(int(resources.get("CPU", 0) / c.num_cpus + 1e-9))
        if c.num_gpus > 0:
            fits.append(int(resources.get("GPU", 0) / c.num_gpus + 1e-9))
        n = min(fits) if fits else 1
        return min(n, c.max_workers_per_node) if c.max_workers_per_node else n
