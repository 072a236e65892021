"""Where the dashboard's configured cameras are analysed, behind one interface the Service uses.

``LocalRunner``: this process's own ``Pipeline`` (the default, single-process mode). ``dashboard.cluster.ClusterRunner``
(``cluster.address`` set): workers on a Ray cluster. WebRTC visitors always stay on the local pipeline.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from core.settings import Settings
from dashboard.cameras import StoredCamera
from dashboard.preview import PreviewSink
from streamer.netpolicy import NetworkPolicy
from streamer.pipeline import CameraStats, Pipeline
from streamer.sources import open_source


@dataclass(frozen=True)
class CameraState:
    """A camera as its runner sees it now. ``status``/``error`` override the pipeline's (e.g. no worker has room)."""

    stats: CameraStats | None
    faces_now: int | None = None  # faces in the latest processed frame
    worker: str | None = None
    node: str | None = None  # Ray node id
    node_ip: str | None = None
    status: str | None = None
    error: str | None = None


class CameraRunner(Protocol):
    """Runs configured cameras; ``add`` raises ``SourceError`` for a source that cannot be used."""

    mode: str  # "local" or "cluster"

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def add(self, cam: StoredCamera) -> None: ...

    async def remove(self, camera_id: str) -> None:
        """Stop it (a camera not running is fine)."""

    async def set_paused(self, camera_id: str, paused: bool) -> None: ...

    def state(self, camera_id: str) -> CameraState: ...

    def workers(self) -> list[dict]:
        """The workers for ``/health`` and ``/metrics`` (empty in local mode)."""

    def jpeg(self, camera_id: str) -> bytes | None:
        """Latest annotated preview of any camera, WebRTC visitors included (blocking: run it in a thread)."""

    def snapshot(self, camera_id: str, track_id: int) -> bytes | None:
        """A person's latest face crop, when snapshots are on (blocking: run it in a thread)."""


class LocalRunner:
    """Every camera in this process's pipeline, as before the cluster existed."""

    mode = "local"

    def __init__(
        self, settings: Settings, pipeline: Pipeline, preview: PreviewSink, policy: NetworkPolicy | None = None
    ):
        self.settings = settings
        self.pipeline = pipeline
        self.preview = preview
        self.policy = policy  # checked before every connect of a network camera

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass  # the pipeline is the Service's; it stops it

    async def add(self, cam: StoredCamera) -> None:
        s = self.settings
        source = await asyncio.to_thread(
            open_source, cam.url, cam.id, s.sources, s.pipeline, cam.options.realtime, self.policy, True
        )
        self.preview.set_snapshots(cam.id, cam.options.snapshots and s.dashboard.snapshots)
        self.pipeline.add_source(source)
        if cam.paused:
            self.pipeline.pause(cam.id)

    async def remove(self, camera_id: str) -> None:
        if camera_id in self.pipeline.camera_ids:
            await self.pipeline.remove_source(camera_id)
        self.preview.forget(camera_id)

    async def set_paused(self, camera_id: str, paused: bool) -> None:
        if camera_id in self.pipeline.camera_ids:
            (self.pipeline.pause if paused else self.pipeline.resume)(camera_id)

    def state(self, camera_id: str) -> CameraState:
        latest = self.preview.latest(camera_id)
        return CameraState(self.pipeline.camera_stats(camera_id), len(latest.faces) if latest is not None else None)

    def workers(self) -> list[dict]:
        return []

    def jpeg(self, camera_id: str) -> bytes | None:
        return self.preview.jpeg(camera_id)

    def snapshot(self, camera_id: str, track_id: int) -> bytes | None:
        return self.preview.snapshot(camera_id, track_id)
