"""DeepFER settings: one validated object built once at start-up.

Precedence, highest first: CLI flags, ``DEEPFER_*`` environment variables
(nested keys with ``__``, e.g. ``DEEPFER_REDIS__URL``), the TOML file
(``--config``, ``DEEPFER_CONFIG`` or ``./config.toml``), then the defaults below.
The defaults are the embedded configuration: DeepFER runs with no file at all.
``config.toml`` at the repository root lists every key with these defaults.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# Refused camera networks by default: where a camera never is, and where SSRF finds cloud credentials.
DENIED_NETWORKS = (
    "169.254.0.0/16",  # IPv4 link-local: AWS, GCP, Azure, OpenStack, DigitalOcean metadata at 169.254.169.254
    "fe80::/10",  # IPv6 link-local
    "fd00:ec2::254/128",  # AWS instance metadata over IPv6
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "0.0.0.0/8",  # 'this host': connecting to 0.0.0.0 reaches the machine itself
    "::/128",  # the IPv6 unspecified address, likewise
)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PathsSettings(Section):
    data_dir: Path = Field(Path(".deepfer"), description="Cache, embedded Redis and journals live here.")


class ClassifierSettings(Section):
    weights: str = Field("deepfer_resnet", description="A name in classifier/weights/, a path to a .pt checkpoint, or "
                                                       "a .onnx export (run by ONNX Runtime).")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(64, ge=1, description="Most faces classified in one model call.")
    max_wait_ms: float = Field(10.0, ge=0, description="Longest a face waits for its batch to fill.")
    crop_margin: float = Field(0.2, ge=0, le=1, description="Box growth on each side before cropping, as in training.")
    tta: bool = Field(False, description="Average with the mirrored face (twice the compute).")
    onnx_threads: int = Field(0, ge=0, description="ONNX Runtime threads for a .onnx classifier (0: its default, one "
                                                   "per core).")


class DetectorSettings(Section):
    kind: Literal["mtcnn", "haar"] = "mtcnn"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    min_face_size: int = Field(40, ge=8, description="Smallest face in pixels of the original frame.")
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    min_confidence: float = Field(0.9, ge=0, le=1, description="Faces scored below this are dropped.")
    max_side: int = Field(640, ge=64, description="Frames whose long side exceeds this are downscaled for detection.")
    detect_every: int = Field(3, ge=1, description="Run the detector on every k-th frame; boxes are carried between (3 "
                                                   "keeps one 596x336 stream at 30 fps on 2 CPU cores).")
    batch_size: int = Field(8, ge=1, description="Frames per detector call, across all cameras.")
    haar_scale_factor: float = Field(1.1, gt=1)
    haar_min_neighbors: int = Field(5, ge=1)
    mtcnn_scale_factor: float = Field(0.709, gt=0, lt=1, description="MTCNN image pyramid step; lower is faster but "
                                                                     "misses more sizes.")
    threads: int = Field(0, ge=0, description="CPU threads for torch when detecting on CPU (0: torch's default, one "
                                              "per core).")
    mtcnn_batched: bool = Field(False, description="MTCNN post-processing as whole-batch tensor ops (roi_align, "
                                                   "batched NMS): meant for GPUs; same on CPU.")


class GatingSettings(Section):
    """Detect only where and when it is needed: motion gating and track-guided refinement (see README, Performance).

    On each frame the detector would look at (every ``detector.detect_every``-th), a small grey copy is compared with
    the last frame the detector ran on. Nothing moved: no detection, boxes and emotions are carried. Motion only on
    or around known faces: R-Net and O-Net refine each face's box (a few 24/48 px crops, no image pyramid). Motion
    elsewhere, in regions: the whole MTCNN runs on those regions only. Most of the frame moved, or ``full_every_s``
    passed: a full detection.
    """

    enabled: bool = Field(True, description="Motion gating and refinement on (off: the detector runs on every "
                                            "detector.detect_every-th frame, whole).")
    grey_width: int = Field(160, ge=16, description="Width of the grey copy that is differenced, in pixels.")
    pixel_threshold: int = Field(18, ge=1, le=255, description="Grey-level change (of 255) a pixel of the grey copy "
                                                               "must exceed to count as motion; codec noise stays "
                                                               "below.")
    dilate: int = Field(2, ge=0, description="Dilations (3x3) joining nearby changed pixels into one region.")
    min_region_px: int = Field(4, ge=1, description="Changed regions smaller than this (grey-copy pixels) are noise.")
    full_above: float = Field(0.3, gt=0, le=1, description="Motion regions covering more than this fraction of the "
                                                           "frame: detect the whole frame.")
    full_every_s: float = Field(2.0, gt=0, description="A full detection at least this often (seconds of stream "
                                                       "time), so a still or missed face is found again; while "
                                                       "nothing moved since the last one, every still_full_every_s.")
    still_full_every_s: float = Field(10.0, gt=0, description="A full detection at least this often while nothing "
                                                             "moved since the last one (it would find the same faces): "
                                                             "a guard against changes too faint for the gate.")
    full_min_interval_s: float = Field(0.5, ge=0, description="While more than full_above of the frame moves away "
                                                              "from known faces (a moving camera, a crowd), a full "
                                                              "detection at most this often; known faces are refined "
                                                              "in between.")
    region_pad: float = Field(0.25, ge=0, description="A motion region grows by this fraction of its size on each "
                                                      "side (at least detector.min_face_size pixels) before MTCNN "
                                                      "runs on it.")
    full_beside_live: bool = Field(True, description="On a live camera that knows faces, a full detection runs beside "
                                                     "the stream: the frame it was planned on gets its known faces "
                                                     "refined at once, new faces it finds join from the next detected "
                                                     "frame (files, and cameras knowing no face, wait for it).")
    refine: bool = Field(True, description="Refresh known faces with R-Net + O-Net on their predicted boxes instead "
                                           "of a full pass (off: motion on faces runs a full detection).")
    classify_still: bool = Field(False, description="Classify the faces again on frames where nothing moved (off: "
                                                    "their emotions are those of the last detected frame, whose "
                                                    "pixels they share).")
    track_margin: float = Field(1.0, ge=0, description="Motion inside a known face's box grown by this many box "
                                                       "sizes on each side is that face's own (head, shoulders): "
                                                       "refinement covers it.")


class TrainSettings(Section):
    model: str = "deepfer_resnet"
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    schedule: Literal["cosine", "plateau"] = "cosine"
    warmup_epochs: int = Field(2, ge=0)
    class_balance: Literal["none", "weights", "sampler"] = "none"
    mixup_alpha: float = Field(0.0, ge=0, description="0 disables mixup.")
    random_erasing: float = Field(0.25, ge=0, le=1, description="Probability of erasing a patch per image.")
    val_fraction: float = Field(0.0, ge=0, lt=1, description="Held out of --data when no --val is given.")
    patience: int = Field(15, ge=1, description="Early stopping: epochs without a better validation accuracy.")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(0, ge=0, description="CPU threads for torch (0: all cores).")
    compile: bool = Field(
        False, description="torch.compile the training step: deepfer_resnet trains about 25% faster on a 2-core CPU "
                           "after a one-minute compile."
    )


class ExportModelSettings(Section):
    """``deepfer export-model --int8``: static quantization with ONNX Runtime's tools."""

    calibration_faces: int = Field(350, ge=7, description="Training faces (an equal share per class) that calibrate "
                                                          "the int8 activation ranges.")
    calibration_seed: int = Field(0, description="Which training faces are drawn for calibration.")
    quant_format: Literal["qdq", "qoperator"] = Field("qdq", description="QDQ (quantize/dequantize pairs ONNX Runtime "
                                                                         "fuses) or QOperator (QLinearConv etc.).")
    per_channel: bool = Field(True, description="One weight scale per output channel instead of per tensor.")
    reduce_range: bool = Field(True, description="7-bit weights: avoids the overflow of AVX2's u8 x s8 multiply-add on "
                                                 "CPUs without VNNI.")


class ExportSettings(Section):
    """``deepfer export`` / ``deepfer report`` and their HTTP routes: stored points and roll-ups out as files."""

    chunk_points: int = Field(10000, ge=100, le=1_000_000, description="Stream entries read per XRANGE ... COUNT, and "
                                                                       "rows per chunk written (CSV/JSONL) or parquet "
                                                                       "row group: peak memory grows with it.")
    default_format: Literal["csv", "parquet", "jsonl"] = Field("csv", description="Format when none is asked.")
    default_range_s: float = Field(86400.0, gt=0, description="Range of an export or report when none is given "
                                                              "(ending now).")
    max_range_s: float = Field(31 * 86400.0, gt=0, description="Longest time range one HTTP export or report may "
                                                               "ask (400 beyond); the CLI has no limit.")
    max_people: int = Field(100_000, ge=1, description="Most people one export or report reads (people are listed "
                                                      "before their points are streamed); more: an error asking for "
                                                      "a shorter range.")


class ExplainSettings(Section):
    """``deepfer explain`` and ``POST /api/explain``: Grad-CAM heat maps drawn on each face."""

    size: int = Field(192, ge=48, le=1024, description="Side of each face picture written or returned, in pixels.")
    alpha: float = Field(0.45, ge=0, le=1, description="Weight of the heat map over the face (0: the face alone).")
    colourmap: Literal["jet", "turbo", "inferno", "viridis"] = Field("jet", description="Colours of the heat map "
                                                                      "(red/yellow: most responsible).")
    min_map_size: int = Field(6, ge=1, le=48, description="The explained layer is the model's last whose maps are at "
                                                          "least this wide (48 px faces: 6 points at eyes and mouth, "
                                                          "3 is too coarse).")

class SourceSettings(Section):
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(5.0, gt=0)
    stall_timeout_s: float = Field(20.0, gt=0, description="A live stream with no frame for this long is restarted.")
    reconnect_initial_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    reconnect_jitter: float = Field(0.5, ge=0, le=1, description="Each reconnect delay is cut by a random part up to "
                                                                 "this fraction.")
    file_rate: Literal["asap", "realtime"] = Field("asap", description="File sources: as fast as processed, or at "
                                                                       "their own fps.")
    webcam_fps: float = Field(0.0, ge=0, description="Frame rate asked of webcams (0: the camera's default).")
    allowed_networks: list[str] = Field(
        default_factory=list, description="Camera addresses (after DNS, when added and at every reconnect) must be in "
                                          "one of these CIDRs; empty: any address not denied.")
    denied_networks: list[str] = Field(
        default_factory=lambda: list(DENIED_NETWORKS),
        description="Camera addresses in these CIDRs are refused: link-local (where cloud metadata services live), "
                    "AWS's IPv6 and Alibaba's metadata addresses, and 'this host' (0.0.0.0 connects to the machine "
                    "itself). The Redis DeepFER uses is always refused.")
    media_dirs: list[Path] = Field(
        default_factory=list, description="Folders whose video files may be added as cameras through the dashboard API "
                                          "(empty: none). deepfer run reads any file.")
    rtsps_ca_file: str = Field(
        "", description="PEM CA bundle: rtsps:// camera certificates are verified (chain and host name) against it. "
                        "Empty: not verified (FFmpeg's default; cameras have self-signed certificates).")

    @field_validator("allowed_networks", "denied_networks")
    @classmethod
    def _cidrs(cls, values: list[str]) -> list[str]:
        out = []
        for v in values:
            try:
                out.append(str(ipaddress.ip_network(v.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"not a network in CIDR form (like 10.0.0.0/8 or fd00::/8): {v!r}") from None
        return out

    @field_validator("rtsps_ca_file")
    @classmethod
    def _ca_file(cls, value: str) -> str:
        if value and not Path(value).is_file():
            raise ValueError(f"file not found: {value}")
        return value


class PipelineSettings(Section):
    live_queue_size: int = Field(1, ge=1, description="Frames kept per live source when behind (newest wins).")
    file_queue_size: int = Field(8, ge=1, description="Frames buffered per file source (no drops).")
    max_in_flight: int = Field(4, ge=1, description="Frames per camera being detected/classified at once (lets one "
                                                    "camera fill a batch).")
    detect_max_wait_ms: float = Field(5.0, ge=0, description="Longest a frame waits for the detector batch to fill.")
    classify_carried: bool = Field(True, description="Classify the carried boxes' crops on frames without detection "
                                                     "(else reuse the last probabilities).")
    stats_window_s: float = Field(5.0, gt=0, description="Window of the recent-fps figure in stats.")
    latency_samples: int = Field(2048, ge=16, description="Recent latencies kept per camera for p50/p95.")
    log_every_s: float = Field(10.0, ge=0, description="deepfer run logs per-camera stats this often (0: never).")
    summary_max_frames: int = Field(20000, ge=0, description="Per-frame results kept per camera in --summary-json "
                                                             "(per-track totals are always complete).")
    video_codec: str = Field("libx264", description="Encoder of the annotated video.")
    video_preset: str = Field("veryfast", description="Encoder speed preset (libx264).")
    video_crf: int = Field(23, ge=0, le=51, description="Encoder quality (lower is better, bigger).")
    output_queue: int = Field(16, ge=1, description="Frames waiting for the video encoder before the pipeline waits "
                                                    "(never dropped).")
    stop_timeout_s: float = Field(15.0, gt=0,
                                  description="Longest a clean stop waits for in-flight frames and outputs.")


class TrackerSettings(Section):
    iou_threshold: float = Field(
        0.3, gt=0, lt=1, description="Least IoU between a track's predicted box and a detection to match."
    )
    min_hits: int = Field(3, ge=1, description="Consecutive detections before a track is born and gets an id.")
    max_age_s: float = Field(1.5, gt=0, description="A track unseen this long dies; a face seen later gets a new id.")
    use_kalman: bool = Field(True, description="Predict boxes with a constant-velocity Kalman filter (else: last box).")
    process_noise: float = Field(
        2.0, gt=0, description="Kalman: face acceleration spread, in face heights per second squared."
    )
    measurement_noise: float = Field(
        0.05, gt=0, description="Kalman: detector box jitter, as a fraction of the face height."
    )


class SmoothingSettings(Section):
    half_life_s: float = Field(2.0, gt=0, description="EMA half-life of the emotion probabilities, in seconds. 2 s "
                                                      "with switch_margin 0.05: no label change on woman2.mp4 (0.5 s: "
                                                      "15.7 a minute), and a held change of expression shows after "
                                                      "2.3 s (deepfer bench tracking, README).")
    switch_margin: float = Field(0.05, ge=0, lt=1, description="A new label must beat the shown one by this much.")


class RedisSettings(Section):
    url: str = Field(
        "", repr=False, description="Empty: use default_url if it answers, else start an embedded redis-server."
    )
    default_url: str = Field("redis://127.0.0.1:6379", repr=False, description="Tried when url is empty.")
    embedded: bool = Field(True, description="Start redis-server under paths.data_dir when no Redis answers.")
    retention_days: float = Field(7.0, gt=0, description="Points, people and roll-ups older than this are removed.")
    points_per_s: float = Field(
        5.0, ge=0, description="Most points written per person per second; 0: every processed frame."
    )
    buffer_max: int = Field(
        10000, ge=1, description="Points kept in memory while Redis is down before spilling to disk."
    )
    batch_size: int = Field(500, ge=1, description="Points per Redis transaction.")
    connect_timeout_s: float = Field(1.0, gt=0, description="Connect and command timeout; slower counts as Redis down.")
    retry_max_s: float = Field(5.0, gt=0, description="Longest wait between reconnection attempts.")
    close_timeout_s: float = Field(
        5.0, ge=0, description="On exit, longest wait for Redis; the rest stays in the journal."
    )
    events: bool = Field(
        True, description="Publish every frame's faces on the live channel {key_prefix}:events:{camera}."
    )
    key_prefix: str = Field(
        "deepfer", min_length=1, description="Start of every key, to share one Redis between setups."
    )


MIN_TOKEN_LENGTH = 16


class DashboardSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    token: str = Field(
        "",
        description="API token, at least 16 characters; required when host is not loopback. Prefer "
        "DEEPFER_DASHBOARD__TOKEN to a flag or this file (flags show in ps).",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names answered besides localhost, "
        "127.0.0.1, ::1 and host (every address of the "
        "machine when host is 0.0.0.0 or ::); "
        "'*.example.com' takes its subdomains, '*' any "
        "name (no DNS-rebinding protection). Others get "
        "400.",
    )
    max_upload_mb: float = Field(
        10.0, gt=0, description="Largest /api/predict or /api/explain upload, counted on the bytes received "
                                "(chunked too)."
    )
    max_json_kb: int = Field(
        64,
        ge=1,
        description="Largest request body on every other route (JSON, the sign-in "
        "form), counted on the bytes received.",
    )
    snapshots: bool = Field(False, description="Keep face images; off by default for privacy.")
    max_image_pixels: int = Field(
        16_000_000,
        ge=1,
        description="Uploads with more pixels are refused from their "
        "header (413) before decoding: 16 MP takes 12 MP "
        "photos and 4K frames, and one decode peaks near 11 "
        "bytes a pixel (about 175 MB).",
    )
    predict_workers: int = Field(2, ge=1, description="Uploads decoded and analysed at once.")
    predict_queue: int = Field(4, ge=0, description="Uploads waiting for a worker; more get 503 with Retry-After.")
    login_max_failures: int = Field(
        5,
        ge=1,
        description="Failed sign-ins per client address within login_window_s; "
        "then /login answers 429 with Retry-After.",
    )
    login_window_s: float = Field(300.0, gt=0, description="Window over which failed sign-ins are counted.")
    hsts_max_age_s: int = Field(
        31_536_000, ge=0, description="Strict-Transport-Security max-age sent over HTTPS (0: not sent)."
    )
    present_window_s: float = Field(5.0, gt=0, description="A person seen within this many seconds is 'in view now'.")
    max_series_points: int = Field(5000, ge=1, description="Most points one person's time series answer holds.")
    max_people: int = Field(500, ge=1, description="Most people one people answer holds (most recent first).")
    max_cameras: int = Field(
        0,
        ge=0,
        description="Most cameras configured at once (each is a decode thread); 0: 4 per "
        "CPU core this process may use.",
    )
    default_range_s: float = Field(
        3600.0, gt=0, description="Time range of people and metrics answers when none is given."
    )
    preview_fps: float = Field(5.0, gt=0, description="Frames per second of the live MJPEG preview.")
    preview_jpeg_quality: int = Field(75, ge=10, le=95, description="JPEG quality of previews.")
    live_max_per_s: float = Field(4.0, gt=0, description="Most live (SSE) events sent per camera per second.")
    sse_keepalive_s: float = Field(15.0, gt=0, description="A comment line is sent this often on idle event streams.")
    sse_stats_every_s: float = Field(
        2.0, gt=0, description="Camera status and counters are sent on the event stream this often."
    )
    snapshot_max_people: int = Field(
        200, ge=1, description="Face snapshots kept in memory per camera (cameras with snapshots on)."
    )
    cookie_max_age_s: int = Field(7 * 86400, ge=60, description="Lifetime of the login cookie.")
    tls_cert: str = Field(
        "", description="PEM certificate: serve HTTPS (browsers allow the camera only over HTTPS or on localhost)."
    )
    tls_key: str = Field("", description="PEM private key of tls_cert.")

    @field_validator("token")
    @classmethod
    def _token_length(cls, token: str) -> str:
        """A short token can be guessed; the message names the rule, never the value."""
        if token and len(token) < MIN_TOKEN_LENGTH:
            raise PydanticCustomError(
                "token_too_short",
                "must be at least {n} characters (make one with: python -c "
                "'import secrets; print(secrets.token_urlsafe(24))')",
                {"n": MIN_TOKEN_LENGTH},
            )
        return token

    @model_validator(mode="after")
    def _tls_pair(self) -> DashboardSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("dashboard.tls_cert and dashboard.tls_key go together: set both or neither")
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ValueError(f"dashboard.{name} file not found: {path}")
        return self


class WebRtcSettings(Section):
    ice_servers: list[str] = Field(
        default_factory=list,
        description="STUN/TURN URLs for visitors behind NAT (empty: host candidates only, enough on a LAN).",
    )
    ice_username: str = Field(
        "", repr=False, description="TURN user name (sent to the browser with ice_servers, never logged)."
    )
    ice_credential: str = Field(
        "", repr=False, description="TURN password (sent to the browser with ice_servers, never logged)."
    )
    max_sessions: int = Field(4, ge=1, description="Most WebRTC visitors at once; more get 429.")
    max_in_flight: int = Field(
        1,
        ge=1,
        description="A visitor's frames analysed at once (pipeline.max_in_flight for "
        "cameras): 1 gives the lowest delay.",
    )
    batch_wait_ms: float = Field(
        0.0,
        ge=0,
        description="Longest a visitor's frame waits for a detector/classifier "
        "batch to fill (cameras: pipeline.detect_max_wait_ms, "
        "classifier.max_wait_ms); 0: start at once with what is queued.",
    )
    connect_timeout_s: float = Field(
        20.0, gt=0, description="A session whose peer has not connected by then is closed."
    )
    disconnect_grace_s: float = Field(
        5.0, ge=0, description="A peer gone 'disconnected' this long is closed (it may come back before)."
    )
    camera_prefix: str = Field(
        "webrtc", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,40}$", description="Camera id of a session: <prefix>-<8 hex>."
    )
    max_channel_buffer_kb: int = Field(
        256, ge=1, description="Per-face messages are skipped while the data channel holds more than this."
    )
    latency_samples: int = Field(2048, ge=16, description="Recent arrival-to-send delays kept per session for p50/p95.")


class ClusterSettings(Section):
    address: str = Field("", description="Ray cluster to run cameras on (what ray.init takes: 'auto' or the head's "
                                         "HOST:PORT); empty: this process analyses every camera.")
    num_cpus: float = Field(1.0, ge=0, description="CPUs a worker reserves on its node (also its torch threads, at "
                                                   "least 1).")
    num_gpus: float = Field(0.0, ge=0, description="GPUs a worker reserves (1: one worker per GPU; 0: CPU workers).")
    max_workers_per_node: int = Field(1, ge=0, description="Workers per node at most (0: as many as the node's "
                                                           "CPUs/GPUs allow for num_cpus/num_gpus).")
    cameras_per_worker: int = Field(4, ge=1, description="Cameras one worker analyses at most; a camera goes to the "
                                                         "worker with the most room.")
    replace_after_s: float = Field(30.0, gt=0, description="A worker that has not answered for this long is given up "
                                                           "and its cameras placed on others (one Ray reports dead: at "
                                                           "once).")
    poll_s: float = Field(2.0, gt=0, description="How often the dashboard checks workers and nodes, and refreshes "
                                                 "camera stats.")
    call_timeout_s: float = Field(30.0, gt=0, description="Longest wait for a worker to add, remove or pause a camera.")
    worker_start_timeout_s: float = Field(180.0, gt=0, description="Longest a new worker may take to start (load its "
                                                                   "models); then it is given up.")
    preview_ttl_s: float = Field(3.0, gt=0, description="Workers put a camera's annotated JPEG in Redis only while "
                                 "someone watched it within this time; the key expires after it.")


class Settings(BaseSettings):
    """The whole configuration. Unknown keys are errors, so typos fail at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="DEEPFER_",
        env_nested_delimiter="__",
        extra="forbid",
        nested_model_default_partial_update=True,
        hide_input_in_errors=True,  # a refused value may be a secret (a short token, a Redis URL with its password)
    )

    paths: PathsSettings = PathsSettings()
    classifier: ClassifierSettings = ClassifierSettings()
    detector: DetectorSettings = DetectorSettings()
    gating: GatingSettings = GatingSettings()
    train: TrainSettings = TrainSettings()
    export_model: ExportModelSettings = ExportModelSettings()
    export: ExportSettings = ExportSettings()
    explain: ExplainSettings = ExplainSettings()
    sources: SourceSettings = SourceSettings()
    pipeline: PipelineSettings = PipelineSettings()
    tracker: TrackerSettings = TrackerSettings()
    smoothing: SmoothingSettings = SmoothingSettings()
    redis: RedisSettings = RedisSettings()
    dashboard: DashboardSettings = DashboardSettings()
    webrtc: WebRtcSettings = WebRtcSettings()
    cluster: ClusterSettings = ClusterSettings()

    @model_validator(mode="after")
    def _token_required_off_loopback(self) -> Settings:
        if self.dashboard.host not in {"127.0.0.1", "localhost", "::1"} and not self.dashboard.token:
            raise ValueError("dashboard.token must be set when dashboard.host is not loopback")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = _CONFIG_FILE.get("path")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)


_CONFIG_FILE: dict[str, Path | None] = {"path": None}


def secret_values(settings: Settings) -> list[str]:
    """The secrets in ``settings`` that no log line may show: Redis passwords, TURN credentials, the API token."""
    from urllib.parse import unquote, urlsplit

    out = [settings.webrtc.ice_username, settings.webrtc.ice_credential, settings.dashboard.token]
    for url in (settings.redis.url, settings.redis.default_url):
        try:
            parts = urlsplit(url)
            out += [unquote(parts.password or ""), parts.password or ""]
        except ValueError:
            continue
    return [s for s in out if s]


def max_cameras(settings: DashboardSettings) -> int:
    """``dashboard.max_cameras``, or 4 per CPU core available to this process when it is 0."""
    if settings.max_cameras:
        return settings.max_cameras
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return 4 * max(1, cores)


class ConfigError(ValueError):
    """Raised with a one-line, user-facing reason."""


def resolve_config_path(path: Path | None = None) -> Path | None:
    """The file to read: explicit, then ``DEEPFER_CONFIG``, then ``./config.toml`` when present."""
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    env = os.environ.get("DEEPFER_CONFIG")
    if env:
        p = Path(env)
        if not p.is_file():
            raise ConfigError(f"DEEPFER_CONFIG points to a missing file: {p}")
        return p
    local = Path("config.toml")
    return local if local.is_file() else None


def load_settings(path: Path | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> Settings:
    """Build and validate the settings once; ``overrides`` are CLI flags as ``{section: {key: value}}``."""
    import tomllib

    from pydantic import ValidationError

    config_path = resolve_config_path(path)
    _CONFIG_FILE["path"] = config_path
    clean = {s: {k: v for k, v in kv.items() if v is not None} for s, kv in (overrides or {}).items()}
    clean = {s: kv for s, kv in clean.items() if kv}
    try:
        return Settings(**clean)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        origin = f" (from {config_path})" if config_path else ""
        what = f"invalid setting {where}" if where else "invalid settings"
        raise ConfigError(f"{what}: {first['msg']}{origin}") from None
    finally:
        _CONFIG_FILE["path"] = None
