"""``deepfer bench pipeline --scene``: one live generated 1080p camera for ~2 s writes the per-camera JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepfer.cli import app
from deepfer_core.settings import DetectorSettings

MEDIA = Path(__file__).resolve().parents[2].parent / "shared" / "media"


@pytest.mark.skipif(not (MEDIA / "woman2.mp4").is_file(), reason="needs ../shared/media/woman2.mp4")
def test_pipeline_single_scene_json(tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "pipeline.json"
    res = CliRunner().invoke(app, ["bench", "pipeline", "--scene", "single", "--cameras", "1", "--seconds", "2",
                                   "--media", str(MEDIA), "--weights", str(tiny_checkpoint), "--device", "cpu",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert (data["width"], data["height"], data["streams"]) == (1920, 1080, 1)
    cam = data["per_stream"][0]
    for key in ("fps", "frames_dropped", "latency_p50_ms", "latency_p95_ms", "frames_processed"):
        assert key in cam
    assert cam["frames_processed"] > 0
    util = data["utilisation"]
    assert util["cpu_s_per_camera"] > 0 and len(util["load_average"]) == 3


def test_pipeline_bad_scene_is_a_user_error() -> None:
    res = CliRunner().invoke(app, ["bench", "pipeline", "--scene", "mall"])
    assert res.exit_code == 2 and "--scene" in res.output


FER = MEDIA.parent / "datasets" / "fer2013" / "test"


@pytest.mark.skipif(not (MEDIA / "no-faces.jpg").is_file() or not FER.is_dir(),
                    reason="needs ../shared/media and ../shared/datasets/fer2013/test")
def test_pipeline_crowd_scene_scores_the_analysed_frames(tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "pipeline.json"
    res = CliRunner().invoke(app, ["bench", "pipeline", "--scene", "crowd", "--cameras", "1", "--seconds", "2",
                                   "--media", str(MEDIA), "--weights", str(tiny_checkpoint), "--device", "cpu",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    acc = data["accuracy"]
    cam = data["per_stream"][0]
    # only analysed frames are scored: as many as the camera processed, never more than the clip has
    assert 0 < acc["frames_scored"] == cam["frames_processed"] <= acc["clip_frames"] == 50
    assert sum(acc["faces_by_size"].values()) > 0
    for key in ("recall", "recall_32_up", "precision"):
        assert 0.0 <= acc[key] <= 1.0, (key, acc[key])
    sizes = {b: r for b, r in acc["recall_by_size"].items() if acc["faces_by_size"][b]}
    assert sizes and all(0.0 <= r <= 1.0 for r in sizes.values())
    assert acc["per_camera"]["stream-0"]["frames_scored"] == acc["frames_scored"]
    assert "analysed" in acc["note"]
    eff = data["settings"]["in_effect"]
    for key in ("detect_every", "detect_every_large", "region_native", "region_min_face_size", "max_side",
                "min_face_size", "gating"):
        assert key in eff
    defaults = DetectorSettings()  # what the run used: the defaults, as config.toml has them
    assert (eff["detect_every_large"], eff["refine_between"], eff["region_native"]) == (
        defaults.detect_every_large, defaults.refine_between, defaults.region_native)
    assert eff["gating"] is True


def test_score_reported_scores_only_the_reported_frames() -> None:
    from deepfer_bench.crowd_clip import CrowdTruth, TruthFace
    from deepfer_bench.crowd_score import Found
    from deepfer_bench.pipeline_speed import score_reported

    truth = CrowdTruth(25.0, 100, 100, 0, [], [[TruthFace(1, 10, 10, 50, 50)], [TruthFace(1, 12, 10, 52, 50)],
                                               [TruthFace(1, 14, 10, 54, 50)]])
    # frame 1 dropped: frames 0 and 2 scored, a hit on 0, a miss and a false alarm on 2
    scored = score_reported(truth, {0: [Found(10, 10, 50, 50, 1)], 2: [Found(70, 70, 95, 95, 1)]})
    assert scored["frames_scored"] == 2 and scored["faces"] == 2 and scored["found"] == 1 and scored["false"] == 1
    assert scored["recall"] == 0.5 and scored["precision"] == 0.5


@pytest.mark.skipif(not (MEDIA / "woman2.mp4").is_file(), reason="needs ../shared/media/woman2.mp4")
def test_pipeline_json_says_whether_cross_camera_batches_fill(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """The figures a GPU run needs to see whether batches fill across cameras within their deadline, and how frames
    were fed (decode threads, staging buffers)."""
    out = tmp_path / "pipeline.json"
    res = CliRunner().invoke(app, ["bench", "pipeline", "--source", str(MEDIA / "woman2.mp4"), "--cameras", "2",
                                   "--seconds", "2", "--weights", str(tiny_checkpoint), "--device", "cpu",
                                   "--out", str(out)], env={"DEEPFER_SOURCES__DECODE_THREADS": "2"})
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["streams"] == 2 and data["total"]["frames_processed"] > 0
    batching = data["batching"]
    assert batching["deadline_ms"] == {"detect": 5.0, "classify": 10.0}
    for name in ("detect_full", "detect", "classify"):
        b = batching[name]
        assert set(b) >= {"mean_batch", "batch_p50", "batch_p95", "batch_max", "fill", "closed_full",
                          "closed_deadline", "wait_ms_mean", "wait_ms_p95", "fill_ms_mean"}, name
    full = batching["detect_full"]
    assert full["calls"] > 0 and 1 <= full["mean_batch"] <= full["batch_max"] <= full["max_items"] == 8
    assert full["closed_full"] + full["closed_deadline"] == full["calls"] and full["wait_ms_mean"] >= 0
    assert 0 < full["fill"] <= 1
    feeding = data["feeding"]
    assert feeding["decode_threads"] == 2 and feeding["torchcodec_importable"] in (True, False)
    assert feeding["detector"] == {"device": "cpu", "reused_buffer": True, "pinned": False, "non_blocking": False}
    assert feeding["classifier"]["reused_buffer"] is True and feeding["classifier"]["pinned"] is False
