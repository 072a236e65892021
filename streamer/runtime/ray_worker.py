"""One cluster worker: a Ray actor with its own models, ``Pipeline`` (batchers), Redis writer and preview.

The dashboard's ``ClusterRunner`` (``ray_runner``) creates one per node (or per GPU) and hands it cameras. Results go
where they go in single-process mode: points and live events to Redis through the worker's own ``RedisSink`` (its
journal on the worker's node), so the dashboard reads them as before. The annotated preview of a camera is put in Redis
(``{p}:preview:{camera}``, expiring after ``cluster.preview_ttl_s``) only while the dashboard marks it watched.

This class is plain Python; ``ClusterRunner`` wraps it with ``ray.remote`` (an async actor: calls run on its loop).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING

from aggregator.keys import KeySchema
from aggregator.redis_sink import RedisSink
from deepfer_core.redact import redact
from deepfer_core.settings import Settings
from streamer.assembly import build_stored_pipeline, load_models, network_policy, preview_sink
from streamer.netpolicy import NetworkPolicy
from streamer.pipeline import Pipeline
from streamer.runtime.camera_store import StoredCamera
from streamer.runtime.local import PipelineCameras
from streamer.sources import SourceError

if TYPE_CHECKING:
    import redis.asyncio as aioredis

log = logging.getLogger(__name__)


class CameraWorker(PipelineCameras):
    """Cameras are started, paused and removed as in ``LocalRunner`` (``PipelineCameras``); the pipeline is built by
    ``build_stored_pipeline`` at ``start``."""

    pipeline: Pipeline  # set by start(), before any camera call
    sink: RedisSink  # the same

    def __init__(self, settings: Settings, redis_url: str, name: str):
        self.settings = settings
        self.redis_url = redis_url
        self.name = name
        self.preview = preview_sink(settings)
        self.keys = KeySchema(settings.redis.key_prefix)
        self._jpeg_redis: aioredis.Redis | None = None
        self._publisher: asyncio.Task | None = None
        self.policy: NetworkPolicy | None = None  # the sources' network policy, built on this node (its own DNS)
        self.started_at = time.time()

    async def start(self) -> dict:
        """Load the models and start the pipeline; the error (one line) when this node cannot run cameras."""
        import ray
        import redis.asyncio as aioredis
        import torch

        s = self.settings
        torch.set_num_threads(max(1, int(s.cluster.num_cpus)))
        self._jpeg_redis = client = aioredis.from_url(
            self.redis_url, socket_connect_timeout=s.redis.connect_timeout_s,
            socket_timeout=s.redis.connect_timeout_s + 4.0)
        try:
            await client.ping()
        except Exception as exc:
            return {"error": f"worker {self.name} cannot reach Redis at {redact(self.redis_url)} "
                             f"({exc.__class__.__name__}); give the dashboard a Redis URL every node can reach"}
        self.policy = await asyncio.to_thread(network_policy, s, redis_url_in_use=self.redis_url)
        models = await asyncio.to_thread(load_models, s)
        # its own p/workers/<name>/available (last will); the head owns p/available
        stored = build_stored_pipeline(s, models, self.redis_url, preview=self.preview, mqtt_role="worker",
                                       worker=self.name)
        assert stored.redis_sink is not None  # given a Redis URL
        self.pipeline, self.sink = stored.pipeline, stored.redis_sink
        await stored.start()
        self._publisher = asyncio.create_task(self._publish_previews(client))
        ctx = ray.get_runtime_context()
        log.info("worker %s ready on node %s (pid %d)", self.name, ctx.get_node_id(), os.getpid())
        return {"error": None, "node_id": ctx.get_node_id(), "pid": os.getpid(), "run_id": self.sink.run_id}

    async def stop(self) -> None:
        """Stop every camera and write the points still waiting (the rest stays in this node's journal)."""
        if self._publisher is not None:
            self._publisher.cancel()
        if getattr(self, "pipeline", None) is not None:
            await self.pipeline.stop()
        if self._jpeg_redis is not None:
            await self._jpeg_redis.aclose()

    # ----- cameras ---------------------------------------------------------------------------------------------

    async def add(self, camera: dict) -> str | None:
        """Start a camera (``StoredCamera`` as a dict); the reason when its source cannot be opened here."""
        cam = StoredCamera.model_validate(camera)
        try:
            await self.start_camera(cam, replace=True)
        except SourceError as exc:
            return str(exc)
        return None

    async def stats(self) -> dict:
        """Per-camera counters and the Redis writer's, polled by the dashboard every ``cluster.poll_s``."""
        cameras = {}
        for cid, st in self.pipeline.stats().items():
            cameras[cid] = {"stats": st.to_dict(), "faces_now": self.faces_now(cid)}
        return {"cameras": cameras, "redis": self.sink.stats(), "run_id": self.sink.run_id}

    async def snapshot(self, camera_id: str, track_id: int) -> bytes | None:
        return await asyncio.to_thread(self.preview.snapshot, camera_id, track_id)

    # ----- preview ---------------------------------------------------------------------------------------------

    async def _publish_previews(self, client: aioredis.Redis) -> None:
        """Put watched cameras' new annotated frames in Redis, at most ``dashboard.preview_fps`` per second."""
        period = 1.0 / self.settings.dashboard.preview_fps
        ttl_ms = int(self.settings.cluster.preview_ttl_s * 1000)
        sent: dict[str, tuple[bytes, float]] = {}  # what was put last, and when (an unchanged frame is put again
        # before its key expires, so a paused or ended camera keeps its last frame on the page)
        while True:
            await asyncio.sleep(period)
            cams = self.pipeline.camera_ids
            if not cams:
                continue
            try:
                wanted = await client.mget([self.keys.preview_wanted(c) for c in cams])
                for cid, want in zip(cams, wanted):
                    if want is None:
                        sent.pop(cid, None)
                        continue
                    data = await asyncio.to_thread(self.preview.jpeg, cid)
                    last, at = sent.get(cid, (None, 0.0))
                    if data is not None and (data is not last or time.monotonic() - at > ttl_ms / 2000):
                        await client.set(self.keys.preview(cid), data, px=ttl_ms)
                        sent[cid] = (data, time.monotonic())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: the preview pauses, the pipeline does not
                log.debug("preview publishing failed: %s", exc)
                await asyncio.sleep(1.0)
