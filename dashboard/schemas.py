"""Response shapes, for the OpenAPI documentation (and checked by FastAPI on every answer).

Where an answer carries a domain value it is that value's own type (``FaceBox``, ``Person``, ``SeriesPoint``,
``CameraStats``), never a hand-made copy of it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from aggregator.timeseries import Person, SeriesPoint
from aggregator.visits import Visit
from deepfer_core.types import FaceBox
from streamer.pipeline import CameraStats
from streamer.runtime.camera_store import CameraOptions

Probabilities = dict[str, float]


class Problem(BaseModel):
    detail: str = Field(description="Why the request was refused, in one sentence.")


class Health(BaseModel):
    status: str = Field(description="ok, or degraded (see reason): Redis does not answer, or refuses writes.")
    reason: str | None = Field(None, description="Why the status is degraded, one line; null when ok.")
    redis: bool = Field(description="Redis answers a PING.")
    redis_writer: dict | None = Field(None, description="The pipeline's Redis writer: connected, points buffered / "
                                                        "written / dropped, write_errors, refusing (the reason while "
                                                        "Redis refuses writes), last_error, last_error_at.")
    cameras: int
    webrtc_sessions: int = Field(0, description="WebRTC visitors connected now.")
    uptime_s: float
    mode: str = Field("local", description="local (this process analyses every camera) or cluster (Ray workers, "
                                           "cluster.address).")
    workers: list[dict] = Field([], description="Cluster mode: each worker's name, node id and IP, state, cameras, "
                                                "room, Redis writer counters.")


class PredictedFace(BaseModel):
    box: FaceBox = Field(description="Pixels of the uploaded image (after its EXIF rotation).")
    emotion: str = Field(description="One of the 7 emotions, or 'uncertain' for a face too small or unsure to read.")
    confidence: float
    confident: bool = Field(True, description="False when the emotion is 'uncertain' ([confidence] settings).")
    probabilities: Probabilities = Field(description="The 7 emotions, summing to 1.")


class Prediction(BaseModel):
    width: int
    height: int
    model: str
    faces: list[PredictedFace] = Field(description="Largest first; empty when no face was found.")



class ExplainedFace(BaseModel):
    box: FaceBox = Field(description="Pixels of the uploaded image (after its EXIF rotation).")
    emotion: str = Field(description="The predicted emotion.")
    probabilities: Probabilities = Field(description="The 7 emotions, summing to 1.")
    explained: str = Field(description="The emotion the heat map shows the reasons for (the asked class, else the "
                                       "predicted one).")
    explained_probability: float
    picture: str = Field(description="data:image/png;base64 URL: the face as the model saw it (the square crop, in "
                                     "colour, explain.size px) with the Grad-CAM heat map over it (red: most "
                                     "responsible) and the label.")


class Explanation(BaseModel):
    width: int
    height: int
    model: str
    faces: list[ExplainedFace] = Field(description="Largest first; empty when no face was found.")
    message: str | None = Field(None, description="Set when no face was found.")

class Camera(BaseModel):
    id: str
    kind: str = Field(description="file, rtsp, webcam, or webrtc (a visitor of /demo, shown while connected).")
    url: str = Field(description="Credentials redacted.")
    options: CameraOptions
    paused: bool
    status: str = Field(description="starting, connecting, connected, reconnecting, paused, ended, failed or stopped; "
                                    "in cluster mode also waiting (for a worker with room).")
    error: str | None
    stats: CameraStats | None = Field(description="Pipeline counters: frames read/processed/dropped, fps, latency "
                                                  "p50/p95 ms ...")
    webrtc_session: str | None = Field(None, description="For WebRTC visitors: the session id (DELETE "
                                                         "/api/webrtc/sessions/{id} ends it).")
    worker: str | None = Field(None, description="Cluster mode: the worker analysing it (null in single-process mode "
                                                 "or while waiting).")
    node: str | None = Field(None, description="Cluster mode: the Ray node id of that worker.")


class PeopleNow(BaseModel):
    camera_id: str
    within_s: float
    people: list[Person]


class PeopleInRange(BaseModel):
    camera_id: str
    start: float
    end: float
    people: list[Person]


class Visits(BaseModel):
    camera: str | None = Field(description="The camera asked for; null: every camera.")
    since: float
    until: float
    limit: int
    truncated: bool = Field(description="True when limit cut the answer (more visits are in the range).")
    visits: list[Visit] = Field(description="Newest (latest first_seen) first.")


class Series(BaseModel):
    camera_id: str
    person_id: str
    truncated: bool = Field(description="True when dashboard.max_series_points cut the answer.")
    points: list[SeriesPoint]


class Bucket(BaseModel):
    start: float
    interval_s: int
    points: int
    emotion_points: dict[str, int]
    emotion_mix: Probabilities = Field(description="Share of points per shown emotion.")
    unique_people: int
    dwell_s: float = Field(description="Person-seconds in view.")
    mean_dwell_s: float
    satisfaction: float | None = Field(description="-1..1; null without points. See satisfaction_definition.")
    confident_share: float | None = Field(None, description="Share of points with a confident emotion (the rest "
                                                            "were 'uncertain': too small or unsure faces).")


class Totals(BaseModel):
    points: int
    emotion_points: dict[str, int]
    emotion_mix: Probabilities
    unique_people: int
    dwell_s: float
    mean_dwell_s: float
    satisfaction: float | None
    confident_share: float | None = None


SUMMARY = ("The metrics in plain words (aggregator.summary): the last dashboard.summary_window_s before end, e.g. "
           "'Door, last 10 minutes: mostly neutral, 62% of readings; satisfaction +0.31, up from +0.12 in the 10 "
           "minutes before; 3 people now; 2 of 9 visitors too far away or unclear to read.'")


class CameraMetrics(BaseModel):
    camera_id: str
    interval: str
    start: float
    end: float
    buckets: list[Bucket]
    totals: Totals
    summary: str | None = Field(None, description=SUMMARY)
    summary_window_s: float | None = Field(None, description="The window the summary tells, seconds.")


class BucketsAndTotals(BaseModel):
    buckets: list[Bucket]
    totals: Totals
    summary: str | None = Field(None, description=SUMMARY)


class AllMetrics(BaseModel):
    interval: str
    start: float
    end: float
    satisfaction_definition: str
    cameras: dict[str, BucketsAndTotals]
    overall: BucketsAndTotals
    summary_window_s: float | None = Field(None, description="The window the summaries tell, seconds.")


class WebRtcOffer(BaseModel):
    """The browser's ``pc.localDescription`` after ICE gathering (aiortc does not trickle candidates)."""

    sdp: str = Field(..., min_length=1, max_length=200_000)
    type: str = Field(..., description="Must be 'offer'.")


class WebRtcAnswer(BaseModel):
    sdp: str
    type: str
    session_id: str = Field(description="DELETE /api/webrtc/sessions/{session_id} ends it.")
    camera_id: str = Field(description="The visitor's camera id in the dashboard, people and metrics while connected.")


class IceServer(BaseModel):
    urls: str
    username: str | None = None
    credential: str | None = None


class WebRtcConfig(BaseModel):
    ice_servers: list[IceServer] = Field(description="Pass to RTCPeerConnection({iceServers}).")
    max_sessions: int
    sessions: int

