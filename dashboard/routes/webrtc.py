"""The live demo's signalling: a browser posts its SDP offer and gets the answer; sessions can be listed and ended.

The media itself (the visitor's camera in, the annotated video and per-face JSON out) flows peer to peer between
the browser and aiortc in ``streamer.webrtc``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path, Request

from dashboard.deps import get_service
from dashboard.schemas import (
    IceServer,
    Problem,
    WebRtcAnswer,
    WebRtcConfig,
    WebRtcOffer,
)
from dashboard.service import Service
from streamer.webrtc.gateway import OfferError, TooManySessions
from streamer.webrtc.session import SessionStats

router = APIRouter(prefix="/api/webrtc", tags=["webrtc"])
SESSION_ID = Path(..., pattern=r"^[0-9a-f]{8}$")


@router.get("/config", summary="ICE servers for the browser's RTCPeerConnection, and how many sessions run")
async def webrtc_config(service: Service = Depends(get_service)) -> WebRtcConfig:
    w = service.settings.webrtc
    servers = [
        IceServer(urls=url, username=w.ice_username or None, credential=w.ice_credential or None)
        for url in w.ice_servers
    ]
    return WebRtcConfig(ice_servers=servers, max_sessions=w.max_sessions, sessions=len(service.webrtc.sessions))


@router.post(
    "/offer",
    summary="Answer a browser's offer: its camera is analysed like any camera and comes back annotated",
    responses={429: {"model": Problem, "description": "webrtc.max_sessions visitors are already connected"}},
)
async def offer(body: WebRtcOffer, request: Request, service: Service = Depends(get_service)) -> WebRtcAnswer:
    peer = request.client.host if request.client else "unknown"
    try:
        session, sdp, kind = await service.webrtc.answer(body.sdp, body.type, peer)
    except OfferError as exc:
        raise HTTPException(400, str(exc)) from None
    except TooManySessions as exc:
        raise HTTPException(429, str(exc)) from None
    return WebRtcAnswer(sdp=sdp, type=kind, session_id=session.id, camera_id=session.camera_id)


@router.get("/sessions", summary="Connected visitors with their counters and arrival-to-send latency")
async def list_sessions(service: Service = Depends(get_service)) -> list[SessionStats]:
    return [s.stats() for s in list(service.webrtc.sessions.values())]


@router.get("/sessions/{session_id}", summary="One visitor's session")
async def get_session(session_id: str = SESSION_ID, service: Service = Depends(get_service)) -> SessionStats:
    session = service.webrtc.sessions.get(session_id)
    if session is None:
        raise HTTPException(404, f"no WebRTC session {session_id!r} (it may have ended)")
    return session.stats()


@router.delete("/sessions/{session_id}", summary="End a visitor's session; returns its final counters")
async def end_session(session_id: str = SESSION_ID, service: Service = Depends(get_service)) -> SessionStats:
    final = await service.webrtc.end(session_id, "ended through the API")
    if final is None:
        raise HTTPException(404, f"no WebRTC session {session_id!r} (it may have ended)")
    return final
