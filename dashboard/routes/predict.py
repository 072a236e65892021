"""``POST /api/predict``: one uploaded image -> every face's box, emotion and probabilities."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, HTTPException, Request, UploadFile

from classifier.predict import analyze_image
from dashboard.deps import get_service
from dashboard.schemas import Prediction, Problem
from dashboard.service import Service
from dashboard.uploads import ImageRefused, PoolFull, UploadPool, decode

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


def analyse_upload(data: bytes, max_pixels: int, detector, classifier, crop_margin: float):
    """Decode and analyse in one pool task, so the decoded image never outlives the worker's place."""
    image = decode(data, max_pixels)
    return image.shape, analyze_image(image, detector, classifier, crop_margin)


@router.post("/api/predict", summary="Faces and emotions in one image (JPEG, PNG or WebP)", responses={
    400: {"model": Problem, "description": "Empty upload"},
    413: {"model": Problem, "description": "Over dashboard.max_upload_mb or dashboard.max_image_pixels"},
    415: {"model": Problem, "description": "Not a JPEG, PNG or WebP image"},
    422: {"model": Problem, "description": "No file field, or an image that cannot be decoded"},
    503: {"model": Problem, "description": "Every upload worker and waiting place is taken (Retry-After)"}})
async def predict(request: Request, file: UploadFile = File(..., description="The image."),
                  service: Service = Depends(get_service)) -> Prediction:
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
            shape, faces = await slot.run(analyse_upload, data, cfg.max_image_pixels, service.detector,
                                          service.classifier, service.settings.classifier.crop_margin)
        except ImageRefused as exc:
            raise HTTPException(exc.status, str(exc)) from None
    keep = ("box", "emotion", "confidence", "probabilities")
    return Prediction(width=int(shape[1]), height=int(shape[0]), model=service.classifier.name,
                      faces=[{k: v for k, v in f.to_dict().items() if k in keep} for f in faces])
