"""Cameras the dashboard runs, kept in Redis (``{prefix}:dashboard:cameras``, a HASH id -> JSON) so they survive a
restart.

The stored URL keeps its credentials (the pipeline needs them); every answer and log line shows ``redact(url)``.
What a remote user may add is checked by ``dashboard.cameras.checked_source`` before it is stored here.
"""

from __future__ import annotations

import json

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

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
        out: dict[str, StoredCamera] = {}
        for cid, text in sorted(rows.items()):
            try:
                out[str(cid)] = StoredCamera.model_validate_json(text)
            except ValueError:
                continue  # written by an incompatible version: ignored, not fatal
        return out

    async def save(self, camera: StoredCamera) -> None:
        await self.r.hset(self.key, camera.id, json.dumps(camera.model_dump(mode="json")))

    async def delete(self, camera_id: str) -> None:
        await self.r.hdel(self.key, camera_id)
