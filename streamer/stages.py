"""The detector and the classifier as batched stages that every camera of a pipeline shares.

Three ``Batcher``s on one pool of worker threads: full detections; the detector's parts (regions and refinements
cost milliseconds, so they get their own batches and never wait behind another camera's full detection, tens of
milliseconds); and classification, batched by faces rather than frames. The event loop only submits and awaits.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from deepfer_core.protocols import EmotionModel, FaceDetector
from deepfer_core.settings import Settings
from deepfer_core.types import FaceBox, Pixels
from detectors.schedule import DetectJob, run_jobs
from streamer.analysis import classify_faces
from streamer.batching import Batcher, BatchStats


class Stages:
    """Detection and classification for every camera, in batches, off the event loop."""

    def __init__(self, settings: Settings, detector: FaceDetector, classifier: EmotionModel):
        self.settings, self.detector, self.classifier = settings, detector, classifier
        ps, cs, ds = settings.pipeline, settings.classifier, settings.detector
        self._executor = ThreadPoolExecutor(max_workers=3, thread_name_prefix="deepfer-infer")
        detect_wait_s, samples, n = ps.detect_max_wait_ms / 1000, ps.latency_samples, ps.batch_concurrency
        self._full: Batcher[DetectJob, list[FaceBox]] = Batcher("detect_full", self._detect_batch, ds.batch_size,
                                                                 detect_wait_s, self._executor, samples=samples,
                                                                 concurrency=n)
        self._parts: Batcher[DetectJob, list[FaceBox]] = Batcher("detect_parts", self._detect_batch, ds.batch_size,
                                                                  detect_wait_s, self._executor, samples=samples,
                                                                  concurrency=n)
        self._classify: Batcher[tuple[Pixels, list[FaceBox]], np.ndarray] = Batcher(
            "classify", self._classify_batch, cs.batch_size, cs.max_wait_ms / 1000, self._executor,
            size_of=lambda item: len(item[1]), samples=samples, concurrency=n)

    def start(self) -> None:
        for batcher in (self._full, self._parts, self._classify):
            batcher.start()

    async def stop(self) -> None:
        """Stop taking work; requests still waiting for a batch fail."""
        for batcher in (self._full, self._parts, self._classify):
            await batcher.stop()

    async def shutdown(self) -> None:
        """Wait for the worker threads to finish (after ``stop``)."""
        await asyncio.to_thread(self._executor.shutdown, True)

    def detect(self, job: DetectJob, wait_s: float | None) -> asyncio.Future[list[FaceBox]]:
        """The boxes of ``job``, from the full or the fast batcher (a job with nothing to run: no face, at once)."""
        if job.idle:
            done: asyncio.Future[list[FaceBox]] = asyncio.get_running_loop().create_future()
            done.set_result([])
            return done
        batcher = self._full if job.full else self._parts
        return asyncio.ensure_future(batcher.submit(job, wait_s))

    async def classify(self, pixels: Pixels, boxes: list[FaceBox], wait_s: float | None) -> np.ndarray:
        """Probabilities of the faces ``boxes`` on one frame, batched with other frames' faces."""
        return await self._classify.submit((pixels, boxes), wait_s)

    def timing(self) -> dict[str, dict[str, Any]]:
        """Busy time (worker-thread seconds), batch sizes and waits; ``detect`` is the detector's whole work,
        ``detect_full`` and ``detect_parts`` (regions, refinements) its two kinds of batch."""
        out = {b.name: b.stats.to_dict() for b in (self._full, self._parts, self._classify)}
        out["detect"] = BatchStats.merged(self._full.stats, self._parts.stats).to_dict()
        return out

    def _detect_batch(self, jobs: list[DetectJob]) -> list[list[FaceBox]]:
        """Worker thread: full frames in one detector call, regions in another, refinements in a third."""
        return run_jobs(self.detector, jobs)

    def _classify_batch(self, items: list[tuple[Pixels, list[FaceBox]]]) -> list[np.ndarray]:
        """Worker thread: every face of every frame in the batch, in one model call."""
        cs = self.settings.classifier
        return classify_faces([pixels.rgb() for pixels, _ in items], [boxes for _, boxes in items], self.classifier,
                              cs.crop_margin, cs.batch_size)
