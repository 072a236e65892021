"""Video files as a frame source: every frame in order, or paced like a camera."""

from __future__ import annotations

import time

from deepfer_core.settings import SourceSettings
from streamer.media import MediaError, limit_options, local_path, probe_video, video_pictures
from streamer.source_base import VideoSource
from streamer.source_url import SourceError


class FileSource(VideoSource):
    """Any container PyAV reads. Every frame, in order; ``file_rate='realtime'`` paces them at the file's own fps.

    ``live=True`` plays the file like a camera (paced, newest wins, drops counted): the pipeline benchmark uses it.
    """

    kind = "file"

    def __init__(self, uri: str, camera_id: str | None, settings: SourceSettings, queue_size: int, live: bool = False):
        self.live = live
        super().__init__(uri, camera_id, settings, queue_size)
        self.path = str(local_path(uri))
        try:
            info = probe_video(self.path, settings.max_frame_pixels)
        except MediaError as exc:
            raise SourceError(str(exc)) from None
        self.fps, self.size = info.fps, info.size
        self.frames_total = None if live else info.frames  # for a progress bar; a looped live file never ends
        self.pace = live or settings.file_rate == "realtime"

    def _produce(self) -> None:
        import av

        self.status = "connecting"
        s = self.settings
        with av.open(self.path, options=limit_options(s.max_frame_pixels)) as container:
            self.status = "connected"
            start = time.time()
            mono = time.monotonic()
            first: float | None = None
            for image, pts in video_pictures(container, self._count_cpu, s.max_frame_pixels, s.working_pixels,
                                             s.decode_threads):
                if pts is None and self.fps:
                    pts = self._seq / self.fps
                if first is None:  # the size analysed: upright (display matrix), after sources.working_pixels
                    self.size = (image.width, image.height)
                first = pts if first is None else first
                offset = (pts - first) if pts is not None and first is not None else 0.0
                if self.pace and self._stop.wait(max(0.0, mono + offset - time.monotonic())):
                    return
                captured = time.time() if self.live else start + offset
                if not self._emit(image, pts, captured):
                    return
        self.status = "ended"
