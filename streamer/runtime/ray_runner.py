"""Cameras on a Ray cluster (``cluster.address``): the dashboard's side, a ``CameraRunner`` like ``LocalRunner``.

Ray does the distributed part: it starts each worker (``dashboard.cluster_worker.CameraWorker``, an actor holding
``cluster.num_cpus``/``num_gpus``) on the node chosen for it, reports nodes joining and leaving (``ray.nodes()``) and
tells when an actor died (``RayActorError``). This module only decides which worker runs which camera:

- one worker per node, or per GPU (``max_workers_per_node``, and what the node's CPUs/GPUs allow); a node that joins
  gets its workers at the next check (every ``cluster.poll_s``), and with the most room they take the next cameras;
- a camera goes to the ready worker with the most room (``cameras_per_worker``); when none has room it waits;
- a worker Ray reports dead, or on a node that left, or silent for ``cluster.replace_after_s``, is given up and its
  cameras are placed on the others at once (their points go on to the same Redis keys; a person in view gets a new
  person id, as after a restart).

Stats shown by the API are those of the last check. Previews come through Redis (see ``cluster_worker``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import redis

from aggregator.timeseries import KeySchema
from core.redact import redact
from core.settings import Settings
from dashboard.cameras import StoredCamera
from dashboard.preview import PreviewSink
from dashboard.runner import CameraState
from streamer.pipeline import CameraStats
from streamer.sources import SourceError

log = logging.getLogger(__name__)


class ClusterError(RuntimeError):
    """The cluster cannot be used (Ray missing, address unreachable); the message says what to do."""


def connect(settings: Settings) -> None:
    """Join the Ray cluster at ``cluster.address`` as a driver (once per process); ``ClusterError`` in one line."""
    address = settings.cluster.address
    _probe(address)
    _token_mode()
    try:
        import ray
    except ImportError:
        raise ClusterError("cluster mode needs Ray: pip install 'deepfer[cluster]'") from None
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, namespace=f"deepfer-{settings.redis.key_prefix}", logging_level=logging.WARNING,
                 configure_logging=False)
    except Exception as exc:  # ConnectionError, or ValueError for a bad address
        raise ClusterError(
            f"cannot join the Ray cluster at {address!r}: {exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''} (start one with `ray start --head`)"
        ) from None


def _token_mode() -> None:
    """Ray (2.5x+) heads require a token by default, but a driver joining one sends it only in token mode: turn that
    on when a token is at hand (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``)."""
    import os
    import sys
    from pathlib import Path

    if "RAY_AUTH_MODE" in os.environ or "ray" in sys.modules:  # Ray reads it once, at import (re-reading its
        return  # config later breaks a running driver); a process that already runs a cluster has its mode
    if (
        os.environ.get("RAY_AUTH_TOKEN")
        or os.environ.get("RAY_AUTH_TOKEN_PATH")
        or (Path.home() / ".ray" / "auth_token").is_file()
    ):
        os.environ["RAY_AUTH_MODE"] = "token"


def _probe(address: str) -> None:
    """A HOST:PORT nobody listens on fails here in seconds (``ray.init`` would retry for minutes)."""
    import socket

    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ClusterError(
            f"cluster address {address!r} is not 'auto' or HOST:PORT (the head's GCS port, 6379 by default)"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=3.0):
            pass
    except OSError as exc:
        raise ClusterError(
            f"no Ray head answers at {address} ({exc.__class__.__name__}); start one with "
            f"`ray start --head` there, or check the address"
        ) from None


@dataclass
class _Worker:
    name: str
    handle: object  # ray.actor.ActorHandle
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


class ClusterRunner:
    mode = "cluster"

    def __init__(self, settings: Settings, redis_url: str, local_preview: PreviewSink):
        self.settings = settings
        self.redis_url = redis_url
        self.local = local_preview  # WebRTC visitors stay on the dashboard's own pipeline
        self.keys = KeySchema(settings.redis.key_prefix)
        self.workers_by_name: dict[str, _Worker] = {}
        self.moves: list[Move] = []
        self._cams: dict[str, StoredCamera] = {}
        self._where: dict[str, str] = {}  # camera -> worker name
        self._waiting: dict[str, tuple[float, str | None]] = {}  # camera -> (since, worker it was lost from)
        self._errors: dict[str, str] = {}
        self._retry_node_at: dict[str, float] = {}
        self._counter = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._monitor: asyncio.Task | None = None
        self._redis: redis.Redis | None = None
        self._remote_cls = None

    # ----- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        import ray

        from dashboard.cluster_worker import CameraWorker

        connect(self.settings)
        self._remote_cls = ray.remote(CameraWorker)
        self._redis = redis.Redis.from_url(
            self.redis_url,
            socket_connect_timeout=self.settings.redis.connect_timeout_s,
            socket_timeout=self.settings.redis.connect_timeout_s + 4.0,
        )
        await self._ensure_workers(await asyncio.to_thread(self._alive_nodes))
        self._monitor = asyncio.create_task(self._watch(), name="cluster-monitor")
        log.info(
            "cluster mode: Ray at %s, %d node(s), %d worker(s) starting",
            self.settings.cluster.address,
            len(await asyncio.to_thread(self._alive_nodes)),
            len(self.workers_by_name),
        )

    async def stop(self) -> None:
        import ray

        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
        workers = list(self.workers_by_name.values())
        for w in workers:
            if w.task is not None:
                w.task.cancel()
        # each worker writes its waiting points before it goes
        await asyncio.gather(
            *(
                self._call(w.handle.stop.remote(), self.settings.pipeline.stop_timeout_s)
                for w in workers
                if w.state == "ready"
            ),
            return_exceptions=True,
        )
        for w in workers:
            self._kill(w)
        self.workers_by_name.clear()
        if self._redis is not None:
            self._redis.close()
        ray.shutdown()

    # ----- cameras (CameraRunner) --------------------------------------------------------------------------------

    async def add(self, cam: StoredCamera) -> None:
        async with self._lock:
            self._cams[cam.id] = cam
            worker = self._pick()
            if worker is None:  # no worker ready or with room: it starts when one is
                self._waiting[cam.id] = (time.monotonic(), None)
                return
            outcome, reason = await self._place(cam, worker)
            if outcome == "source":
                del self._cams[cam.id]
                raise SourceError(reason)
            if outcome != "ok":
                self._waiting[cam.id] = (time.monotonic(), None)
        self._wake.set()

    async def remove(self, camera_id: str) -> None:
        async with self._lock:
            self._cams.pop(camera_id, None)
            self._waiting.pop(camera_id, None)
            self._errors.pop(camera_id, None)
            worker = self.workers_by_name.get(self._where.pop(camera_id, ""))
            if worker is not None and worker.state == "ready":
                try:
                    await self._call(worker.handle.remove.remote(camera_id), self.settings.cluster.call_timeout_s)
                except Exception as exc:  # a lost worker stops its cameras by dying
                    log.warning("worker %s did not confirm removing camera %s: %s", worker.name, camera_id, exc)
                worker.stats.get("cameras", {}).pop(camera_id, None)
        await asyncio.to_thread(self._forget_preview, camera_id)

    async def set_paused(self, camera_id: str, paused: bool) -> None:
        async with self._lock:
            cam = self._cams.get(camera_id)
            if cam is None:
                return
            self._cams[camera_id] = cam.model_copy(update={"paused": paused})  # a camera placed again keeps it
            worker = self.workers_by_name.get(self._where.get(camera_id, ""))
            if worker is not None and worker.state == "ready":
                await self._call(
                    worker.handle.set_paused.remote(camera_id, paused), self.settings.cluster.call_timeout_s
                )
        self._wake.set()  # fresh stats soon

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

    def jpeg(self, camera_id: str) -> bytes | None:
        """Marks the camera watched (its worker then puts frames in Redis) and reads the newest; waits up to 1 s."""
        if camera_id not in self._cams:
            return self.local.jpeg(camera_id)
        ttl_ms = int(self.settings.cluster.preview_ttl_s * 1000)
        deadline = time.monotonic() + 1.0
        try:
            self._redis.set(self.keys.preview_wanted(camera_id), b"1", px=ttl_ms)
            while (data := self._redis.get(self.keys.preview(camera_id))) is None and time.monotonic() < deadline:
                time.sleep(0.1)
        except redis.RedisError:
            return None
        return data

    def snapshot(self, camera_id: str, track_id: int) -> bytes | None:
        import ray

        if camera_id not in self._cams:
            return self.local.snapshot(camera_id, track_id)
        worker = self.workers_by_name.get(self._where.get(camera_id, ""))
        if worker is None or worker.state != "ready":
            return None
        try:
            return ray.get(
                worker.handle.snapshot.remote(camera_id, track_id), timeout=self.settings.cluster.call_timeout_s
            )
        except Exception:
            return None

    # ----- placement ---------------------------------------------------------------------------------------------

    def _load(self, worker: _Worker) -> int:
        return sum(1 for name in self._where.values() if name == worker.name)

    def _pick(self) -> _Worker | None:
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

    async def _place(self, cam: StoredCamera, worker: _Worker) -> tuple[str, str | None]:
        """Start ``cam`` on ``worker``: ("ok", None), ("source", why) or ("worker", why). Holds the lock."""
        from ray.exceptions import RayActorError

        try:
            reason = await self._call(
                worker.handle.add.remote(cam.model_dump(mode="json")), self.settings.cluster.call_timeout_s
            )
        except RayActorError as exc:
            self._lost(worker, f"died ({exc.__class__.__name__})")
            return "worker", str(exc)
        except (TimeoutError, Exception) as exc:
            log.warning("worker %s did not add camera %s: %s", worker.name, cam.id, exc.__class__.__name__)
            worker.handle.remove.remote(cam.id)  # in case it did, late
            return "worker", exc.__class__.__name__
        if reason is not None:
            return "source", reason
        if self.workers_by_name.get(worker.name) is not worker:  # given up meanwhile: place it again
            return "worker", "lost meanwhile"
        self._where[cam.id] = worker.name
        self._errors.pop(cam.id, None)
        worker.stats.setdefault("cameras", {}).pop(cam.id, None)
        log.info("camera %s (%s) runs on worker %s, node %s", cam.id, redact(cam.url), worker.name, worker.node_ip)
        return "ok", None

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

    def _lost(self, worker: _Worker, why: str) -> None:
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

    # ----- workers -----------------------------------------------------------------------------------------------

    @staticmethod
    def _alive_nodes() -> dict[str, dict]:
        import ray

        return {n["NodeID"]: n for n in ray.nodes() if n.get("Alive")}

    def _slots(self, resources: dict) -> int:
        c = self.settings.cluster
        fits = []
        if c.num_cpus > 0:
            fits.append(int(resources.get("CPU", 0) / c.num_cpus + 1e-9))
        if c.num_gpus > 0:
            fits.append(int(resources.get("GPU", 0) / c.num_gpus + 1e-9))
        n = min(fits) if fits else 1
        return min(n, c.max_workers_per_node) if c.max_workers_per_node else n

    async def _ensure_workers(self, nodes: dict[str, dict]) -> None:
        """Start the workers each live node lacks (a node whose worker failed is retried after replace_after_s)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        c = self.settings.cluster
        now = time.monotonic()
        for node_id, node in nodes.items():
            have = sum(1 for w in self.workers_by_name.values() if w.node_id == node_id)
            want = self._slots(node.get("Resources", {}))
            if have >= want or now < self._retry_node_at.get(node_id, 0.0):
                continue
            for _ in range(want - have):
                self._counter += 1
                name = f"w{self._counter}-{node_id[:6]}"
                handle = self._remote_cls.options(
                    name=f"{self.settings.redis.key_prefix}:{name}",
                    num_cpus=c.num_cpus,
                    num_gpus=c.num_gpus,
                    max_restarts=0,
                    max_concurrency=64,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                ).remote(self.settings, self.redis_url, name)
                worker = _Worker(name, handle, node_id, node.get("NodeManagerAddress", ""))
                worker.task = asyncio.create_task(self._started(worker), name=f"start-{name}")
                self.workers_by_name[name] = worker
                log.info("starting worker %s on node %s (%s)", name, worker.node_ip, node_id)

    async def _started(self, worker: _Worker) -> None:
        c = self.settings.cluster
        try:
            info = await self._call(worker.handle.start.remote(), c.worker_start_timeout_s)
            error = info.get("error")
        except TimeoutError:
            error = (
                f"did not start within {c.worker_start_timeout_s:g} s (cluster.worker_start_timeout_s): "
                f"the node may lack num_cpus={c.num_cpus:g} / num_gpus={c.num_gpus:g} free"
            )
        except Exception as exc:
            log.debug("worker %s start failed", worker.name, exc_info=True)
            error = f"failed to start: {exc.__class__.__name__}: {' '.join(str(exc).split())[:500]}"
        if self.workers_by_name.get(worker.name) is not worker:
            return
        if error:
            worker.state, worker.error = "failed", error
            log.error("worker %s on node %s %s", worker.name, worker.node_ip, error)
            self._retry_node_at[worker.node_id] = time.monotonic() + c.replace_after_s
            self.workers_by_name.pop(worker.name, None)
            self._kill(worker)
            return
        worker.state, worker.pid, worker.run_id = "ready", info.get("pid"), info.get("run_id")
        worker.last_ok = time.monotonic()
        log.info("worker %s ready on node %s (pid %s)", worker.name, worker.node_ip, worker.pid)
        self._wake.set()

    async def _poll(self, worker: _Worker, nodes: dict[str, dict]) -> None:
        from ray.exceptions import ActorDiedError, RayActorError

        if worker.node_id not in nodes:
            self._lost(worker, "is gone with its node")
            return
        try:
            worker.stats = await self._call(worker.handle.stats.remote(), max(self.settings.cluster.poll_s, 1.0))
            worker.last_ok = time.monotonic()
        except ActorDiedError as exc:
            self._lost(worker, f"died ({str(exc).splitlines()[0][:200]})")
        except (TimeoutError, RayActorError):  # unreachable for now: given up after replace_after_s
            silent = time.monotonic() - worker.last_ok
            if silent > self.settings.cluster.replace_after_s:
                self._lost(worker, f"has not answered for {silent:.0f} s (cluster.replace_after_s)")

    async def _tick(self) -> None:
        nodes = await asyncio.to_thread(self._alive_nodes)
        ready = [w for w in self.workers_by_name.values() if w.state == "ready"]
        await asyncio.gather(*(self._poll(w, nodes) for w in ready))
        for w in [w for w in self.workers_by_name.values() if w.state == "starting" and w.node_id not in nodes]:
            self._lost(w, "is gone with its node while starting")
        await self._ensure_workers(nodes)
        if self._waiting:
            await self._place_waiting()

    async def _watch(self) -> None:
        while True:
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster check failed; trying again")
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.cluster.poll_s)
            except TimeoutError:
                pass
            self._wake.clear()

    # ----- helpers -----------------------------------------------------------------------------------------------

    @staticmethod
    async def _call(ref, timeout: float):
        return await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout)

    @staticmethod
    def _kill(worker: _Worker) -> None:
        import ray

        try:
            ray.kill(worker.handle, no_restart=True)
        except Exception:
            pass

    def _forget_preview(self, camera_id: str) -> None:
        try:
            self._redis.delete(self.keys.preview(camera_id), self.keys.preview_wanted(camera_id))
        except (redis.RedisError, AttributeError):
            pass
