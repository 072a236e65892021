"""Cameras the dashboard runs, kept in Redis (``{prefix}:dashboard:cameras``, a HASH id -> JSON) so they survive a
restart.

The stored URL keeps its credentials (the pipeline needs them); every answer and log line shows ``redact(url)``.
``checked_source`` is what a remote user may add: network cameras checked and rebuilt (and resolved against the
network policy), video files only from ``sources.media_dirs``, webcams.
"""

from __future__ import annotations

import json
import os

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from core.settings import SourceSettings
from streamer.netpolicy import NetworkPolicy
from streamer.source_url import SourceError, parse_camera_url, source_kind

# One answer for every file outside the media folders: existing or not, readable or not, a video or not.
MEDIA_ONLY = "video files can be added only from the server's media folders (sources.media_dirs)"

CAMERA_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class CameraOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    realtime: bool = Field(
        False, description="Video files: play at their own frame rate like a live camera (else as fast as analysed)."
    )
    snapshots: bool = Field(
        False, description="Keep the latest face image of each person in memory (off: no face images are kept)."
    )


class CameraConfig(BaseModel):
    """What a user sends to add a camera."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(..., pattern=CAMERA_ID_PATTERN, description="Letters, digits, '_', '-', '.'; at most 64.")
    url: str = Field(
        ...,
        min_length=1,
        max_length=2048,
        description="Video file path, rtsp:// or rtsps:// URL, /dev/videoN or webcam index.",
    )
    options: CameraOptions = CameraOptions()


class StoredCamera(CameraConfig):
    paused: bool = False


class CameraStore:
    def __init__(self, client: aioredis.Redis, prefix: str):
        self.r = client
        self.key = f"{prefix}:dashboard:cameras"

    async def all(self) -> dict[str, StoredCamera]:
        rows = await self.r.hgetall(self.key)
        out = {}
        for cid, text in sorted(rows.items()):
            try:
                out[cid] = StoredCamera.model_validate_json(text)
            except ValueError:
                continue  # written by an incompatible version: ignored, not fatal
        return out

    async def save(self, camera: StoredCamera) -> None:
        await self.r.hset(self.key, camera.id, json.dumps(camera.model_dump(mode="json")))

    async def delete(self, camera_id: str) -> None:
        await self.r.hdel(self.key, camera_id)


def media_file(path: str, media_dirs: list) -> str:
    """The real path of ``path`` (``..`` and symlinks resolved) when it lies inside one of ``media_dirs``; else
    ``SourceError(MEDIA_ONLY)``, the same whatever is (or is not) at that path."""
    p = path[7:] if path.startswith("file://") else path  # the text as given: Path("") would be "."
    if not p or any(ord(c) < 0x20 or c == "\x7f" for c in p):
        raise SourceError(MEDIA_ONLY)
    real = os.path.realpath(p)
    for folder in media_dirs:
        root = os.path.realpath(folder)
        if real.startswith(root.rstrip(os.sep) + os.sep):
            return real
    raise SourceError(MEDIA_ONLY)


def checked_source(url: str, sources: SourceSettings, policy: NetworkPolicy | None = None) -> str:
    """The form of ``url`` the dashboard stores and opens, or ``SourceError`` with a one-line reason.

    Network cameras: rebuilt from their checked parts and, with ``policy``, their host resolved and checked now
    (the source checks again before every connect). Files: their real path inside ``sources.media_dirs``.
    """
    kind = source_kind(url)
    if kind == "rtsp":
        camera = parse_camera_url(url)
        if policy is not None:
            policy.check(camera.host, camera.effective_port)
        return camera.url
    if kind == "file":
        return media_file(url, sources.media_dirs)
    return url
