"""``deepfer predict`` end to end on real images with a real (tiny) checkpoint; bad input is one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deepfer.cli import app
from deepfer_core.types import EMOTIONS

pytestmark = pytest.mark.timeout(240)
REPO = Path(__file__).resolve().parents[2]


def run(*args: str):
    return CliRunner().invoke(app, ["predict", *args])


def test_json_one_face_with_probabilities(media: Path, tiny_checkpoint: Path) -> None:
    res = run(str(media / "justin.jpg"), "--json", "--weights", str(tiny_checkpoint))
    assert res.exit_code == 0, res.output
    (report,) = json.loads(res.stdout)
    assert report["image"] == str(media / "justin.jpg")
    (face,) = report["faces"]
    probs = face["probabilities"]
    assert list(probs) == list(EMOTIONS)
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
    top = max(probs, key=probs.get)  # shown unless the face is too small or unsure to read (issue 32)
    assert face["emotion"] == (top if face["confident"] else "uncertain")
    assert face["confidence"] == pytest.approx(probs[top], abs=1e-4)
    box = face["box"]
    assert 0 <= box["x1"] < box["x2"] <= 381 and 0 <= box["y1"] < box["y2"] <= 384


def test_several_images_and_no_face(media: Path, tiny_checkpoint: Path) -> None:
    images = [media / n for n in ("two_people.jpg", "no-faces.jpg", "justin.jpg")]
    res = run(*map(str, images), "--json", "--weights", str(tiny_checkpoint))
    assert res.exit_code == 0, res.output
    assert [len(r["faces"]) for r in json.loads(res.stdout)] == [2, 0, 1]
    assert f"no face found in {images[1]}" in res.stderr


def test_table_output_and_no_face_message(media: Path, tiny_checkpoint: Path) -> None:
    res = run(str(media / "justin.jpg"), str(media / "no-faces.jpg"), "--weights", str(tiny_checkpoint))
    assert res.exit_code == 0, res.output
    assert "1 face" in res.stdout and all(e in res.stdout for e in EMOTIONS)
    assert f"no face found in {media / 'no-faces.jpg'}" in res.stdout


def test_haar_detector(media: Path, tiny_checkpoint: Path) -> None:
    res = run(str(media / "justin.jpg"), "--json", "--detector", "haar", "--weights", str(tiny_checkpoint))
    assert res.exit_code == 0, res.output
    (face,) = json.loads(res.stdout)[0]["faces"]
    assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)


def test_analyze_image_matches_cli(media: Path, tiny_checkpoint: Path) -> None:
    """The function the dashboard upload calls gives the same probabilities as the CLI."""
    from classifier.inference import EmotionClassifier
    from deepfer_core.settings import DetectorSettings
    from detectors import build_detector
    from streamer.analysis import analyse_images
    from streamer.media import load_image

    image = load_image((media / "justin.jpg").read_bytes(), name="justin.jpg")
    (faces,) = analyse_images(
        [image], build_detector(DetectorSettings(device="cpu")), EmotionClassifier.load(tiny_checkpoint, "cpu"), 0.2
    )
    (face,) = faces
    cli = json.loads(run(str(media / "justin.jpg"), "--json", "--weights", str(tiny_checkpoint)).stdout)[0]["faces"][0]
    assert np.allclose(face.probabilities, [cli["probabilities"][e] for e in EMOTIONS], atol=1e-3)


def test_exif_orientation_is_applied(media: Path, tmp_path: Path) -> None:
    from PIL import Image

    from streamer.media import load_image

    upright = load_image(media / "justin.jpg")
    img = Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=1)))  # stored rotated, EXIF says rotate back
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    assert load_image(tmp_path / "rotated.jpg").shape == upright.shape


def one_line_error(res_stderr: str, exit_code: int, needle: str) -> None:
    assert exit_code == 2
    lines = [line for line in res_stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], res_stderr
    assert "Traceback" not in res_stderr


def test_text_file_named_jpg_is_one_line_error(tmp_path: Path, tiny_checkpoint: Path) -> None:
    fake = tmp_path / "x.jpg"
    fake.write_text("not really a picture\n")
    proc = subprocess.run(
        [sys.executable, "-m", "deepfer", "predict", str(fake), "--weights", str(tiny_checkpoint)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    one_line_error(proc.stderr, proc.returncode, "x.jpg is not an image")
    assert proc.stdout == ""


def test_missing_file_is_one_line_error(tmp_path: Path, media: Path, tiny_checkpoint: Path) -> None:
    res = run(str(media / "justin.jpg"), str(tmp_path / "missing.jpg"), "--weights", str(tiny_checkpoint))
    one_line_error(res.stderr, res.exit_code, "image not found")
    assert res.stdout == ""  # checked before any work: nothing half-printed


def test_missing_weights_is_one_line_error(media: Path, tmp_path: Path) -> None:
    res = run(str(media / "justin.jpg"), "--weights", str(tmp_path / "nope.pt"))
    one_line_error(res.stderr, res.exit_code, "weights file not found")
