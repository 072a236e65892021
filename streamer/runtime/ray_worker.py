"""One cluster worker: a Ray actor with its own models, ``Pipeline`` (batchers), Redis writer and preview.

The dashboard's ``ClusterRunner`` creates one per node (or per GPU) and hands it cameras. Results go where they go in
single-process mode: points and live events to Redis through the worker's own ``RedisSink`` (its journal on the
worker's node), so the dashboard reads them as before. The annotated preview of a camera is put in Redis
(``{p}:preview:{camera}``, expiring after ``cluster.preview_ttl_s``) only while the dashboard marks it watched.

This class is plain Python; ``ClusterRunner`` wraps it with ``ray.remote`` (an async actor: calls run on its loop).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from aggregator.redis_sink import RedisSink
from aggregator.timeseries import KeySchema
from core.redact import redact
from core.settings import Settings
from dashboard.cameras import StoredCamera
from dashboard.preview import PreviewSink
from streamer.pipeline import Pipeline
from streamer.sources import SourceError, open_source

log = logging.getLogger(__name__)


class CameraWorker:
    def __init__(self, settings: Settings, redis_url: str, name: str):
        self.settings = settings
        self.redis_url = redis_url
        self.name = name
        self.pipeline: Pipeline | None = None
        self.sink: RedisSink | None = None
        self.preview = PreviewSink(settings.dashboard.preview_jpeg_quality, settings.dashboard.snapshot_max_people)
        self.keys = KeySchema(settings.redis.key_prefix)
        self._jpeg_redis = None
        self._publisher: asyncio.Task | None = None
        self.policy = None  # the sources' network policy, built on this node (its own DNS) at start
        self.started_at = time.time()

    async def start(self) -> dict:
        """Load the models and start the pipeline; the error (one line) when this node cannot run cameras."""
        import ray
        import redis.asyncio as aioredis
        import torch

        from streamer.assembly import build_pipeline, load_models

        s = self.settings
        torch.set_num_threads(max(1, int(s.cluster.num_cpus)))
        self._jpeg_redis = aioredis.from_url(self.redis_url, socket_connect_timeout=s.redis.connect_timeout_s,
                                             socket_timeout=s.redis.connect_timeout_s + 4.0)
        try:
            await self._jpeg_redis.ping()
        except Exception as exc:
            return {"error": f"worker {self.name} cannot reach Redis at {redact(self.redis_url)} "
                             f"({exc.__class__.__name__}); give the dashboard a Redis URL every node can reach"}
        from streamer.netpolicy import NetworkPolicy

        self.policy = await asyncio.to_thread(NetworkPolicy.from_settings, s.sources,
                                              [self.redis_url, s.redis.url, s.redis.default_url])
        models = await asyncio.to_thread(load_models, s)
        self.sink = RedisSink(s.redis, self.redis_url, s.paths.data_dir)
        self.pipeline = build_pipeline(s, models, sinks=[self.sink, self.preview])
        await self.pipeline.start()
        self._publisher = asyncio.create_task(self._publish_previews())
        ctx = ray.get_runtime_context()
        log.info("worker %s ready on node %s (pid %d)", self.name, ctx.get_node_id(), os.getpid())
        return {"error": None, "node_id": ctx.get_node_id(), "pid": os.getpid(), "run_id": self.sink.run_id}

    async def stop(self) -> None:
        """Stop every camera and write the points still waiting (the rest stays in this node's journal)."""
        if self._publisher is not None:
            self._publisher.cancel()
        if self.pipeline is not None:
            await self.pipeline.stop()
        if self._jpeg_redis is not None:
            await self._jpeg_redis.aclose()

    # ----- cameras ---------------------------------------------------------------------------------------------

    async def add(self, camera: dict) -> str | None:
        """Start a camera (``StoredCamera`` as a dict); the reason when its source cannot be opened here."""
        cam = StoredCamera.model_validate(camera)
        s = self.settings
        try:
            source = await asyncio.to_thread(open_source, cam.url, cam.id, s.sources, s.pipeline, cam.options.realtime,
                                             self.policy, True)
        except SourceError as exc:
            return str(exc)
        self.preview.set_snapshots(cam.id, cam.options.snapshots and s.dashboard.snapshots)
        if cam.id in self.pipeline.camera_ids:
            await self.pipeline.remove_source(cam.id)
        self.pipeline.add_source(source)
        if cam.paused:
            self.pipeline.pause(cam.id)
        return None

    async def remove(self, camera_id: str) -> None:
        if camera_id in self.pipeline.camera_ids:
            await self.pipeline.remove_source(camera_id)
        self.preview.forget(camera_id)

    async def set_paused(self, camera_id: str, paused: bool) -> None:
        if camera_id in self.pipeline.camera_ids:
            (self.pipeline.pause if paused else self.pipeline.resume)(camera_id)

    async def stats(self) -> dict:
        """Per-camera counters and the Redis writer's, polled by the dashboard every ``cluster.poll_s``."""
        cameras = {}
        for cid, st in self.pipeline.stats().items():
            latest = self.preview.latest(cid)
            cameras[cid] = {"stats": st.to_dict(), "faces_now": len(latest.faces) if latest is not None else None}
        return {"cameras": cameras, "redis": self.sink.stats(), "run_id": self.sink.run_id}

    async def snapshot(self, camera_id: str, track_id: int) -> bytes | None:
        return await asyncio.to_thread(self.preview.snapshot, camera_id, track_id)

    # ----- preview ---------------------------------------------------------------------------------------------

    async def _publish_previews(self) -> None:
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
                wanted = await self._jpeg_redis.mget([self.keys.preview_wanted(c) for c in cams])
                for cid, want in zip(cams, wanted):
                    if want is None:
                        sent.pop(cid, None)
                        continue
                    data = await asyncio.to_thread(self.preview.jpeg, cid)
                    last, at = sent.get(cid, (None, 0.0))
                    if data is not None and (data is not last or time.monotonic() - at > ttl_ms / 2000):
                        await self._jpeg_redis.set(self.keys.preview(cid), data, px=ttl_ms)
                        sent[cid] = (data, time.monotonic())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: the preview pauses, the pipeline does not
                log.debug("preview publishing failed: %s", exc)
                await asyncio.sleep(1.0)
