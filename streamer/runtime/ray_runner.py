"""Cameras on a Ray cluster (``cluster.address``): the dashboard's side, a ``CameraRunner`` like ``LocalRunner``.

Ray does the distributed part: it starts each worker (``streamer.runtime.ray_worker.CameraWorker``, an actor holding
``cluster.num_cpus``/``num_gpus``) on the node chosen for it, reports nodes joining and leaving (``ray.nodes()``) and
tells when an actor died (``RayActorError``). Which worker runs which camera is decided by ``placement.Placement``:

- a node that joins gets its workers at the next check (every ``cluster.poll_s``), and with the most room they take
  the next cameras;
- a worker Ray reports dead, or on a node that left, or silent for ``cluster.replace_after_s``, is given up and its
  cameras are placed on the others at once (their points go on to the same Redis keys; a person in view gets a new
  person id, as after a restart).

Stats shown by the API are those of the last check. Previews come through Redis (see ``ray_worker``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

import redis

from aggregator.keys import KeySchema
from deepfer_core.redact import redact
from deepfer_core.settings import Settings
from streamer.preview import PreviewSink
from streamer.runtime.camera_store import StoredCamera
from streamer.runtime.placement import Placement, Worker
from streamer.runtime.ray_connect import connect
from streamer.sources import SourceError

log = logging.getLogger(__name__)


class ClusterRunner(Placement):
    mode = "cluster"

    def __init__(self, settings: Settings, redis_url: str, local_preview: PreviewSink):
        super().__init__(settings)
        self.redis_url = redis_url
        self.local = local_preview  # WebRTC visitors stay on the dashboard's own pipeline
        self.keys = KeySchema(settings.redis.key_prefix)
        self._retry_node_at: dict[str, float] = {}
        self._counter = 0
        self._monitor: asyncio.Task | None = None
        self._redis: redis.Redis | None = None
        self._remote_cls: Any = None  # ray.actor.ActorClass of CameraWorker

    # ----- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        import ray

        from streamer.runtime.ray_worker import CameraWorker

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

    def jpeg(self, camera_id: str) -> bytes | None:
        """Marks the camera watched (its worker then puts frames in Redis) and reads the newest; waits up to 1 s."""
        if camera_id not in self._cams:
            return self.local.jpeg(camera_id)
        ttl_ms = int(self.settings.cluster.preview_ttl_s * 1000)
        deadline = time.monotonic() + 1.0
        client = self._redis
        if client is None:  # not started
            return None
        try:
            client.set(self.keys.preview_wanted(camera_id), b"1", px=ttl_ms)
            while (data := client.get(self.keys.preview(camera_id))) is None and time.monotonic() < deadline:
                time.sleep(0.1)
        except redis.RedisError:
            return None
        return cast(bytes | None, data)  # a client without decode_responses: bytes

    def snapshot(self, camera_id: str, track_id: int) -> bytes | None:
        import ray

        if camera_id not in self._cams:
            return self.local.snapshot(camera_id, track_id)
        worker = self.workers_by_name.get(self._where.get(camera_id, ""))
        if worker is None or worker.state != "ready":
            return None
        try:
            return cast(bytes | None, ray.get(
                worker.handle.snapshot.remote(camera_id, track_id), timeout=self.settings.cluster.call_timeout_s
            ))
        except Exception:
            return None

    async def _place(self, cam: StoredCamera, worker: Worker) -> tuple[str, str | None]:
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

    # ----- workers -----------------------------------------------------------------------------------------------

    @staticmethod
    def _alive_nodes() -> dict[str, dict]:
        import ray

        return {n["NodeID"]: n for n in ray.nodes() if n.get("Alive")}

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
                worker = Worker(name, handle, node_id, node.get("NodeManagerAddress", ""))
                worker.task = asyncio.create_task(self._started(worker), name=f"start-{name}")
                self.workers_by_name[name] = worker
                log.info("starting worker %s on node %s (%s)", name, worker.node_ip, node_id)

    async def _started(self, worker: Worker) -> None:
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

    async def _poll(self, worker: Worker, nodes: dict[str, dict]) -> None:
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
    def _kill(worker: Worker) -> None:
        import ray

        try:
            ray.kill(worker.handle, no_restart=True)
        except Exception:
            pass

    def _forget_preview(self, camera_id: str) -> None:
        if self._redis is None:  # not started
            return
        try:
            self._redis.delete(self.keys.preview(camera_id), self.keys.preview_wanted(camera_id))
        except redis.RedisError:
            pass
