"""The live-preview sink: the latest result of each camera, in memory only, annotated and JPEG-encoded on request.

Face images leave memory only as the annotated preview a signed-in user is watching. Per-person face snapshots
(the latest crop of each person) are kept, in memory, only for cameras whose ``snapshots`` option is on.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

import cv2
import numpy as np

from deepfer_core.types import FrameResult
from streamer.drawing import draw_faces


def encode_jpeg(image_rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


class PreviewSink:
    """A ``ResultSink``: ``latest(camera)`` is the newest FrameResult; ``jpeg(camera)`` its annotated JPEG."""

    def __init__(self, jpeg_quality: int, snapshot_max_people: int):
        self.quality = jpeg_quality
        self.snapshot_max = snapshot_max_people
        self._latest: dict[str, FrameResult] = {}
        self._received: dict[str, float] = {}
        self._snapshots: dict[str, OrderedDict[int, np.ndarray]] = {}
        self._encoded: dict[str, tuple[int, bytes]] = {}
        self._final: dict[str, bytes] = {}  # an ended camera's last annotated JPEG (its frame is not kept)
        self._pending: dict[str, object] = {}  # that JPEG being encoded

    def set_snapshots(self, camera_id: str, on: bool) -> None:
        if on:
            self._snapshots.setdefault(camera_id, OrderedDict())
        else:
            self._snapshots.pop(camera_id, None)

    def forget(self, camera_id: str) -> None:
        for d in (self._latest, self._received, self._snapshots, self._encoded, self._final, self._pending):
            d.pop(camera_id, None)

    def camera_ended(self, camera_id: str) -> None:
        """A camera's source ended, failed or was stopped: its last frame and face crops are not kept (their memory
        is the camera's frame size; an ended camera would hold them for ever), only the last annotated JPEG (encoded
        once, in a thread, when nobody had asked for it yet). Its snapshots setting stays."""
        result = self._latest.pop(camera_id, None)
        self._received.pop(camera_id, None)
        cached = self._encoded.pop(camera_id, None)
        shots = self._snapshots.get(camera_id)
        if shots is not None:
            shots.clear()
        if result is None:
            return
        if cached is not None and cached[0] == result.frame.seq:
            self._final[camera_id] = cached[1]
            return
        token = object()
        self._pending[camera_id] = token
        faces, quality = result.faces, self.quality
        job = asyncio.get_running_loop().run_in_executor(
            None, lambda: encode_jpeg(draw_faces(result.frame.image, faces), quality))

        def done(job: asyncio.Future[bytes]) -> None:
            if self._pending.get(camera_id) is token:
                del self._pending[camera_id]
                if not job.cancelled() and job.exception() is None:
                    self._final[camera_id] = job.result()

        job.add_done_callback(done)

    async def handle(self, result: FrameResult) -> None:
        cam = result.camera_id
        self._latest[cam] = result
        if self._final:
            self._final.pop(cam, None)
            self._pending.pop(cam, None)
        self._received[cam] = time.time()
        shots = self._snapshots.get(cam)
        if shots is not None:
            for face in result.faces:
                if face.track_id is None or not face.detected:
                    continue
                x1, y1, x2, y2 = (int(round(v)) for v in face.box.xyxy)
                crop = result.frame.image[max(0, y1):max(0, y2), max(0, x1):max(0, x2)]
                if crop.size:
                    shots[face.track_id] = crop.copy()
                    shots.move_to_end(face.track_id)
                    while len(shots) > self.snapshot_max:
                        shots.popitem(last=False)

    async def close(self) -> None:
        for d in (self._latest, self._snapshots, self._encoded, self._final, self._pending):
            d.clear()

    def latest(self, camera_id: str) -> FrameResult | None:
        return self._latest.get(camera_id)

    def jpeg(self, camera_id: str) -> bytes | None:
        """The annotated JPEG of the newest frame (encoded once per frame); run it in a thread."""
        result = self._latest.get(camera_id)
        if result is None:
            return self._final.get(camera_id)
        cached = self._encoded.get(camera_id)
        if cached is not None and cached[0] == result.frame.seq:
            return cached[1]
        data = encode_jpeg(draw_faces(result.frame.image, result.faces), self.quality)
        self._encoded[camera_id] = (result.frame.seq, data)
        return data

    def snapshot(self, camera_id: str, track_id: int) -> bytes | None:
        shots = self._snapshots.get(camera_id)
        crop = shots.get(track_id) if shots is not None else None
        return encode_jpeg(crop, self.quality) if crop is not None else None
