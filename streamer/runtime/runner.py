"""Where the dashboard's configured cameras are analysed, behind one interface the Service uses.

``streamer.runtime.local.LocalRunner``: this process's own ``Pipeline`` (the default, single-process mode).
``streamer.runtime.ray_runner.ClusterRunner`` (``cluster.address`` set): workers on a Ray cluster. WebRTC visitors
always stay on the local pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from streamer.pipeline import CameraStats
from streamer.runtime.camera_store import StoredCamera


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
