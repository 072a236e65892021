"""Cameras in one process's ``Pipeline``: the dashboard's ``LocalRunner``, and each Ray worker
(``ray_worker.CameraWorker``) on its node. Both open a camera with ``open_camera`` and start, pause and stop it with
``PipelineCameras``, so the two cannot drift apart.
"""

from __future__ import annotations

import asyncio

from deepfer_core.settings import Settings
from streamer.netpolicy import NetworkPolicy
from streamer.pipeline import Pipeline
from streamer.preview import PreviewSink
from streamer.runtime.camera_store import StoredCamera
from streamer.runtime.runner import CameraState
from streamer.sources import VideoSource, open_source


def open_camera(cam: StoredCamera, *, settings: Settings, policy: NetworkPolicy | None) -> VideoSource:
    """The source of a configured camera (``SourceError`` when it cannot be used). ``policy`` is checked before every
    connect of a network camera; failures show as one generic text (``uniform_failures``: a remote user added it)."""
    return open_source(
        cam.url,
        cam.id,
        settings.sources,
        pipeline=settings.pipeline,
        live_file=cam.options.realtime,
        policy=policy,
        uniform_failures=True,
    )


class PipelineCameras:
    """Configured cameras in ``pipeline``, their previews (and face snapshots) in ``preview``."""

    settings: Settings
    pipeline: Pipeline
    preview: PreviewSink
    policy: NetworkPolicy | None

    async def start_camera(self, cam: StoredCamera, replace: bool = False) -> None:
        """Open and start ``cam`` (``SourceError`` before anything changes); ``replace``: a camera of that id already
        in the pipeline is stopped first (else the pipeline refuses a second one)."""
        source = await asyncio.to_thread(open_camera, cam, settings=self.settings, policy=self.policy)
        self.preview.set_snapshots(cam.id, cam.options.snapshots and self.settings.dashboard.snapshots)
        if replace and cam.id in self.pipeline.camera_ids:
            await self.pipeline.remove_source(cam.id)
        self.pipeline.add_source(source)
        if cam.paused:
            self.pipeline.pause(cam.id)

    async def remove(self, camera_id: str) -> None:
        """Stop it (a camera not running is fine) and drop its preview."""
        if camera_id in self.pipeline.camera_ids:
            await self.pipeline.remove_source(camera_id)
        self.preview.forget(camera_id)

    async def set_paused(self, camera_id: str, paused: bool) -> None:
        if camera_id in self.pipeline.camera_ids:
            (self.pipeline.pause if paused else self.pipeline.resume)(camera_id)

    def faces_now(self, camera_id: str) -> int | None:
        """Faces in the camera's latest processed frame (None before its first)."""
        latest = self.preview.latest(camera_id)
        return len(latest.faces) if latest is not None else None


class LocalRunner(PipelineCameras):
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
        await self.start_camera(cam)

    def state(self, camera_id: str) -> CameraState:
        return CameraState(self.pipeline.camera_stats(camera_id), self.faces_now(camera_id))

    def workers(self) -> list[dict]:
        return []

    def jpeg(self, camera_id: str) -> bytes | None:
        return self.preview.jpeg(camera_id)

    def snapshot(self, camera_id: str, track_id: int) -> bytes | None:
        return self.preview.snapshot(camera_id, track_id)
