"""What each stage must offer the others: the shapes the pipeline is written against, not any implementation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from deepfer_core.types import FaceBox, FrameResult, TimedFrame


class FaceDetector(Protocol):
    """Detects faces in a batch of RGB uint8 frames (H x W x 3); one list of boxes per frame."""

    name: str

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[FaceBox]]: ...


@runtime_checkable
class PartialDetector(FaceDetector, Protocol):
    """A detector that can also look at parts of frames (MTCNN): the pipeline's motion gating uses them, where
    ``isinstance(detector, PartialDetector)``; others (Haar) get whole frames."""

    def detect_regions(self, frames: Sequence[np.ndarray], regions: Sequence[Sequence[FaceBox]],
                       min_sizes: Sequence[Sequence[float]] | None = None
                       ) -> list[list[FaceBox]]: ...  # the whole detector on those regions only (faces from min_sizes)

    def refine(self, frames: Sequence[np.ndarray], boxes: Sequence[Sequence[FaceBox]]
               ) -> list[list[FaceBox]]: ...  # each box moved onto its face and scored, or dropped


class EmotionModel(Protocol):
    """Emotion probabilities for face crops as they were trained (grayscale uint8 ``[N, 48, 48]``)."""

    @property
    def name(self) -> str: ...

    @property
    def device(self) -> object: ...  # where it runs (torch.device, or a provider name)

    def predict_faces(self, faces: np.ndarray, batch_size: int = 256) -> np.ndarray: ...  # float [N, 7]


class Tracker(Protocol):
    """Fills ``track_id``, ``smoothed`` and ``label``; called once per frame, in frame order, per camera."""

    def update(self, result: FrameResult) -> FrameResult: ...


TrackerFactory = Callable[[str], Tracker]


class ResultSink(Protocol):
    """A consumer at the end of the pipeline (Redis writer, annotated video, summary, live preview, WebRTC)."""

    async def handle(self, result: FrameResult) -> None: ...

    async def close(self) -> None: ...


class FrameSource(Protocol):
    """A camera as the pipeline sees it: frames in order, and the counters its status is made of.

    Threaded decoders (files, RTSP, webcams) and WebRTC visitors implement it.
    """

    camera_id: str
    kind: str  # file, rtsp, webcam, webrtc
    live: bool  # live sources drop stale frames (newest wins); files are read in full
    display: str  # the URI with credentials redacted
    last_error: str | None
    frames_read: int
    reconnects: int
    decode_cpu_s: float  # CPU time spent decoding and converting frames
    fps: float | None
    size: tuple[int, int] | None
    max_in_flight: int | None  # this source's own pipeline.max_in_flight (None: the pipeline's)
    batch_wait_s: float | None  # longest its frames wait for a batch (None: the batchers')

    @property
    def status(self) -> str: ...  # read-only here: a source may narrow it (e.g. to a Literal of its states)

    @property
    def frames_dropped(self) -> int: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    async def aclose(self, timeout: float = 5.0) -> None: ...

    async def get(self) -> TimedFrame | None: ...
