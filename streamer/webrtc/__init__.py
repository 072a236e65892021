"""WebRTC visitors as cameras: a browser's webcam goes through the pipeline and comes back annotated.

One ``WebRtcSession`` per visitor: an aiortc peer connection whose incoming video is a ``WebRtcSource`` (a live
camera like any other: same detector, classifier, tracker and Redis writer), and whose outgoing video is an
``AnnotatedTrack`` fed with the tracked results, plus a data channel carrying each processed frame's faces as JSON.

Latency stays bounded: the source keeps only the newest received frame (the rest are counted as dropped), the
pipeline works in its own threads, and the annotated track again sends only the newest result. The delay measured
per session is from a frame's arrival (decoded by aiortc) to its annotated frame being handed to the encoder.

Modules by role: ``source`` (the visitor's camera as a pipeline source), ``track`` (the annotated video back),
``session`` (one visitor), ``gateway`` (signalling and lifecycle). ``WebRtcSessions`` is the pipeline sink that
routes results to their session, and owns the sessions' lifecycle:
a closed tab, a failed or long-disconnected connection, a peer that never connects, or ``end()`` frees the
session's camera, tracks, tasks and peer connection.
"""
