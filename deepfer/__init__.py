"""DeepFER: the ``deepfer`` command line (``deepfer.cli``; run it as ``deepfer`` or ``python -m deepfer``) and the
Python API (``deepfer.api``): ``from deepfer import analyze, analyze_video``."""

from importlib.metadata import PackageNotFoundError, version

from deepfer.api import Face, ImageResult, VideoFrame, VideoResult, analyze, analyze_video

try:
    __version__ = version("deepfer")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["Face", "ImageResult", "VideoFrame", "VideoResult", "__version__", "analyze", "analyze_video"]
