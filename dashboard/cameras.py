"""What a remote user may add as a camera: ``checked_source`` (network cameras checked and rebuilt, and resolved
against the network policy; video files only from ``sources.media_dirs``; webcams). The cameras themselves are kept
by ``streamer.runtime.camera_store``.
"""

from __future__ import annotations

import os

from deepfer_core.settings import SourceSettings
from streamer.netpolicy import NetworkPolicy
from streamer.source_url import SourceError, parse_camera_url, source_kind

# One answer for every file outside the media folders: existing or not, readable or not, a video or not.
MEDIA_ONLY = "video files can be added only from the server's media folders (sources.media_dirs)"


def media_file(path: str, media_dirs: list) -> str:
    """The real path of ``path`` (``..`` and symlinks resolved) when it lies inside one of ``media_dirs``; else
    ``SourceError(MEDIA_ONLY)``, the same whatever is (or is not) at that path."""
    p = path[7:] if path.startswith("file://") else path  # the text as given: Path("") would be "."
    if not p or any(ord(c) < 0x20 or c == "\x7f" for c in p):
        raise SourceError(MEDIA_ONLY)
    real = os.path.realpath(p)
    for folder in media_dirs:
        root = os.path.realpath(folder)
        if real.startswith(root.rstrip(os.sep) + os.sep):
            return real
    raise SourceError(MEDIA_ONLY)


def checked_source(url: str, sources: SourceSettings, policy: NetworkPolicy | None = None) -> str:
    """The form of ``url`` the dashboard stores and opens, or ``SourceError`` with a one-line reason.

    Network cameras: rebuilt from their checked parts and, with ``policy``, their host resolved and checked now
    (the source checks again before every connect). Files: their real path inside ``sources.media_dirs``.
    """
    kind = source_kind(url)
    if kind == "rtsp":
        camera = parse_camera_url(url)
        if policy is not None:
            policy.check(camera.host, camera.effective_port)
        return camera.url
    if kind == "file":
        return media_file(url, sources.media_dirs)
    return url
