"""Decoding pictures: video files and streams through PyAV, still images through Pillow. Every stage that needs
pixels from a file or a stream gets them here, as RGB uint8 arrays."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from core.types import Pixels

# 8-bit YUV layouts whose first plane is the luma (Y) picture the motion gate reads without any conversion.
LUMA_FORMATS = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21"})
FULL_RANGE = 2  # AVCOL_RANGE_JPEG


class MediaError(ValueError):
    """A file or stream that cannot be decoded; the message names it and says why, in one line."""


class NotAnImage(MediaError):
    """Not a picture Pillow reads, or not one of the formats asked for."""


class ImageTooLarge(MediaError):
    """More pixels than allowed, known from the header alone."""


@dataclass(frozen=True)
class VideoInfo:
    fps: float | None  # nominal frame rate, when the container says
    width: int
    height: int

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def local_path(uri: str | Path) -> Path:
    """A file path, with a ``file://`` prefix removed."""
    text = str(uri)
    return Path(text[7:] if text.startswith("file://") else text)


def stream_info(container) -> VideoInfo:
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    return VideoInfo(float(rate) if rate else None, stream.codec_context.width, stream.codec_context.height)


def probe_video(path: str | Path) -> VideoInfo:
    """Frame rate and size of a video file; ``MediaError`` with a one-line reason when it is not one."""
    import av

    p = local_path(path)
    if not p.exists():
        raise MediaError(f"video file not found: {p}")
    if not p.is_file():
        raise MediaError(f"not a file: {p}")
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise MediaError(f"no video stream in {p}")
            return stream_info(container)
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"not a readable video: {p} ({exc.__class__.__name__}: "
                         f"{getattr(exc, 'strerror', None) or exc})") from None


def video_pictures(container, on_cpu: Callable[[float], None] | None = None) -> Iterator[tuple[Pixels, float | None]]:
    """The frames of an open PyAV container's first video stream as ``Pixels`` (RGB made on first use), with their
    stream time in seconds. ``on_cpu`` receives the CPU seconds of decoding (this thread) and of each conversion to
    RGB (the thread that asks for it)."""
    stream = container.streams.video[0]
    tb = stream.time_base
    started = time.thread_time()
    for frame in container.decode(stream):
        pts = float(frame.pts * tb) if frame.pts is not None and tb is not None else None
        pixels = picture(frame, on_cpu)
        if on_cpu is not None:
            on_cpu(time.thread_time() - started)
        yield pixels, pts
        started = time.thread_time()


def picture(frame, on_cpu: Callable[[float], None] | None = None) -> Pixels:
    """A PyAV ``VideoFrame`` as ``Pixels``: its luma plane as it is (no copy), RGB converted only when asked."""

    def rgb() -> np.ndarray:
        started = time.thread_time()
        image = frame.to_ndarray(format="rgb24")
        if on_cpu is not None:
            on_cpu(time.thread_time() - started)
        return image

    name = frame.format.name
    luma = None
    if name in LUMA_FORMATS:
        plane = frame.planes[0]
        luma = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
    limited = not name.startswith("yuvj") and frame.color_range != FULL_RANGE
    return Pixels(rgb, frame.width, frame.height, luma, limited)


def read_frames(path: str | Path, count: int | None = None) -> Iterator[tuple[np.ndarray, float]]:
    """The frames of a video file (at most ``count``) and their time from the start, for offline work."""
    import av

    info = probe_video(path)
    try:
        with av.open(str(local_path(path))) as container:
            for i, (pixels, pts) in enumerate(video_pictures(container)):
                if count is not None and i >= count:
                    return
                yield pixels.rgb(), pts if pts is not None else i / (info.fps or 30.0)
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: cannot decode video ({exc})") from None


def load_image(source: str | Path | bytes | BinaryIO, name: str | None = None, max_pixels: int | None = None,
               formats: tuple[str, ...] | None = None) -> np.ndarray:
    """RGB uint8 H x W x 3 from a path, bytes or a file object, turned upright by its EXIF orientation.

    ``max_pixels`` and ``formats`` are checked from the header, before any pixel is decoded (``ImageTooLarge``,
    ``NotAnImage``); anything else that cannot be decoded is a ``MediaError``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    label = name or (str(source) if isinstance(source, (str, Path)) else "upload")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise MediaError(f"image not found: {path}")
        if not path.is_file():
            raise MediaError(f"not a file: {path}")
    elif isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        with Image.open(source) as img:  # reads the header only
            if formats is not None and img.format not in formats:
                raise NotAnImage(f"{label} is a {img.format} image: send {', '.join(formats)}")
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise ImageTooLarge(f"{label} is {img.width}x{img.height} pixels, over the limit of {max_pixels}")
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
            return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    except MediaError:
        raise
    except UnidentifiedImageError:
        raise NotAnImage(
            f"{label} is not an image Pillow can read" + (f": send {', '.join(formats)}" if formats else "")
        ) from None
    except Image.DecompressionBombError:  # Pillow's own ceiling, far above any sane limit: refused from the header too
        raise ImageTooLarge(f"{label} is over the limit of {max_pixels or 'Pillow'} pixels") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"{label}: cannot decode the image ({exc})") from None


def check_image(path: Path) -> None:
    """``MediaError`` unless ``path`` is a file Pillow recognises (header only, nothing decoded)."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise MediaError(f"image not found: {path}" if not path.exists() else f"not a file: {path}")
    try:
        Image.open(path).close()
    except (UnidentifiedImageError, OSError):
        raise NotAnImage(f"{path} is not an image Pillow can read") from None
