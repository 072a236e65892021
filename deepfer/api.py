"""DeepFER from Python: ``analyze`` for pictures, ``analyze_video`` for video files. No Redis, no server.

Both run what the command line runs (``deepfer predict``, ``deepfer run``), built from ``streamer.assembly``: the
same detector, classifier, tracker and pipeline, so a result here is the result there. The models load on first use
and stay loaded (per settings) for the next call. Heavy imports (torch) wait for that first call, so ``import
deepfer`` stays quick.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from deepfer_core.types import EMOTIONS, FaceResult, FrameResult

if TYPE_CHECKING:
    import pandas as pd

    from deepfer_core.settings import Settings
    from streamer.assembly import Models

ImageInput = str | Path | np.ndarray


@dataclass(frozen=True)
class Face:
    """One face: its box in pixels, the emotion shown and the 7 probabilities (EMOTIONS order as a dict).

    In a video, ``track_id`` follows the person from frame to frame (None until the tracker has confirmed the face)
    and ``emotion``/``probabilities`` are the smoothed ones the page shows; ``raw_probabilities`` are this frame's
    alone. In a picture they are the same."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float  # the detector's confidence that this is a face
    emotion: str
    confidence: float  # probabilities[emotion]
    probabilities: dict[str, float]
    raw_probabilities: dict[str, float]
    track_id: int | None = None
    detected: bool = True  # False: the box was carried from an earlier frame (the detector runs every k-th frame)

    @classmethod
    def of(cls, face: FaceResult) -> Face:
        shown = face.smoothed if face.smoothed is not None else face.probabilities
        x1, y1, x2, y2 = (round(float(v), 2) for v in face.box.xyxy)
        return cls(box=(x1, y1, x2, y2), score=round(float(face.box.score), 4),
                   emotion=face.emotion, confidence=round(face.confidence, 4),
                   probabilities={e: round(float(p), 4) for e, p in zip(EMOTIONS, shown)},
                   raw_probabilities={e: round(float(p), 4) for e, p in zip(EMOTIONS, face.probabilities)},
                   track_id=face.track_id, detected=face.detected)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ImageResult:
    """The faces of one picture, largest first (``source``: the path, or ``"array"``)."""

    source: str
    width: int
    height: int
    faces: list[Face] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_pandas(self) -> pd.DataFrame:
        """One row per face: ``face`` (1 = largest, as ``deepfer predict`` and ``explain`` number them), box,
        emotion, confidence and the 7 probabilities."""
        return _frame([{"source": self.source, **_face_row(i, f)} for i, f in enumerate(self.faces)],
                      ["source", *FACE_COLUMNS])


@dataclass(frozen=True)
class VideoFrame:
    """One analysed frame of a video: its number from 0, its time in the video, its faces."""

    index: int
    time_s: float
    faces: list[Face] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class VideoResult(list[VideoFrame]):
    """Every frame of a video, in order (a list of ``VideoFrame``), plus ``to_pandas()``."""

    def __init__(self, frames: Sequence[VideoFrame] = (), source: str = "", fps: float | None = None):
        super().__init__(frames)
        self.source, self.fps = source, fps

    def to_pandas(self) -> pd.DataFrame:
        """One row per face per frame (a frame without faces has no row): ``frame``, ``time_s``, ``track_id``,
        ``face`` (its place in the frame, from 1), box, emotion, confidence and the 7 (smoothed) probabilities."""
        rows = [{"frame": fr.index, "time_s": fr.time_s, **_face_row(i, f)} for fr in self for i, f in
                enumerate(fr.faces)]
        return _frame(rows, ["frame", "time_s", *FACE_COLUMNS])


FACE_COLUMNS = ["face", "track_id", "x1", "y1", "x2", "y2", "score", "emotion", "confidence", *EMOTIONS]


def _face_row(i: int, f: Face) -> dict[str, Any]:
    x1, y1, x2, y2 = f.box
    return {"face": i + 1, "track_id": f.track_id, "x1": x1, "y1": y1, "x2": x2, "y2": y2, "score": f.score,
            "emotion": f.emotion, "confidence": f.confidence, **f.probabilities}


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"track_id": "Int64"}) if "track_id" in frame else frame


# ----- settings and models ------------------------------------------------------------------------------------------

_models: dict[str, Models] = {}
_lock = threading.Lock()


def _settings(settings: Settings | None, weights: str | Path | None, device: str | None) -> Settings:
    """``settings`` as given, else the command line's (``$DEEPFER_CONFIG`` or ./config.toml, ``DEEPFER_*``), with
    ``weights`` and ``device`` (both models) on top."""
    from deepfer_core.settings import load_settings

    over: dict[str, dict[str, Any]] = {"classifier": {"weights": str(weights) if weights else None, "device": device},
                                       "detector": {"device": device}}
    if settings is None:
        return load_settings(None, over)
    update = {s: getattr(settings, s).model_copy(update={k: v for k, v in kv.items() if v is not None})
              for s, kv in over.items()}
    return settings.model_copy(update=update)


def _loaded(settings: Settings) -> Models:
    from streamer.assembly import load_models

    key = settings.detector.model_dump_json() + settings.classifier.model_dump_json()
    with _lock:
        if key not in _models:
            _models[key] = load_models(settings)
        return _models[key]


def _image(item: ImageInput) -> tuple[np.ndarray, str]:
    """An RGB uint8 H x W x 3 array and the name to report. Arrays are RGB (convert OpenCV's BGR first); grey and
    RGBA arrays are accepted; floats in [0, 1] are scaled."""
    from streamer.media import load_image

    if isinstance(item, (str, Path)):
        return load_image(Path(item)), str(item)
    if not isinstance(item, np.ndarray):
        raise TypeError(f"analyze takes paths or numpy arrays, not {type(item).__name__}")
    image = item
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 1:
        raise ValueError(f"an image array is H x W x 3 (RGB), H x W x 4 or H x W, got shape {item.shape}")
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.size and float(np.nanmax(image)) <= 1.0:
            image = image * 255.0
        image = np.clip(np.nan_to_num(image), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image[:, :, :3]), "array"


# ----- the two calls ------------------------------------------------------------------------------------------------


@overload
def analyze(images: ImageInput, *, settings: Settings | None = ..., weights: str | Path | None = ...,
            device: str | None = ...) -> ImageResult: ...


@overload
def analyze(images: list[ImageInput] | tuple[ImageInput, ...], *, settings: Settings | None = ...,
            weights: str | Path | None = ..., device: str | None = ...) -> list[ImageResult]: ...


def analyze(images: ImageInput | list[ImageInput] | tuple[ImageInput, ...], *, settings: Settings | None = None,
            weights: str | Path | None = None, device: str | None = None) -> ImageResult | list[ImageResult]:
    """The faces and emotions of one picture (a path, or an RGB numpy array), or of each of a list of them.

    ``weights``: a shipped model name or a checkpoint path (default ``classifier.weights``); ``device``: ``cpu``,
    ``cuda`` or ``auto`` for both models. A bad path or image is a ``ValueError`` naming it, before any model loads.
    """
    from streamer.analysis import analyse_images
    from streamer.media import check_image

    one = isinstance(images, (str, Path, np.ndarray))
    items: list[ImageInput] = [images] if isinstance(images, (str, Path, np.ndarray)) else list(images)
    for item in items:  # every path is checked before the models load
        if isinstance(item, (str, Path)):
            check_image(Path(item))
    s = _settings(settings, weights, device)
    models = _loaded(s)
    out = []
    for item in items:
        image, name = _image(item)
        faces = analyse_images([image], models.detector, models.classifier, s.classifier.crop_margin)[0]
        out.append(ImageResult(name, int(image.shape[1]), int(image.shape[0]), [Face.of(f) for f in faces]))
    return out[0] if one else out


def analyze_video(path: str | Path, *, settings: Settings | None = None, weights: str | Path | None = None,
                  device: str | None = None, track: bool = True) -> VideoResult:
    """Every frame of a video file, analysed as ``deepfer run`` does (faces detected every ``detector.detect_every``
    frames and carried between, tracked and smoothed unless ``track=False``). Nothing is stored; runs in a thread of
    its own when called from a running event loop (Jupyter)."""
    from streamer.assembly import build_pipeline, build_sources

    s = _settings(settings, weights, device)
    (source,) = build_sources([str(path)], ["video"], s)  # SourceError (a ValueError) for a bad path, at once
    models = _loaded(s)
    frames: list[VideoFrame] = []

    class Collect:
        async def handle(self, result: FrameResult) -> None:
            f = result.frame
            t = f.pts if f.pts is not None else (f.seq / source.fps if source.fps else 0.0)
            frames.append(VideoFrame(f.seq, round(float(t), 4), [Face.of(face) for face in result.faces]))

        async def close(self) -> None:
            pass

    async def run() -> None:
        pipeline = build_pipeline(s, models, sinks=[Collect()], track=track)
        pipeline.add_source(source)
        await pipeline.run(until_idle=True)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(run())
    else:  # a loop runs in this thread already (a notebook): asyncio.run would refuse
        failed: list[BaseException] = []

        def in_thread() -> None:
            try:
                asyncio.run(run())
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                failed.append(exc)

        worker = threading.Thread(target=in_thread, name="deepfer-analyze-video")
        worker.start()
        worker.join()
        if failed:
            raise failed[0]
    frames.sort(key=lambda fr: fr.index)
    return VideoResult(frames, str(path), source.fps)
