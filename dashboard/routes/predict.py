"""``POST /api/predict``: one uploaded image -> every face's box, emotion and probabilities."""

from __future__ import annotations

import asyncio
import io

from fastapi import APIRouter, Depends, File, HTTPException, UploadFile
from PIL import Image, UnidentifiedImageError

from dashboard.deps import get_service
from dashboard.schemas import Prediction, Problem
from dashboard.service import Service
from streamer.analysis import analyse_images

router = APIRouter(tags=["predict"])
FORMATS = {"JPEG", "PNG", "WEBP"}
CHUNK = 1 << 20


async def read_limited(upload: UploadFile, limit: int) -> bytes:
    data = bytearray()
    while chunk := await upload.read(CHUNK):
        data += chunk
        if len(data) > limit:
            raise HTTPException(413, f"upload larger than the {limit / 2**20:g} MB limit (dashboard.max_upload_mb)")
    return bytes(data)


def decode(data: bytes, max_pixels: int):
    """RGB array of a JPEG/PNG/WebP, or an HTTPException saying what is wrong with it."""
    import numpy as np
    from PIL import ImageOps

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in FORMATS:
                raise HTTPException(415, f"unsupported image type {img.format}: send JPEG, PNG or WebP")
            if img.width * img.height > max_pixels:
                raise HTTPException(413, f"image of {img.width}x{img.height} pixels is over the "
                                         f"{max_pixels} pixel limit (dashboard.max_image_pixels)")
            img.load()
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except UnidentifiedImageError:
        raise HTTPException(415, "not an image: send JPEG, PNG or WebP") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise HTTPException(422, f"cannot decode the image: {exc}") from None


@router.post("/api/predict", summary="Faces and emotions in one image (JPEG, PNG or WebP)", responses={
    400: {"model": Problem, "description": "Empty upload"},
    413: {"model": Problem, "description": "Over dashboard.max_upload_mb or dashboard.max_image_pixels"},
    415: {"model": Problem, "description": "Not a JPEG, PNG or WebP image"},
    422: {"model": Problem, "description": "No file field, or an image that cannot be decoded"}})
async def predict(file: UploadFile = File(..., description="The image."), service: Service = Depends(get_service)) -> Prediction:
    cfg = service.settings.dashboard
    data = await read_limited(file, int(cfg.max_upload_mb * 2**20))
    if not data:
        raise HTTPException(400, "empty upload: choose an image file")
    image = await asyncio.to_thread(decode, data, cfg.max_image_pixels)
    models = service.models
    (faces,) = await asyncio.to_thread(analyse_images, [image], models.detector, models.classifier,
                                       service.settings.classifier.crop_margin)
    keep = ("box", "emotion", "confidence", "probabilities")
    return Prediction(**{"width": int(image.shape[1]), "height": int(image.shape[0]), "model": models.classifier.name,
            "faces": [{k: v for k, v in f.to_dict().items() if k in keep} for f in faces]})
