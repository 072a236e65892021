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

from deepfer_core.types import Pixels

# 8-bit YUV layouts whose first plane is the luma (Y) picture the motion gate reads without any conversion.
LUMA_FORMATS = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21"})
FULL_RANGE = 2  # AVCOL_RANGE_JPEG


class MediaError(ValueError):
    """A file or stream that cannot be decoded; the message names it and says why, in one line."""


class NotAnImage(MediaError):
    """Not a picture Pillow reads, or not one of the formats asked for."""


class ImageTooLarge(MediaError):
    """More pixels than allowed, known from the header alone."""


class FrameTooLarge(MediaError):
    """A video frame (or a stream's announced size) over ``sources.max_frame_pixels``: the source stops."""


def too_large(size: tuple[int, int] | None, max_pixels: int) -> str:
    """The one-line reason a stream of ``size`` is refused ("" when it is not)."""
    if size is None or size[0] * size[1] <= 0:
        return f"the stream's frame size is unknown or over sources.max_frame_pixels ({max_pixels})"
    if size[0] * size[1] > max_pixels:
        return f"frames of {size[0]}x{size[1]} pixels, over sources.max_frame_pixels ({max_pixels})"
    return ""


def limit_options(max_pixels: int | None) -> dict[str, str]:
    """FFmpeg options that make its decoders refuse a larger picture before allocating it (probing included)."""
    return {"max_pixels": str(max_pixels)} if max_pixels else {}


@dataclass(frozen=True)
class VideoInfo:
    fps: float | None  # nominal frame rate, when the container says
    width: int
    height: int
    frames: int | None = None  # frame count, from the container or its duration; None when it says neither

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
    frames = int(stream.frames or 0)
    if not frames and rate and container.duration:  # in AV_TIME_BASE (microseconds)
        frames = int(round(container.duration / 1e6 * float(rate)))
    return VideoInfo(float(rate) if rate else None, stream.codec_context.width, stream.codec_context.height,
                     frames or None)


def probe_video(path: str | Path, max_pixels: int | None = None) -> VideoInfo:
    """Frame rate and size of a video file; ``MediaError`` with a one-line reason when it is not one, and
    ``FrameTooLarge`` when its frames are over ``max_pixels`` (FFmpeg's probe decodes none that large)."""
    import av

    p = local_path(path)
    if not p.exists():
        raise MediaError(f"video file not found: {p}")
    if not p.is_file():
        raise MediaError(f"not a file: {p}")
    try:
        with av.open(str(p), options=limit_options(max_pixels)) as container:
            if not container.streams.video:
                raise MediaError(f"no video stream in {p}")
            info = stream_info(container)
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"not a readable video: {p} ({exc.__class__.__name__}: "
                         f"{getattr(exc, 'strerror', None) or exc})") from None
    if max_pixels and (reason := too_large(info.size, max_pixels)):
        raise FrameTooLarge(f"{p}: {reason}")
    return info


def video_pictures(container, on_cpu: Callable[[float], None] | None = None, max_pixels: int | None = None,
                   working_pixels: int | None = None, decode_threads: int = 0,
                   frame_threads: bool = True) -> Iterator[tuple[Pixels, float | None]]:
    """The frames of an open PyAV container's first video stream as ``Pixels`` (RGB made on first use), with their
    stream time in seconds. ``on_cpu`` receives the CPU seconds of decoding (this thread) and of each conversion to
    RGB (the thread that asks for it).

    ``max_pixels``: the decoder refuses a larger frame before allocating it, whatever the stream announced
    (``FrameTooLarge``); ``working_pixels``: larger frames are scaled down to about that many pixels, once, here, so
    every later copy (queue, analysis, preview) has the working size.

    ``decode_threads`` (``sources.decode_threads``): FFmpeg threads of this stream's decoder, ``thread_type`` AUTO
    (frame and slice threads), or slice threads only without ``frame_threads`` (a live camera: frame threads hold
    back a frame per thread); 0 leaves PyAV's default (slice threads, one per core).
    """
    import av

    stream = container.streams.video[0]
    if decode_threads:
        set_decode_threads(stream, decode_threads, frame_threads)
    if max_pixels:
        if reason := too_large(stream_info(container).size, max_pixels):
            raise FrameTooLarge(reason)
        stream.codec_context.options = limit_options(max_pixels)
    tb = stream.time_base
    started = time.thread_time()
    frames = container.decode(stream)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except av.error.ArgumentError:  # EINVAL: FFmpeg's max_pixels refused the next picture's size
            if not max_pixels:
                raise
            raise FrameTooLarge(f"a frame over sources.max_frame_pixels ({max_pixels}) or of no valid size") from None
        if max_pixels and frame.width * frame.height > max_pixels:  # a decoder that ignored the option
            raise FrameTooLarge(too_large((frame.width, frame.height), max_pixels))
        if working_pixels and frame.width * frame.height > working_pixels:
            frame = frame.reformat(*working_size(frame.width, frame.height, working_pixels))
        pts = float(frame.pts * tb) if frame.pts is not None and tb is not None else None
        pixels = picture(frame, on_cpu)
        if on_cpu is not None:
            on_cpu(time.thread_time() - started)
        yield pixels, pts
        started = time.thread_time()


def set_decode_threads(stream, threads: int, frame_threads: bool = True) -> None:
    """A PyAV video stream decoded by ``threads`` FFmpeg threads (before its first packet is decoded)."""
    stream.thread_type = "AUTO" if frame_threads else "SLICE"
    stream.thread_count = threads


def working_size(width: int, height: int, working_pixels: int) -> tuple[int, int]:
    """``width`` x ``height`` scaled to at most ``working_pixels`` pixels, aspect kept, both sides even."""
    scale = (working_pixels / (width * height)) ** 0.5
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


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
    turns = quarter_turns(frame)
    if not turns:
        return Pixels(rgb, frame.width, frame.height, luma, limited)

    def upright() -> np.ndarray:  # a phone's portrait clip: stored sideways, its display matrix turns it upright
        return np.ascontiguousarray(np.rot90(rgb(), turns))

    if luma is not None:
        luma = np.ascontiguousarray(np.rot90(luma, turns))
    width, height = (frame.height, frame.width) if turns % 2 else (frame.width, frame.height)
    return Pixels(upright, width, height, luma, limited)


def quarter_turns(frame) -> int:
    """Counter-clockwise quarter turns that show a decoded frame upright, from its display matrix (``rotation``, as
    FFmpeg's players and ``ffmpeg -i clip frames/%d.png`` apply it): 1 for a phone's portrait clip, 0 for most."""
    return round((getattr(frame, "rotation", 0) or 0) / 90) % 4


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
