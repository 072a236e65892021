"""``POST /api/predict``: one uploaded image -> every face's box, emotion and probabilities; ``POST /api/explain``:
the same faces with the Grad-CAM heat map of why. Both go through the bounded upload pool."""

from __future__ import annotations

import base64
from typing import Any

import cv2
from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile

from classifier.gradcam import ExplainError, GradCam
from dashboard.deps import get_service
from dashboard.schemas import Explanation, Prediction, Problem
from dashboard.service import Service
from dashboard.uploads import ImageRefused, PoolFull, UploadPool, decode
from deepfer_core.types import EMOTIONS
from streamer.analysis import analyse_images, emotion_index, explain_image
from streamer.assembly import build_explainer

router = APIRouter(tags=["predict"])
CHUNK = 1 << 20
RETRY_AFTER_S = 1


async def read_limited(upload: UploadFile, limit: int) -> bytes:
    data = bytearray()
    while chunk := await upload.read(CHUNK):
        data += chunk
        if len(data) > limit:
            raise HTTPException(413, f"upload larger than the {limit / 2**20:g} MB limit (dashboard.max_upload_mb)")
    return bytes(data)


def analyse_upload(data: bytes, max_pixels: int, detector, classifier, crop_margin: float, confidence=None):
    """Decode and analyse in one pool task, so the decoded image never outlives the worker's place."""
    image = decode(data, max_pixels)
    (faces,) = analyse_images([image], detector, classifier, crop_margin, confidence=confidence)
    return image.shape, faces


UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "Empty upload"},
    413: {"model": Problem, "description": "Over dashboard.max_upload_mb or dashboard.max_image_pixels"},
    415: {"model": Problem, "description": "Not a JPEG, PNG or WebP image"},
    422: {"model": Problem, "description": "No file field, or an image that cannot be decoded"},
    503: {"model": Problem, "description": "Every upload worker and waiting place is taken (Retry-After)"}}


async def run_upload(request: Request, file: UploadFile, service: Service, work, *args):
    """Read the upload within its limit and run ``work(data, max_pixels, *args)`` in the bounded pool."""
    cfg = service.settings.dashboard
    pool: UploadPool = request.app.state.uploads
    try:
        slot = pool.take()
    except PoolFull as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": str(RETRY_AFTER_S)}) from None
    async with slot:
        data = await read_limited(file, int(cfg.max_upload_mb * 2**20))
        if not data:
            raise HTTPException(400, "empty upload: choose an image file")
        try:
            return await slot.run(work, data, cfg.max_image_pixels, *args)
        except ImageRefused as exc:
            raise HTTPException(exc.status, str(exc)) from None


@router.post("/api/predict", summary="Faces and emotions in one image (JPEG, PNG or WebP)", responses=UPLOAD_ERRORS)
async def predict(request: Request, file: UploadFile = File(..., description="The image."),
                  service: Service = Depends(get_service)) -> Prediction:
    shape, faces = await run_upload(request, file, service, analyse_upload, service.models.detector,
                                    service.models.classifier, service.settings.classifier.crop_margin,
                                    service.settings.confidence)
    keep = ("box", "emotion", "confidence", "confident", "probabilities")
    return Prediction(width=int(shape[1]), height=int(shape[0]), model=service.models.classifier.name,
                      faces=[{k: v for k, v in f.to_dict().items() if k in keep} for f in faces])


def explainer_of(request: Request, service: Service) -> GradCam:
    """One Grad-CAM per app, made on first use (409 when the weights are an ONNX export: no gradients)."""
    explainer = getattr(request.app.state, "explainer", None)
    if explainer is None:
        try:
            explainer = build_explainer(service.settings, service.models)
        except ExplainError as exc:
            raise HTTPException(409, str(exc)) from None
        request.app.state.explainer = explainer
    return explainer


def explain_upload(data: bytes, max_pixels: int, detector, explainer: GradCam, margin: float, settings,
                   target: int | None):
    image = decode(data, max_pixels)
    faces = explain_image(image, detector, explainer, margin, settings, target)
    pictures = []
    for face in faces:  # encoded in the worker too: the event loop only answers
        _, png = cv2.imencode(".png", cv2.cvtColor(face.picture, cv2.COLOR_RGB2BGR))
        pictures.append("data:image/png;base64," + base64.b64encode(png.tobytes()).decode())
    return image.shape, faces, pictures


@router.post("/api/explain", summary="Why: each face's emotion with its Grad-CAM heat map (JPEG, PNG or WebP)",
             responses={**UPLOAD_ERRORS,
                        409: {"model": Problem, "description": "The classifier is an ONNX export (no gradients)"},
                        422: {"model": Problem, "description": "No file field, an image that cannot be decoded, or "
                                                               "an unknown emotion in class"}})
async def explain(request: Request, file: UploadFile = File(..., description="The image."),
                  emotion: str | None = Query(None, alias="class", max_length=16,
                                              description="Explain this emotion on every face (default: each "
                                                          "face's predicted one)."),
                  service: Service = Depends(get_service)) -> Explanation:
    try:
        target = emotion_index(emotion)
    except ExplainError as exc:
        raise HTTPException(422, str(exc)) from None
    explainer = explainer_of(request, service)
    shape, faces, pictures = await run_upload(
        request, file, service, explain_upload, service.models.detector, explainer,
        service.settings.classifier.crop_margin, service.settings.explain, target)
    answer = [{"box": f.box.rounded(), "emotion": f.emotion,
               "probabilities": {e: round(float(p), 4) for e, p in zip(EMOTIONS, f.probabilities)},
               "explained": f.explained, "explained_probability": round(f.explained_probability, 4), "picture": pic}
              for f, pic in zip(faces, pictures)]
    return Explanation(width=int(shape[1]), height=int(shape[0]), model=service.models.classifier.name,
                       faces=answer, message=None if faces else "no face found in the image")
