"""Shared route dependencies: the running service, and a camera id that must exist."""

from __future__ import annotations

from fastapi import HTTPException, Path, Request

from dashboard.service import Service
from streamer.runtime.camera_store import CAMERA_ID_PATTERN


def get_service(request: Request) -> Service:
    return request.app.state.service


async def known_camera(request: Request, camera_id: str = Path(..., pattern=CAMERA_ID_PATTERN)) -> str:
    """A camera that is configured or has data in Redis; else 404 naming it."""
    service: Service = request.app.state.service
    if not await service.known_camera(camera_id):
        raise HTTPException(404, f"unknown camera {camera_id!r}")
    return camera_id


def configured_camera(request: Request, camera_id: str = Path(..., pattern=CAMERA_ID_PATTERN)) -> str:
    """A camera configured on the dashboard (not a WebRTC visitor); else 404, or 409 for a visitor."""
    service: Service = request.app.state.service
    session = service.webrtc.session_for_camera(camera_id) if service.is_webrtc(camera_id) else None
    if session is not None:
        raise HTTPException(409, f"camera {camera_id!r} is a WebRTC visitor: it ends when the visitor stops, "
                                 f"or with DELETE /api/webrtc/sessions/{session.id}")
    if camera_id not in service.cameras:
        raise HTTPException(404, f"unknown camera {camera_id!r}")
    return camera_id


def running_camera(request: Request, camera_id: str = Path(..., pattern=CAMERA_ID_PATTERN)) -> str:
    """A configured camera or a connected WebRTC visitor; else 404 naming it."""
    service: Service = request.app.state.service
    if camera_id not in service.cameras and not service.is_webrtc(camera_id):
        raise HTTPException(404, f"unknown camera {camera_id!r}")
    return camera_id
