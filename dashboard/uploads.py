"""Uploaded images: decoded only after their header's pixel count is checked, and decoded and analysed in a small
bounded pool, so that parallel uploads cannot exhaust memory.

One decode peaks near 11 bytes a pixel (Pillow keeps RGB as 4 bytes a pixel, plus the RGB conversion of a grey
image, plus the array): about 175 MB at the default ``max_image_pixels`` of 16 M. The pool runs ``predict_workers``
at once and admits ``predict_queue`` more, each holding at most ``max_upload_mb`` of bytes: the worst case is bounded
by the settings, not by the number of clients.
"""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = {"JPEG", "PNG", "WEBP"}


class ImageRefused(Exception):
    """An upload that is not a usable image, with the HTTP status that says why."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def decode(data: bytes, max_pixels: int) -> np.ndarray:
    """RGB array of a JPEG/PNG/WebP; its size is read from the header and refused before any pixel is decoded."""
    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            if img.format not in FORMATS:
                raise ImageRefused(415, f"unsupported image type {img.format}: send JPEG, PNG or WebP")
            if img.width * img.height > max_pixels:
                raise ImageRefused(413, f"image of {img.width}x{img.height} pixels is over the "
                                        f"{max_pixels} pixel limit (dashboard.max_image_pixels)")
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
            return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    except UnidentifiedImageError:
        raise ImageRefused(415, "not an image: send JPEG, PNG or WebP") from None
    except Image.DecompressionBombError:  # Pillow's own ceiling, far above ours: refused from the header too
        raise ImageRefused(413, f"image over the {max_pixels} pixel limit (dashboard.max_image_pixels)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRefused(422, f"cannot decode the image: {exc}") from None


class PoolFull(Exception):
    pass


class UploadPool:
    """``workers`` threads for decoding and analysis, with ``workers + queue`` places: an upload takes a place
    before its bytes are read and keeps it until its work has ended (even if its client has gone meanwhile)."""

    def __init__(self, workers: int, queue: int):
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="deepfer-upload")
        self.capacity = workers + queue
        self.taken = 0

    def take(self) -> "Slot":
        """A place in the pool, or ``PoolFull`` with the reason (called on the event loop only: no lock needed)."""
        if self.taken >= self.capacity:
            raise PoolFull(f"busy: {self.taken} uploads are being analysed or waiting "
                           f"(dashboard.predict_workers + dashboard.predict_queue); try again shortly")
        self.taken += 1
        return Slot(self, asyncio.get_running_loop())

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class Slot:
    """One upload's place, given back exactly once: when its work ends, or on leaving the block if none started."""

    def __init__(self, pool: UploadPool, loop: asyncio.AbstractEventLoop):
        self.pool, self.loop = pool, loop
        self.future: Future | None = None
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.pool.taken -= 1

    def _done(self, _: Future) -> None:
        try:
            self.loop.call_soon_threadsafe(self.release)
        except RuntimeError:  # the loop has closed (shut-down): nothing left to count
            pass

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.future = self.pool.executor.submit(fn, *args)
        self.future.add_done_callback(self._done)
        return await asyncio.wrap_future(self.future)

    async def __aenter__(self) -> "Slot":
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.future is None:
            self.release()
