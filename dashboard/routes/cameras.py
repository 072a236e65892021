"""Cameras: list, add, remove, pause and resume; saved in Redis and applied to the running pipeline at once."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends, HTTPException, Response
from fastapi.responses import StreamingResponse

from dashboard.deps import configured_camera, get_service, running_camera
from dashboard.schemas import Camera, Problem
from dashboard.service import CameraConflict, Service, SnapshotsOff
from streamer.runtime.camera_store import CameraConfig
from streamer.sources import SourceError

router = APIRouter(prefix="/api/cameras", tags=["cameras"])


@router.get("", summary="Every camera with its status and counters (URLs redacted)")
async def list_cameras(service: Service = Depends(get_service)) -> list[Camera]:
    return [service.camera_view(cid) for cid in service.camera_ids()]


@router.post("", status_code=201, summary="Add a camera and start analysing it now",
             responses={409: {"model": Problem, "description": "The id is in use or reserved (WebRTC visitors' "
                                                               "prefix), or dashboard.max_cameras is reached"}})
async def add_camera(config: CameraConfig, service: Service = Depends(get_service)) -> Camera:
    """Network cameras: rtsp:// or rtsps:// only, checked and rebuilt from their parts, their address checked against
    the network policy (sources.allowed_networks / denied_networks). Video files: only from sources.media_dirs."""
    try:
        cam = await service.add_camera(config)
    except CameraConflict as exc:
        raise HTTPException(409, str(exc)) from None
    except SnapshotsOff as exc:
        raise HTTPException(400, str(exc)) from None
    except SourceError as exc:
        raise HTTPException(400, f"cannot open the source: {exc}") from None
    return service.camera_view(cam.id)


@router.get("/{camera_id}", summary="One camera")
async def get_camera(camera_id: str = Depends(running_camera), service: Service = Depends(get_service)) -> Camera:
    return service.camera_view(camera_id)


@router.delete("/{camera_id}", status_code=204, summary="Stop and forget a camera (its stored history stays)")
async def remove_camera(
    camera_id: str = Depends(configured_camera), service: Service = Depends(get_service)
) -> Response:
    await service.remove_camera(camera_id)
    return Response(status_code=204)


@router.post("/{camera_id}/pause", summary="Pause analysis (live cameras stay connected)")
async def pause_camera(camera_id: str = Depends(configured_camera), service: Service = Depends(get_service)) -> Camera:
    await service.set_paused(camera_id, True)
    return service.camera_view(camera_id)


@router.post("/{camera_id}/resume", summary="Resume analysis")
async def resume_camera(camera_id: str = Depends(configured_camera), service: Service = Depends(get_service)) -> Camera:
    await service.set_paused(camera_id, False)
    return service.camera_view(camera_id)


@router.get(
    "/{camera_id}/preview.jpg",
    summary="The latest annotated frame (JPEG, memory only)",
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "no frame yet"}},
)
async def preview_jpeg(camera_id: str = Depends(running_camera), service: Service = Depends(get_service)) -> Response:
    data = await asyncio.to_thread(service.runner.jpeg, camera_id)
    if data is None:
        raise HTTPException(404, f"camera {camera_id!r} has no frame yet")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get(
    "/{camera_id}/preview.mjpg",
    summary="Live annotated preview (MJPEG, multipart/x-mixed-replace)",
    responses={200: {"content": {"multipart/x-mixed-replace": {}}}},
)
async def preview_mjpeg(
    camera_id: str = Depends(running_camera), service: Service = Depends(get_service)
) -> StreamingResponse:
    period = 1.0 / service.settings.dashboard.preview_fps

    async def frames():
        # each part ends with the next boundary, so browsers show a frame at once (a camera that ended sends no more)
        # and an unchanged frame is sent again every second (browsers show a part once the next one starts)
        last, sent = None, 0.0
        yield b"--frame\r\n"
        while camera_id in service.cameras or service.is_webrtc(camera_id):
            data = await asyncio.to_thread(service.runner.jpeg, camera_id)
            if data is not None and (data is not last or time.monotonic() - sent >= 1.0):
                last, sent = data, time.monotonic()
                yield (
                    b"Content-Type: image/jpeg\r\nContent-Length: "
                    + str(len(data)).encode()
                    + b"\r\n\r\n"
                    + data
                    + b"\r\n--frame\r\n"
                )
            await asyncio.sleep(period)

    return StreamingResponse(
        frames(), media_type="multipart/x-mixed-replace; boundary=frame", headers={"Cache-Control": "no-store"}
    )


@router.get(
    "/{camera_id}/people/{track_id}/snapshot.jpg",
    summary="A person's latest face (only with snapshots on)",
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "none kept"}},
)
async def snapshot(
    track_id: int, camera_id: str = Depends(configured_camera), service: Service = Depends(get_service)
) -> Response:
    data = await asyncio.to_thread(service.runner.snapshot, camera_id, track_id)
    if data is None:
        raise HTTPException(
            404,
            f"no snapshot of track {track_id} on camera {camera_id!r} "
            "(snapshots are kept only when the camera's option and dashboard.snapshots are on)",
        )
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
