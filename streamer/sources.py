"""Frame sources: video files, RTSP/RTSPS cameras and webcams, each decoded in its own thread.

``open_source`` picks the source for a URI. The sources live by concern: the hand-off buffer and the decode-thread
base in ``streamer.source_base``, files in ``streamer.file_source``, cameras and webcams (reconnecting, checked
against the network policy) in ``streamer.live_source``; they are re-exported here, so importers use this module.
"""

from __future__ import annotations

from deepfer_core.settings import PipelineSettings, SourceSettings
from streamer.file_source import FileSource
from streamer.live_source import CAMERA_UNREACHABLE, LiveSource, RtspSource, WebcamSource
from streamer.netpolicy import NetworkPolicy
from streamer.source_base import FrameBuffer, Status, VideoSource, default_camera_id
from streamer.source_url import SourceError, source_kind

__all__ = [
    "CAMERA_UNREACHABLE", "FileSource", "FrameBuffer", "LiveSource", "RtspSource", "SourceError", "Status",
    "VideoSource", "WebcamSource", "default_camera_id", "open_source",
]


def open_source(uri: str, camera_id: str | None, settings: SourceSettings, pipeline: PipelineSettings | None = None,
                live_file: bool = False, policy: NetworkPolicy | None = None,
                uniform_failures: bool = False) -> VideoSource:
    """The source for ``uri``. Files are probed and camera URLs checked now, so a bad one fails at once with a clear
    ``SourceError``.

    Buffer sizes come from ``pipeline`` (``file_queue_size``, ``live_queue_size``); ``live_file`` plays a file
    like a camera (paced, newest wins). ``policy`` (default: ``settings``' own) is checked before every connect of
    a network camera; ``uniform_failures``: see ``LiveSource`` (webcams are local: not needed).
    """
    pipeline = pipeline or PipelineSettings()
    kind = source_kind(uri)
    if kind == "file":
        size = pipeline.live_queue_size if live_file else pipeline.file_queue_size
        return FileSource(uri, camera_id, settings, size, live=live_file)
    if kind == "rtsp":
        return RtspSource(uri, camera_id, settings, pipeline.live_queue_size, policy, uniform_failures)
    return WebcamSource(uri, camera_id, settings, pipeline.live_queue_size)
