"""Settings of the pictures' path: camera sources, the pipeline, the face detector and motion gating."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from deepfer_core.settings.base import Section

# Refused camera networks by default: where a camera never is, and where SSRF finds cloud credentials.
DENIED_NETWORKS = (
    "169.254.0.0/16",  # IPv4 link-local: AWS, GCP, Azure, OpenStack, DigitalOcean metadata at 169.254.169.254
    "fe80::/10",  # IPv6 link-local
    "fd00:ec2::254/128",  # AWS instance metadata over IPv6
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "0.0.0.0/8",  # 'this host': connecting to 0.0.0.0 reaches the machine itself
    "::/128",  # the IPv6 unspecified address, likewise
)



class DetectorSettings(Section):
    kind: Literal["mtcnn", "haar", "yunet"] = "mtcnn"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    min_face_size: int = Field(40, ge=8, description="Smallest face in pixels of the original frame.")
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    min_confidence: float = Field(0.9, ge=0, le=1, description="Faces scored below this are dropped.")
    max_side: int = Field(640, ge=64, description="Frames whose long side exceeds this are downscaled for detection.")
    detect_every: int = Field(3, ge=1, description="Run the detector on every k-th frame; boxes are carried between (3 "
                                                   "keeps one 596x336 stream at 30 fps on 2 CPU cores).")
    detect_every_large: int = Field(1, ge=0, description="detect_every of cameras whose frames are larger than "
                                                          "max_side (1080p): walking faces of a crowd need fresh "
                                                          "boxes on every frame; with refine_between, 2 refines "
                                                          "the frames between instead of carrying (0: "
                                                          "detect_every).")
    refine_between: bool = Field(False, description="On cameras larger than max_side, the frames between two "
                                                     "detect_every_large looks get their known faces refined "
                                                     "(R-Net + O-Net on the last boxes at native resolution, a lost "
                                                     "face looked for around where it was) instead of carried; new "
                                                     "faces wait for the next look (needs gating.refine). With "
                                                     "detect_every_large = 2: 25-60% faster on a 1080p crowd file "
                                                     "at 1 point less recall, but lower recall on a live camera "
                                                     "that drops frames, so off by default.")
    batch_size: int = Field(8, ge=1, description="Frames per detector call, across all cameras.")
    haar_scale_factor: float = Field(1.1, gt=1)
    haar_min_neighbors: int = Field(5, ge=1)
    mtcnn_scale_factor: float = Field(0.709, gt=0, lt=1, description="MTCNN image pyramid step; lower is faster but "
                                                                     "misses more sizes.")
    threads: int = Field(0, ge=0, description="CPU threads for torch when detecting on CPU (0: torch's default, one "
                                              "per core).")
    mtcnn_batched: bool = Field(False, description="MTCNN as whole-batch tensor ops (exact area crops from a "
                                                   "summed-area table, batched NMS): meant for GPUs; stock's boxes "
                                                   "on CPU.")
    mtcnn_precision: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="With mtcnn_batched: the P/R/O-Nets under autocast in this type, on channels-last "
                               "inputs (GPU tensor cores). float16 kept stock's faces on CPU (mean IoU >= 0.94, "
                               "recall and precision 100% on the shared media and the crowd clip); bfloat16 did not "
                               "(crowd: mean IoU 0.92, precision 95%).")
    pinned_upload: bool = Field(True, description="MTCNN: each batch's frames stacked once into a reused host buffer "
                                                   "and sent to the device from it; on CUDA the buffer is pinned "
                                                   "and the copy non-blocking (off: a new array per batch, the "
                                                   "plain copy).")
    region_native: bool = Field(True, description="MTCNN on motion regions (gating) at the frame's own resolution, "
                                                   "down to region_min_face_size, not at max_side's scale: finds the "
                                                   "small faces of a 1080p crowd where they move.")
    region_min_face_size: int = Field(20, ge=8, description="Smallest face looked for in motion regions with "
                                                            "region_native (original pixels).")
    yunet_model: str = Field("", description="YuNet ONNX file for kind = \"yunet\" (not shipped: OpenCV model zoo's "
                                             "face_detection_yunet_2023mar.onnx); empty: not configured.")
    yunet_score_threshold: float = Field(0.6, ge=0, le=1, description="YuNet faces scored below this are dropped "
                                                                      "(its scores run lower than MTCNN's).")
    proposals: Literal["pnet", "yunet"] = Field(
        "pnet", description="kind = \"mtcnn\": where a full detection's candidate faces come from: P-Net's image "
                            "pyramid, or YuNet (detector.yunet_model, at yunet_proposal_max_side, scores from "
                            "yunet_proposal_threshold), each candidate then checked and moved by R-Net + O-Net on "
                            "the full-resolution frame.")
    region_proposals: Literal["pnet", "yunet", "yunet_else_pnet"] = Field(
        "pnet", description="With proposals = \"yunet\": the candidates in motion regions: P-Net (the whole MTCNN, "
                            "natively with region_native: finds the small faces YuNet misses where things move), "
                            "YuNet (at native resolution with region_native), or YuNet and then P-Net in the "
                            "regions where YuNet's leave no face; checked by R-Net + O-Net.")
    yunet_proposal_threshold: float = Field(0.1, ge=0, le=1, description="YuNet candidates scored below this are "
                                                                          "not proposed to R-Net + O-Net (low: "
                                                                          "they filter).")
    yunet_proposal_max_side: int = Field(0, ge=0, description="With proposals = \"yunet\": frames are shrunk to "
                                                              "this long side for YuNet's full-frame proposals (0: "
                                                              "max_side; 1920: a 1080p frame natively, its small "
                                                              "faces too, at several times the cost).")

    @model_validator(mode="after")
    def _yunet_needs_model(self) -> DetectorSettings:
        if self.kind == "yunet" and not self.yunet_model.strip():
            raise ValueError('detector.kind = "yunet" needs detector.yunet_model, the path of a YuNet ONNX file '
                             "(download face_detection_yunet_2023mar.onnx from the OpenCV model zoo)")
        if self.kind == "mtcnn" and self.proposals == "yunet" and not self.yunet_model.strip():
            raise ValueError('detector.proposals = "yunet" needs detector.yunet_model, the path of a YuNet ONNX file '
                             "(download face_detection_yunet_2023mar.onnx from the OpenCV model zoo)")
        return self


class GatingSettings(Section):
    """Detect only where and when it is needed: motion gating and track-guided refinement (see docs/performance.md).

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
    full_regions_above: float = Field(0.0, ge=0, le=1, description="With detector.region_native, a full detection "
                                                                   "also runs MTCNN natively on the motion regions "
                                                                   "while they cover at most this fraction of the "
                                                                   "frame (0: never).")
    full_beside_live: bool = Field(True, description="On a live camera that knows faces, a full detection runs beside "
                                                     "the stream: the frame it was planned on gets its known faces "
                                                     "refined at once, new faces it finds join from the next detected "
                                                     "frame (files, and cameras knowing no face, wait for it).")
    lost_search_s: float = Field(1.0, ge=0, description="A face the detector lost (a blink, a turn, motion blur) is "
                                                        "looked for again where it was, for this many seconds of "
                                                        "stream time, even if nothing moved, on every frame the "
                                                        "detector sees at most every discover_every_s (0: only on "
                                                        "the frame it was lost).")
    discover_every_s: float = Field(0.12, ge=0, description="Motion away from known faces is searched for new faces "
                                                           "(MTCNN on those regions) at most this often, in seconds "
                                                           "of stream time; the known faces are refined on every "
                                                           "frame between, everything that changed meanwhile is "
                                                           "searched at the next search, and faces the detector lost "
                                                           "are looked for again at the same pace (0: on every frame "
                                                           "the detector sees; 0.12 measured on a 1080p crowd: 1.8x "
                                                           "the fps, recall from 32 px 0.97 -> 0.96).")
    lost_min_face: float = Field(0.6, ge=0, le=1, description="A face refinement lost is looked for again, where it "
                                                               "was, at sizes from this fraction of its own (0: "
                                                               "every size down to the detector's floor; the small "
                                                               "scales are most of MTCNN's cost).")
    follow_motion: bool = Field(True, description="Refinement looks for each known face where its velocity "
                                                  "(from its last two detections) puts it now, moved at most "
                                                  "track_margin box sizes (off: where it was last detected).")
    refine: bool = Field(True, description="Refresh known faces with R-Net + O-Net on their predicted boxes instead "
                                           "of a full pass (off: motion on faces runs a full detection).")
    classify_still: bool = Field(False, description="Classify the faces again on frames where nothing moved (off: "
                                                    "their emotions are those of the last detected frame, whose "
                                                    "pixels they share).")
    track_margin: float = Field(1.0, ge=0, description="Motion inside a known face's box grown by this many box "
                                                       "sizes on each side is that face's own (head, shoulders): "
                                                       "refinement covers it.")


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
    max_frame_pixels: int = Field(
        16_777_216, ge=4096, description="A camera or file whose frames (announced, or any decoded one) have more "
                                         "pixels than this stops with that error: FFmpeg refuses such a frame before "
                                         "allocating it (16 M: 4096x4096, twice 4K UHD).")
    working_pixels: int = Field(
        8_294_400, ge=4096, description="Decoded frames with more pixels than this are scaled down to it once, at "
                                        "decode, so that every copy the pipeline keeps (queue, analysis, preview) is "
                                        "at most this size (8.3 M: 3840x2160).")
    decode_threads: int = Field(0, ge=0, description="FFmpeg decoding threads per camera or file (each has its own "
                                                     "decode thread besides): files get frame and slice threads "
                                                     "(thread_type AUTO), live cameras slice threads only (frame "
                                                     "threads would hold back a frame each); 0: PyAV's default "
                                                     "(slice threads, one per core).")
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
    max_analysed_fps: float = Field(0.0, ge=0, description="Frames analysed per second at most, per camera (as NVRs' "
                                                            "detect fps): every frame is decoded, the first of each "
                                                            "1/N s of stream time analysed, the others dropped "
                                                            "(frames_capped); 0: no cap.")
    detect_max_wait_ms: float = Field(5.0, ge=0, description="Longest a frame waits for the detector batch to fill.")
    batch_concurrency: int = Field(2, ge=1, le=8, description="Batched calls in flight per stage (full detections, "
                                                              "detector parts, classification) on the stages' 3 "
                                                              "worker threads: 2 used the second core (4 live 1080p "
                                                              "crowd cameras 0.8 -> 1.6 fps each, docs/performance.md)"
                                                              "; 1: one call at a time.")
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
