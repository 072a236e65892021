"""``deepfer bench pipeline --scene``: one live generated 1080p camera for ~2 s writes the per-camera JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepfer.cli import app

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
